"""Encoder-side latent refinement for the hyperprior codec: choose the coded symbols by gradient
descent on the rate-distortion cost of *this* image, with the decoder untouched.

Why: the analysis transform is an amortised guess, trained to be good on average; for one image
the symbols that minimise ``bits + lambda * 255^2 * MSE`` are usually others (Campos et al. 2019,
"Content adaptive optimization for neural image compression"; Yang et al. 2020, "Improving
inference for neural image compression"). The decoder, the model file and the bitstream do not
change: a refined file decodes with any decoder of the same version, and ``effort=0`` writes
exactly the bytes of the plain encoder.

What is held fixed and why: ``z`` (and with it the integer ``h_s`` output: the means and the
scale index of every ``y`` element) stays the analysis transform's, so the coding tables the
decoder will pick are known exactly while ``y`` moves; the rate term is the discretised Gaussian
of the table scale each element will be coded with, and the distortion is measured on the real
pixels only (the edge padding up to a multiple of 64 is free to become whatever is cheapest).
Rounding is straight-through (the forward pass sees the symbols that will be written), and the
best iterate by the actual rounded cost is kept, so refinement never returns a worse point than
the one it started from.
"""
from __future__ import annotations

import numpy as np
import torch

from .hyperprior import LAMBDAS, HyperpriorModel, gaussian_likelihood, ste_round


def refine_symbols(net: HyperpriorModel, x: torch.Tensor, q: int, y: torch.Tensor, mean: torch.Tensor,
                   scale: torch.Tensor, real_hw: tuple[int, int], *, steps: int, lr: float = 0.02,
                   lam: float | None = None, progress: bool = False) -> tuple[np.ndarray, dict]:
    """Refined symbols ``round(y - mean)`` (int64, ``y``'s shape without the batch axis) and a report.

    ``x``: the padded image ``(1, 3, H, W)`` in [0, 1]; ``q``: the 0-based quality; ``y``: its
    analysis; ``mean`` / ``scale``: what the decoder will use for each element (the integer mean
    as a float, the scale of the element's table); ``real_hw``: the unpadded size, where the
    distortion is measured; ``lam``: the rate-distortion weight (default: the one the quality
    was trained for)."""
    from tqdm.auto import tqdm

    lam = float(LAMBDAS[q] if lam is None else lam)
    h, w = real_hw
    target = x[..., :h, :w]
    qq = torch.tensor([q])
    pixels = h * w

    def cost(r_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bits = -torch.log2(gaussian_likelihood(r_hat, torch.zeros_like(r_hat), scale)).sum()
        x_hat = net.synthesis(r_hat + mean, qq)[..., :h, :w]
        mse = torch.mean((x_hat.clamp(0.0, 1.0) - target) ** 2)
        return bits / pixels + lam * 255.0 ** 2 * mse, bits, mse

    resid = (y - mean).detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([resid], lr=lr)
    with torch.no_grad():
        start_sym = torch.round(resid)
        best_cost, bits0, mse0 = (float(v) for v in cost(start_sym))
    start, best = best_cost, start_sym.clone()
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.enable_grad():
        for _ in tqdm(range(steps), desc="refining the latent", unit="step", disable=not progress, leave=False):
            opt.zero_grad(set_to_none=True)
            c, _, _ = cost(ste_round(resid))
            c.backward()
            opt.step()
            with torch.no_grad():
                sym = torch.round(resid)
                actual = float(cost(sym)[0])
                if actual < best_cost:
                    best_cost, best = actual, sym.clone()
    with torch.no_grad():
        _, bits1, mse1 = cost(best)
    report = {"refine_steps": steps, "refine_cost": [round(start, 5), round(best_cost, 5)],
              "refine_bpp_y": [round(bits0 / pixels, 5), round(float(bits1) / pixels, 5)],
              "refine_psnr": [round(_psnr(mse0), 3), round(_psnr(float(mse1)), 3)]}
    return best[0].to(torch.int64).numpy(), report


def _psnr(mse: float) -> float:
    return float(10.0 * np.log10(1.0 / max(mse, 1e-12)))
