"""Latent denoiser: a small UNet on :class:`~.autoencoder.CodecAE` latents, DDIM sampling.

Conditioning (CVPR'24 recipe, adapted for a CPU-sized model): the condition is the *encoded*
low-resolution image, concatenated to the noisy latent along channels. We encode the LR image after
bicubic resizing to the target grid (so condition and target latents are aligned pixel for pixel) and
diffuse the *residual* ``(z_hr - z_cond) / res_sigma``; with the condition dropped (all zeros, 20% of
training) the same network is an unconditional generator of ``z / sigma``. Both targets are scaled to
unit variance (LDM's scale factor): unscaled, the small residual drowns in the noise schedule and
few-step DDIM samples blow up. T = 1000; DDIM with few steps (eta 0 by default) so a CPU sample
takes seconds.

Parameterisation (part of the model's config, so it travels with the weights): ``prediction`` "v"
with the ``cosine`` schedule (Salimans & Ho 2022; Nichol & Dhariwal 2021) is the default for new
models. Why: with eps-prediction the first step of an unconditional sample divides by
``sqrt(abar_T)`` (about 0.006 for linear betas), so any eps error becomes a huge x0 estimate: the
generator drew coloured noise. v-prediction gives x0 directly at every noise level. ``"eps"`` +
``"linear"`` remain readable (the first shipped weights used them).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor

T_STEPS = 1000


SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v")


def alphas_cumprod(schedule: str = "linear", t_steps: int = T_STEPS) -> Tensor:
    """``abar_t`` for t = 0..T-1: DDPM's linear betas, or the cosine schedule (betas clipped at 0.999)."""
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, t_steps, dtype=torch.float64)
    elif schedule == "cosine":
        s = 0.008
        f = torch.cos((torch.arange(t_steps + 1, dtype=torch.float64) / t_steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        raise ValueError(f"unknown noise schedule {schedule!r} (known: {', '.join(SCHEDULES)})")
    return torch.cumprod(1 - betas, 0).float()


def split_prediction(out: Tensor, xt: Tensor, a: Tensor, prediction: str) -> tuple[Tensor, Tensor]:
    """Network output at ``x_t`` with ``abar = a`` -> (x0 estimate, eps estimate)."""
    sa, so = a.sqrt(), (1 - a).sqrt()
    if prediction == "v":  # v = sqrt(a) eps - sqrt(1-a) x0
        return sa * xt - so * out, so * xt + sa * out
    return (xt - so * out) / sa, out


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int) -> None:
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2 = nn.GroupNorm(8, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.c1(F.silu(self.n1(x))) + self.t(temb)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class UNet(nn.Module):
    """Two-level UNet: ``(x_t, cond) -> eps``. Latent sides must be even."""

    def __init__(self, latent: int = 8, ch: int = 48, mult: tuple[int, int] = (1, 2),
                 prediction: str = "eps", schedule: str = "linear") -> None:
        super().__init__()
        if prediction not in PREDICTIONS or schedule not in SCHEDULES:
            raise ValueError(f"unknown prediction/schedule {prediction!r}/{schedule!r}")
        self.config = dict(latent=latent, ch=ch, mult=list(mult), prediction=prediction, schedule=schedule)
        self.prediction, self.schedule = prediction, schedule
        c1, c2 = ch * mult[0], ch * mult[1]
        tdim = ch * 4
        self.ch = ch
        self.temb = nn.Sequential(nn.Linear(ch, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.inp = nn.Conv2d(2 * latent, c1, 3, padding=1)
        self.d1 = TBlock(c1, c1, tdim)
        self.down = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.d2 = TBlock(c2, c2, tdim)
        self.mid = TBlock(c2, c2, tdim)
        self.u2 = TBlock(2 * c2, c2, tdim)
        self.up = nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1)
        self.u1 = TBlock(2 * c1, c1, tdim)
        self.out = nn.Sequential(nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, latent, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        temb = self.temb(timestep_embedding(t, self.ch))
        h1 = self.d1(self.inp(torch.cat([x, cond], dim=1)), temb)
        h2 = self.d2(self.down(h1), temb)
        m = self.mid(h2, temb)
        u = self.u2(torch.cat([m, h2], dim=1), temb)
        u = self.u1(torch.cat([self.up(u), h1], dim=1), temb)
        return self.out(u)


def diffusion_loss(unet: UNet, x0: Tensor, cond: Tensor, abar: Tensor, gen: torch.Generator | None = None):
    """MSE on the model's target (eps or v); returns (loss, t, x0_hat) so callers can add the
    alignment loss."""
    b = x0.shape[0]
    t = torch.randint(0, abar.numel(), (b,), generator=gen).to(x0.device)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    a = abar[t][:, None, None, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    out = unet(xt, t, cond)
    target = a.sqrt() * noise - (1 - a).sqrt() * x0 if unet.prediction == "v" else noise
    x0_hat, _ = split_prediction(out, xt, a, unet.prediction)
    return F.mse_loss(out, target), t, x0_hat


@torch.no_grad()
def ddim_sample(
    unet: UNet,
    cond: Tensor,
    *,
    steps: int = 10,
    seed: int = 0,
    eta: float = 0.0,
    clip: float = 4.0,
    t_start: int = T_STEPS - 1,
    progress: bool = False,
) -> Tensor:
    """DDIM from noise (seeded) to x0 with ``steps`` evaluations; ``cond`` fixes the shape.

    ``t_start`` < T starts at ``x_t = sqrt(1 - abar_t) * noise``, i.e. from the prior mean 0 of x0 (for
    the conditional model: no residual over the encoded LR image) noised to level t, as in SDEdit.
    """
    from tqdm import tqdm

    if steps < 1:
        raise ValueError("steps must be >= 1")
    abar = alphas_cumprod(unet.schedule).to(cond.device)
    gen = torch.Generator().manual_seed(int(seed))
    if not 0 <= t_start < T_STEPS:
        raise ValueError(f"t_start must be in [0, {T_STEPS - 1}]")
    x = (torch.randn(cond.shape, generator=gen) * (1 - abar[t_start].cpu()).sqrt()).to(cond.device)
    ts = torch.linspace(t_start, 0, steps).round().long().tolist()
    for i in tqdm(range(steps), disable=not progress, desc="ddim"):
        t = ts[i]
        a = abar[t]
        a_prev = abar[ts[i + 1]] if i + 1 < steps else torch.ones((), device=x.device)
        out = unet(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device), cond)
        x0 = split_prediction(out, x, a, unet.prediction)[0].clamp(-clip, clip)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp_min(0).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
        if eta > 0 and i + 1 < steps:
            x = x + sigma * torch.randn(x.shape, generator=gen).to(x.device)
    return x
