"""Upsampling and generation with the shipped ``ldm`` models (the codec lives in :mod:`.codec`).

* :func:`upsample`: ``method="liif"`` (deterministic LIIF residual over bicubic) or
  ``method="diffusion"`` (DDIM in the autoencoder's latent space conditioned on the encoded,
  bicubic-resized LR image, decoded by the arbitrary-scale LIIF decoder).
* :func:`generate`: unconditional latent samples decoded at any size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import UsageError
from ...runtime import resolve_device
from . import model
from .autoencoder import encode_tiled, to_uint8, to_unit
from .diffusion import T_STEPS, ddim_sample
from .image import merge_channels, pad_to, resize, split_channels, target_size
from .liif import output_size

__all__ = ["DEFAULT_STRENGTH", "GEN_LATENT", "MAX_DIFFUSION_RATIO", "generate", "output_size", "target_size",
           "upsample"]

MAX_DIFFUSION_RATIO = 4.0  # the denoiser was trained at ratios 2..4; larger scales go through LIIF
GEN_LATENT = 32  # longest latent side for unconditional samples (the training crop size)
#: SDEdit strength of ``upsample(method="diffusion")``: chosen on training photos, never the held-out
#: ones, by ``benchmarks/sr/strength.py`` (the strength whose output detail energy is closest to the
#: original's; results/sr/strength_screen.json).
DEFAULT_STRENGTH = 1.0


def _network(name: str, weights_dir: Path | None, dev: torch.device):
    """(shared read-only network on ``dev``, its model file): built once per file and device."""
    mf = model.load(name, weights_dir)
    return model.network(mf, dev), mf


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
    device: str | torch.device = "auto",
    progress: bool = False,
) -> np.ndarray:
    """Resize ``image`` to ``round(size x scale)`` (or ``size=(width, height)``) on ``device``.

    ``strength`` (diffusion): DDIM starts at noise level ``t = strength * T`` from the encoded
    bicubic image (SDEdit-style). 1.0 = from pure noise; lower = closer to the (blurrier, higher-PSNR)
    encoded bicubic image (see ``DEFAULT_STRENGTH``). The noise comes from a generator seeded with
    ``seed`` (drawn on the CPU, so a seed gives the same noise on every device); the global RNG is
    not touched.
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
    dev = resolve_device(device)
    if method == "liif":
        sr, _ = _network("sr", weights_dir, dev)
        out = sr.upsample(to_unit(rgb).to(dev), out_h, out_w, tile=tile, progress=progress)
        return merge_channels(to_uint8(out), mode, alpha)
    ae, _ = _network("ae", weights_dir, dev)
    unet, mf = _network("unet", weights_dir, dev)
    sigma, res_sigma = float(mf.config["sigma"]), float(mf.config["res_sigma"])
    # the latent grid: at the output size, or at the largest trained ratio beyond it (LIIF does the rest)
    gh, gw = (out_h, out_w) if out_h <= MAX_DIFFUSION_RATIO * h else output_size(h, w, MAX_DIFFUSION_RATIO)
    if mf.config["condition"] == "liif":  # the model was trained on LIIF-upsampled conditions
        sr, _ = _network("sr", weights_dir, dev)
        base = to_uint8(sr.upsample(to_unit(rgb).to(dev), gh, gw, tile=tile))
    else:
        base = resize(rgb, gh, gw)
    cond_img = pad_to(base, 4)  # f=2 and one UNet down-sampling
    z_c = encode_tiled(ae, to_unit(cond_img).to(dev))
    t_start = min(T_STEPS - 1, max(0, round(float(strength) * T_STEPS) - 1))
    x0 = ddim_sample(unet, z_c / sigma, steps=int(steps), seed=seed, t_start=t_start, progress=progress)
    z = x0 * res_sigma + z_c
    ext = (gh / cond_img.shape[0], gw / cond_img.shape[1])
    return merge_channels(to_uint8(ae.render(z, out_h, out_w, ext, tile=tile, progress=progress)), mode, alpha)


@torch.no_grad()
def generate(
    width: int, height: int, *, seed: int = 0, steps: int = 20, tile: int | None = 256,
    weights_dir: Path | None = None, device: str | torch.device = "auto", progress: bool = False,
) -> np.ndarray:
    """An unconditional sample (latent of about ``GEN_LATENT`` cells a side) decoded at ``width x height``
    (noise from a generator seeded with ``seed``, drawn on the CPU; the global RNG is not touched)."""
    out_h, out_w = target_size(1, 1, None, (width, height))
    if int(steps) < 1:
        raise UsageError("steps must be >= 1")
    dev = resolve_device(device)
    ae, _ = _network("ae", weights_dir, dev)
    unet, mf = _network("unet", weights_dir, dev)
    lh = lw = GEN_LATENT
    if out_w > out_h:
        lh = max(2, 2 * round(GEN_LATENT * out_h / out_w / 2))
    else:
        lw = max(2, 2 * round(GEN_LATENT * out_w / out_h / 2))
    cond = torch.zeros(1, ae.latent, lh, lw, device=dev)
    z = ddim_sample(unet, cond, steps=int(steps), seed=seed, progress=progress) * float(mf.config["sigma"])
    return to_uint8(ae.render(z, out_h, out_w, tile=tile))
