"""Training a ``pc`` model from images: patch extraction and one circuit per channel count.

The entry point of the wing's training code (:func:`fit_model`); EM itself is in
:mod:`.train_em`, structure learning in :mod:`.train_structure`. The decoder never imports these
modules. Randomness: one ``np.random.default_rng(config.seed)`` per call, no global RNG.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ...errors import InputError, UsageError
from .model import PCModel
from .train_em import EMConfig, fit_hclt


def random_patches(images: Sequence[np.ndarray], patch: tuple[int, int], count: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``count`` patches (count, ph*pw*C) at random positions of random images (all ``H,W,C`` with
    the same C), variables in the coder's order (row, column, channel)."""
    ph, pw = patch
    ok = [im for im in images if im.shape[0] >= ph and im.shape[1] >= pw]
    if not ok:
        raise InputError(f"no training image is at least {ph}x{pw}")
    c = ok[0].shape[2]
    out = np.empty((count, ph * pw * c), dtype=np.uint8)
    which = rng.integers(len(ok), size=count)
    for i, j in enumerate(which):
        im = ok[j]
        r = rng.integers(im.shape[0] - ph + 1)
        q = rng.integers(im.shape[1] - pw + 1)
        out[i] = im[r:r + ph, q:q + pw].reshape(-1)
    return out


def shifted_copies(images: np.ndarray, radius: int) -> np.ndarray:
    """``images`` (N, H, W) followed by every copy shifted by (dy, dx) in [-radius, radius]^2 other
    than (0, 0), vacated pixels zero (the digits' background): ``(2r+1)^2 N`` images.

    Why: a digit written one pixel to the left is still a digit, and the 4,000 MNIST training
    digits under-determine an M=16 circuit (measured: shifts of one pixel took the held-out rate
    from 1.361 to 1.330 bpd at the same M, which sets the coding speed)."""
    x = np.asarray(images)
    n, h, w = x.shape
    out = [x]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy == 0 and dx == 0:
                continue
            s = np.zeros_like(x)
            s[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                x[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
            out.append(s)
    return np.concatenate(out)


def as_hwc_list(data: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Images ``H,W[,C]``, batches ``N,H,W[,C]`` or a list of either -> list of ``H,W,C`` uint8."""
    items = [data] if isinstance(data, np.ndarray) else list(data)
    out: list[np.ndarray] = []
    for a in items:
        a = np.asarray(a)
        if a.dtype != np.uint8:
            raise InputError(f"pc trains on uint8 images, got {a.dtype}")
        if a.ndim == 2:
            out.append(a[:, :, None])
        elif a.ndim == 3 and a.shape[2] in (1, 3, 4):
            out.append(a)
        elif a.ndim == 3:
            out.extend(im[:, :, None] for im in a)
        elif a.ndim == 4:
            out.extend(a)
        else:
            raise InputError(f"cannot train on an array of shape {a.shape}")
    return out


def fit_model(data: np.ndarray | Sequence[np.ndarray], *, patch: int | tuple[int, int] | None = None,
              config: EMConfig | None = None, max_patches: int = 20000, name: str = "custom",
              progress: bool = False, log: Callable[[str], None] | None = None) -> PCModel:
    """A model with one circuit per channel count found in ``data`` (4-channel images train the
    1-channel circuit on their planes). ``patch=None``: whole images when they all share one size
    up to 32x32, else 8x8."""
    cfg = config or EMConfig()
    images = as_hwc_list(data)
    if not images:
        raise UsageError("no training images")
    sizes = {im.shape[:2] for im in images}
    if patch is None:
        patch = next(iter(sizes)) if len(sizes) == 1 and max(next(iter(sizes))) <= 32 else (8, 8)
    elif isinstance(patch, int):
        patch = (patch, patch)
    groups: dict[int, list[np.ndarray]] = {}
    for im in images:
        if im.shape[2] in (1, 3):
            groups.setdefault(im.shape[2], []).append(im)
        else:
            groups.setdefault(1, []).extend(im[:, :, c:c + 1] for c in range(im.shape[2]))
    rng = np.random.default_rng(cfg.seed)
    circuits = {}
    info: dict = {"config": dict(vars(cfg)), "patch": list(patch), "history": {}}
    for c, ims in sorted(groups.items()):
        whole = all(im.shape[:2] == tuple(patch) for im in ims)
        x = (np.stack([im.reshape(-1) for im in ims]) if whole
             else random_patches(ims, patch, max_patches, rng))
        if log:
            log(f"circuit for {c} channel(s): {len(x)} samples of {patch[0]}x{patch[1]}x{c}")
        circ, hist = fit_hclt(x, (patch[0], patch[1], c), cfg, progress=progress, log=log)
        circuits[c] = circ
        info["history"][str(c)] = hist
    return PCModel(circuits, name, info)
