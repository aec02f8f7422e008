"""Image plumbing shared by the ldm codec, the upsampler and the trainers: sizes, channels, padding
and the bicubic resize that defines this wing's degradation.

Why a module of its own: decoding needs :func:`resize` (an RGBA decode resizes its alpha plane) and
training needs it (it makes the low-resolution inputs); it used to live in ``train.py``, so every
decode imported the training code. Nothing here is learned and nothing imports torch, except
:func:`target_size`, which shares LIIF's rounding rule.

:func:`resize` is generic enough for :mod:`neurocodec.io`; it stays here until the package wants a
second user of it.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import UsageError

MAX_OUTPUT_PIXELS = 1 << 28  # refuse absurd sizes instead of running for hours


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """PIL bicubic (antialiased when shrinking) to ``h x w``: the degradation used everywhere in
    this codec (training inputs, diffusion conditions, benchmarks' bicubic baseline)."""
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((int(w), int(h)), Image.BICUBIC))


def target_size(h: int, w: int, scale: float | None, size: tuple[int, int] | None) -> tuple[int, int]:
    """``(out_h, out_w)`` from ``scale`` or ``size=(width, height)`` (exactly one, or neither: same size)."""
    from .liif import output_size

    if scale is not None and size is not None:
        raise UsageError("give either scale or size, not both")
    if size is not None:
        try:
            out_w, out_h = (int(v) for v in size)
        except (TypeError, ValueError):
            raise UsageError(f"size must be (width, height), got {size!r}") from None
        if out_w < 1 or out_h < 1:
            raise UsageError(f"size must be positive, got {out_w}x{out_h}")
    elif scale is not None:
        try:
            s = float(scale)
        except (TypeError, ValueError):
            raise UsageError(f"scale must be a number, got {scale!r}") from None
        if not math.isfinite(s) or s <= 0:
            raise UsageError(f"scale must be a positive number, got {scale}")
        out_h, out_w = output_size(h, w, s)
    else:
        out_h, out_w = h, w
    if out_h * out_w > MAX_OUTPUT_PIXELS:
        raise UsageError(f"output {out_w}x{out_h} is larger than {MAX_OUTPUT_PIXELS} pixels")
    return out_h, out_w


def split_channels(image: np.ndarray) -> tuple[np.ndarray, str, np.ndarray | None]:
    """(RGB part, mode 'L'|'RGB'|'RGBA', alpha or None) of a checked uint8 image."""
    from ...io import check_image

    img = check_image(image)
    if img.ndim == 2 or img.shape[2] == 1:
        g = img.reshape(img.shape[0], img.shape[1])
        return np.stack([g] * 3, axis=-1), "L", None
    if img.shape[2] == 4:
        return np.ascontiguousarray(img[..., :3]), "RGBA", np.ascontiguousarray(img[..., 3])
    return img, "RGB", None


def merge_channels(rgb: np.ndarray, mode: str, alpha: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`split_channels` at ``rgb``'s size (grey = channel mean; alpha resized)."""
    if mode == "L":
        return np.round(rgb.astype(np.float32).mean(axis=-1)).astype(np.uint8)
    if mode == "RGBA" and alpha is not None:
        a = resize(alpha, rgb.shape[0], rgb.shape[1])
        return np.concatenate([rgb, a[..., None]], axis=-1)
    return rgb


def pad_to(img: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-pad ``H,W,C`` so both sides are multiples of ``multiple``."""
    h, w = img.shape[:2]
    return np.pad(img, ((0, -h % multiple), (0, -w % multiple), (0, 0)), mode="edge")
