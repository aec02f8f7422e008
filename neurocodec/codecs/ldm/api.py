"""Upsampling and generation with the shipped ``ldm`` models (the codec lives in :mod:`.codec`).

* :func:`upsample`: ``method="liif"`` (deterministic LIIF residual over bicubic) or
  ``method="diffusion"`` (DDIM in the autoencoder's latent space conditioned on the encoded,
  bicubic-resized LR image, decoded by the arbitrary-scale LIIF decoder).
* :func:`generate`: unconditional latent samples decoded at any size.
"""
from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from ...errors import UsageError
from .autoencoder import CodecAE, LIIFUpsampler, to_uint8, to_unit
from .diffusion import T_STEPS, ddim_sample
from .liif import output_size
from .train import WEIGHTS_DIR, load_model, resize

MAX_OUTPUT_PIXELS = 1 << 28  # refuse absurd sizes instead of running for hours
MAX_DIFFUSION_RATIO = 4.0  # the denoiser was trained at ratios 2..4; larger scales go through LIIF
GEN_LATENT = 32  # longest latent side for unconditional samples (the training crop size)
#: SDEdit strength of ``upsample(method="diffusion")``: chosen on training photos, never the held-out
#: ones, by ``benchmarks/sr/strength.py`` (the strength whose output detail energy is closest to the
#: original's; results/sr/strength_screen.json).
DEFAULT_STRENGTH = 1.0


@functools.lru_cache(maxsize=8)
def _cached(path: str, kind: str):
    return load_model(Path(path), kind)


def models(weights_dir: Path | None = None, *, need: tuple[str, ...] = ("sr", "ae", "diffusion")) -> dict:
    """The models in ``weights_dir`` (default: shipped), loaded once per process."""
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    files = {"sr": "sr.pt", "ae": "ae.pt", "diffusion": "unet.pt"}
    return {k: _cached(str(folder / files[k]), k) for k in need}


def weights_id(path: Path) -> str:
    """Short content hash of a weights file, stored in every stream so a mismatch is detected."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def target_size(h: int, w: int, scale: float | None, size: tuple[int, int] | None) -> tuple[int, int]:
    """``(out_h, out_w)`` from ``scale`` or ``size=(width, height)`` (exactly one, or neither: same size)."""
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
    if mode == "L":
        return np.round(rgb.astype(np.float32).mean(axis=-1)).astype(np.uint8)
    if mode == "RGBA" and alpha is not None:
        a = resize(alpha, rgb.shape[0], rgb.shape[1])
        return np.concatenate([rgb, a[..., None]], axis=-1)
    return rgb


def encode_tiled(ae: CodecAE, x: torch.Tensor, rows: int | None = 64) -> torch.Tensor:
    """``ae.encode`` in horizontal strips of ``rows`` latent rows with a halo (bounded memory,
    equal to the full computation). ``x`` sides must be even."""
    h = x.shape[2] // 2
    if rows is None or rows >= h:
        return ae.encode(x)
    halo = 8  # latent rows; the encoder's receptive radius is 6 latent rows
    parts = []
    for a in range(0, h, rows):
        b = min(a + rows, h)
        s0, s1 = max(a - halo, 0), min(b + halo, h)
        z = ae.encode(x[:, :, 2 * s0 : 2 * s1])
        parts.append(z[:, :, a - s0 : b - s0])
    return torch.cat(parts, dim=2)


def pad_to(img: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-pad ``H,W,C`` so both sides are multiples of ``multiple``."""
    h, w = img.shape[:2]
    return np.pad(img, ((0, -h % multiple), (0, -w % multiple), (0, 0)), mode="edge")


@torch.no_grad()
def upsample(
    image: np.ndarray,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    method: str = "liif",
    steps: int = 10,
    seed: int = 0,
    strength: float = DEFAULT_STRENGTH,
    tile: int | None = 256,
    weights_dir: Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Resize ``image`` to ``round(size x scale)`` (or ``size=(width, height)``).

    ``strength`` (diffusion): DDIM starts at noise level ``t = strength * T`` from the encoded
    bicubic image (SDEdit-style). 1.0 = from pure noise; lower = closer to the (blurrier, higher-PSNR)
    encoded bicubic image (see ``DEFAULT_STRENGTH``).
    """
    if method not in ("liif", "diffusion"):
        raise UsageError(f"unknown method '{method}' (known: liif, diffusion)")
    if not 0.0 < float(strength) <= 1.0:
        raise UsageError(f"strength must be in (0, 1], got {strength}")
    if int(steps) < 1:
        raise UsageError("steps must be >= 1")
    rgb, mode, alpha = split_channels(image)
    h, w = rgb.shape[:2]
    out_h, out_w = target_size(h, w, scale, size)
    dev = _device()
    if method == "liif":
        sr = models(weights_dir, need=("sr",))["sr"][0].to(dev)
        out = sr.upsample(to_unit(rgb).to(dev), out_h, out_w, tile=tile)
        return merge_channels(to_uint8(out), mode, alpha)
    m = models(weights_dir, need=("ae", "diffusion"))
    ae = m["ae"][0].to(dev)
    unet, blob = m["diffusion"]
    unet = unet.to(dev)
    sigma = float(blob["sigma"])
    # the latent grid: at the output size, or at the largest trained ratio beyond it (LIIF does the rest)
    gh, gw = (out_h, out_w) if out_h <= MAX_DIFFUSION_RATIO * h else output_size(h, w, MAX_DIFFUSION_RATIO)
    if blob.get("condition", "bicubic") == "liif":  # the model was trained on LIIF-upsampled conditions
        sr = models(weights_dir, need=("sr",))["sr"][0].to(dev)
        base = to_uint8(sr.upsample(to_unit(rgb).to(dev), gh, gw, tile=tile))
    else:
        base = resize(rgb, gh, gw)
    cond_img = pad_to(base, 4)  # f=2 and one UNet down-sampling
    z_c = encode_tiled(ae, to_unit(cond_img).to(dev))
    t_start = min(T_STEPS - 1, max(0, round(float(strength) * T_STEPS) - 1))
    x0 = ddim_sample(unet, z_c / sigma, steps=int(steps), seed=seed, t_start=t_start, progress=progress)
    z = x0 * float(blob.get("res_sigma", sigma)) + z_c
    ext = (gh / cond_img.shape[0], gw / cond_img.shape[1])
    return merge_channels(to_uint8(ae.render(z, out_h, out_w, ext, tile=tile)), mode, alpha)


@torch.no_grad()
def generate(
    width: int, height: int, *, seed: int = 0, steps: int = 20, tile: int | None = 256,
    weights_dir: Path | None = None, progress: bool = False,
) -> np.ndarray:
    """An unconditional sample (latent of about ``GEN_LATENT`` cells a side) decoded at ``width x height``."""
    out_h, out_w = target_size(1, 1, None, (width, height))
    if int(steps) < 1:
        raise UsageError("steps must be >= 1")
    m = models(weights_dir, need=("ae", "diffusion"))
    dev = _device()
    ae = m["ae"][0].to(dev)
    unet, blob = m["diffusion"]
    unet = unet.to(dev)
    lh = lw = GEN_LATENT
    if out_w > out_h:
        lh = max(2, 2 * round(GEN_LATENT * out_h / out_w / 2))
    else:
        lw = max(2, 2 * round(GEN_LATENT * out_w / out_h / 2))
    cond = torch.zeros(1, ae.latent, lh, lw, device=dev)
    z = ddim_sample(unet, cond, steps=int(steps), seed=seed, progress=progress) * float(blob["sigma"])
    return to_uint8(ae.render(z, out_h, out_w, tile=tile))
