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

__all__ = ["DEFAULT_STRENGTH", "GEN_LATENT", "MAX_DIFFUSION_RATIO", "check_diffusion", "diffuse", "diffusion_grid",
           "generate", "output_size", "target_size", "upsample"]

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
    check_diffusion(steps, strength)
    rgb, mode, alpha = split_channels(image)
    h, w = rgb.shape[:2]
    out_h, out_w = target_size(h, w, scale, size)
    dev = resolve_device(device)
    if method == "liif":
        sr, _ = _network("sr", weights_dir, dev)
        out = sr.upsample(to_unit(rgb).to(dev), out_h, out_w, tile=tile, progress=progress)
        return merge_channels(to_uint8(out), mode, alpha)
    gh, gw = diffusion_grid(h, w, out_h, out_w)
    _, mf = _network("unet", weights_dir, dev)
    if mf.config["condition"] == "liif":  # the model was trained on LIIF-upsampled conditions
        sr, _ = _network("sr", weights_dir, dev)
        base = to_uint8(sr.upsample(to_unit(rgb).to(dev), gh, gw, tile=tile))
    else:
        base = resize(rgb, gh, gw)
    out = diffuse(base, out_h, out_w, steps=steps, seed=seed, strength=strength, tile=tile, weights_dir=weights_dir,
                  device=dev, progress=progress)
    return merge_channels(out, mode, alpha)


def check_diffusion(steps: int, strength: float) -> None:
    """A clear error for DDIM settings the sampler cannot take (before any network is built)."""
    if not 0.0 < float(strength) <= 1.0:
        raise UsageError(f"strength must be in (0, 1], got {strength}")
    if int(steps) < 1:
        raise UsageError("steps must be >= 1")


def diffusion_grid(h: int, w: int, out_h: int, out_w: int) -> tuple[int, int]:
    """Where the denoiser works for an ``h x w`` image shown at ``out_h x out_w``: the output grid, or
    the grid at the largest ratio it was trained at (``MAX_DIFFUSION_RATIO``) when the output is
    larger still (the autoencoder's any-size renderer does the rest)."""
    return (out_h, out_w) if out_h <= MAX_DIFFUSION_RATIO * h else output_size(h, w, MAX_DIFFUSION_RATIO)


@torch.no_grad()
def diffuse(base: np.ndarray, out_h: int, out_w: int, *, steps: int = 10, seed: int = 0,
            strength: float = DEFAULT_STRENGTH, tile: int | None = 256, weights_dir: Path | None = None,
            device: str | torch.device = "auto", progress: bool = False) -> np.ndarray:
    """Latent diffusion over an RGB ``base`` already drawn at the denoiser's grid (``diffusion_grid``):
    the base is encoded by the autoencoder (the condition), DDIM samples the detail the base lacks
    (SDEdit from ``t = strength * T``), and the autoencoder renders the result at ``out_h x out_w``.

    Why the base is an argument: the upsampler draws it from a low-resolution image (LIIF or bicubic);
    the codec's generative decode draws it from the stream with its own any-size decoder, which
    already holds what the bits said. Noise from a CPU generator seeded with ``seed``: the same seed
    gives the same noise on every device, and the global RNG is not touched."""
    check_diffusion(steps, strength)
    dev = resolve_device(device)
    ae, _ = _network("ae", weights_dir, dev)
    unet, mf = _network("unet", weights_dir, dev)
    sigma, res_sigma = float(mf.config["sigma"]), float(mf.config["res_sigma"])
    cond_img = pad_to(base, 4)  # f=2 and one UNet down-sampling
    z_c = encode_tiled(ae, to_unit(cond_img).to(dev))
    t_start = min(T_STEPS - 1, max(0, round(float(strength) * T_STEPS) - 1))
    x0 = ddim_sample(unet, z_c / sigma, steps=int(steps), seed=seed, t_start=t_start, progress=progress)
    z = x0 * res_sigma + z_c
    ext = (base.shape[0] / cond_img.shape[0], base.shape[1] / cond_img.shape[1])
    return to_uint8(ae.render(z, out_h, out_w, ext, tile=tile, progress=progress))


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
