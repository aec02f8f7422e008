"""The two first-stage networks, both ending in the same LIIF head (:mod:`.liif`).

* :class:`LIIFUpsampler` (the ``--method liif`` upsampler): a small EDSR-style feature net on the
  low-resolution pixels (no down- or up-sampling), LIIF residual over bicubic.
* :class:`CodecAE` (the ``ldm`` codec and the diffusion latent space): an f=2 encoder to ``c`` latent
  channels, per-quality gain vectors (one network, several rate points), rounding (uniform noise for
  the rate term, straight-through for the decoder in training), a factorized Laplace entropy model per
  quality and channel, and a decoder *without up-sampling* whose feature map at latent resolution
  feeds the LIIF head, so the latent decodes at any size.

f=2 rather than f=4: on this CPU a tiny f=4 latent pipeline reconstructed only 24.6-29.1 dB; halving
the factor (4x the latent positions) is the cheapest way to a usable reconstruction ceiling.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .liif import LIIFHead, domain_centers, render

Tensor = torch.Tensor


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.c2(F.relu(self.c1(x)))


def to_unit(img: np.ndarray) -> Tensor:
    """``H,W,3`` uint8 -> ``1,3,H,W`` float in [0, 1]."""
    return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float().unsqueeze(0) / 255.0


def to_uint8(x: Tensor) -> np.ndarray:
    """``1,3,H,W`` float in [0, 1] -> ``H,W,3`` uint8 (rounded, clipped)."""
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8).cpu().numpy()


# --------------------------------------------------------------------------------- upsampler
class LIIFUpsampler(nn.Module):
    def __init__(self, ch: int = 32, blocks: int = 4, hidden: int = 64, depth: int = 3) -> None:
        super().__init__()
        self.config = dict(ch=ch, blocks=blocks, hidden=hidden, depth=depth)
        self.head_conv = nn.Conv2d(3, ch, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(ch) for _ in range(blocks)])
        self.tail = nn.Conv2d(ch, ch, 3, padding=1)
        self.head = LIIFHead(ch, hidden, depth)
        self.radius = 2 + 2 * blocks

    def features(self, lr: Tensor) -> tuple[Tensor, Tensor]:
        """``lr`` in [0, 1] -> (features, base = lr)."""
        x = self.head_conv(lr * 2 - 1)
        return x + self.tail(self.body(x)), lr

    def forward(self, lr: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
        """Training path: all features at once, arbitrary query points ``(B, Q, 2)``."""
        from .liif import bicubic_at

        feat, base = self.features(lr)
        hw = (lr.shape[2], lr.shape[3])
        return self.head.query(self.head.prepare(feat), coord, cell, hw) + bicubic_at(base, coord, hw)

    @torch.no_grad()
    def upsample(self, lr: Tensor, out_h: int, out_w: int, *, tile: int | None = 256, progress: bool = False
                 ) -> Tensor:
        h, w = lr.shape[2:]
        ys, xs = domain_centers(out_h, 1.0, device=lr.device), domain_centers(out_w, 1.0, device=lr.device)
        return render(self.features, self.radius, self.head, lr, ys, xs, (2 / out_h, 2 / out_w), tile=tile,
                      progress=progress)


class SynthesisLIIF(LIIFUpsampler):
    """The hyperprior codec's any-size decoder: the :class:`LIIFUpsampler` on the 1x decode, fed the
    synthesis features too (``g_s`` before its last up-sampling layer, ``feat_ch`` channels at 1/2
    resolution) through a 1x1 ``fuse`` conv added to its first feature map.

    Why: the pixel upsampler only sees the decoded pixels, after the last layer has thrown away
    what ``g_s`` knew; trained on decoded images (not clean ones) it also learns the codec's own
    artefacts. ``fuse`` starts at zero, so a fresh network is exactly the upsampler it is
    initialised from. The fused features are computed once per image (:meth:`source`, a 1x1 conv
    and a bilinear 2x up-sampling, both pointwise or local), so tiled rendering still equals
    untiled rendering."""

    def __init__(self, feat_ch: int = 96, ch: int = 32, blocks: int = 4, hidden: int = 64, depth: int = 3) -> None:
        super().__init__(ch, blocks, hidden, depth)
        self.config = dict(feat_ch=feat_ch, ch=ch, blocks=blocks, hidden=hidden, depth=depth)
        self.fuse = nn.Conv2d(feat_ch, ch, 1)
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def source(self, decoded: Tensor, feats: Tensor) -> Tensor:
        """``decoded`` (B,3,h,w in [0, 1]) and synthesis features (B,feat_ch,>=h/2,>=w/2) -> the
        (B, 3 + ch, h, w) map that :meth:`features` reads windows of."""
        h, w = decoded.shape[2:]
        up = F.interpolate(self.fuse(feats), scale_factor=2, mode="bilinear", align_corners=False)
        return torch.cat([decoded, up[:, :, :h, :w]], dim=1)

    def features(self, src: Tensor) -> tuple[Tensor, Tensor]:
        decoded = src[:, :3]
        x = self.head_conv(decoded * 2 - 1) + src[:, 3:]
        return x + self.tail(self.body(x)), decoded


# ------------------------------------------------------------------------------ autoencoder
def encode_tiled(ae: "CodecAE", x: Tensor, rows: int | None = 64) -> Tensor:
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


def laplace_cdf(x: Tensor, b: Tensor) -> Tensor:
    return 0.5 + 0.5 * torch.sign(x) * (1 - torch.exp(-x.abs() / b))


class CodecAE(nn.Module):
    #: down-sampling factor of the latent grid (fixed by the architecture; streams rely on it)
    factor = 2

    def __init__(
        self, ch: int = 48, latent: int = 8, dec_blocks: int = 3, hidden: int = 64, depth: int = 3, qualities: int = 4
    ) -> None:
        super().__init__()
        self.config = dict(ch=ch, latent=latent, dec_blocks=dec_blocks, hidden=hidden, depth=depth, qualities=qualities)
        self.latent = latent
        self.qualities = qualities
        self.enc = nn.Sequential(
            nn.Conv2d(3, ch, 4, stride=2, padding=1), nn.ReLU(), ResBlock(ch), ResBlock(ch), nn.Conv2d(ch, latent, 3, padding=1)
        )
        self.dec_in = nn.Conv2d(latent, ch, 3, padding=1)
        self.dec_body = nn.Sequential(*[ResBlock(ch) for _ in range(dec_blocks)])
        self.to_base = nn.Conv2d(ch, 3, 1)
        self.head = LIIFHead(ch, hidden, depth)
        self.radius = 1 + 2 * dec_blocks
        # per quality: log-gain per channel (quantization step 1/gain), Laplace mean and log-scale
        self.log_gain = nn.Parameter(torch.log(torch.linspace(0.5, 4.0, qualities)).unsqueeze(1).repeat(1, latent))
        self.prior_mean = nn.Parameter(torch.zeros(qualities, latent))
        self.prior_logb = nn.Parameter(torch.zeros(qualities, latent))

    # -- first stage
    def encode(self, x: Tensor) -> Tensor:
        """``x`` in [0, 1], sides divisible by 2 -> continuous latent ``y``."""
        return self.enc(x * 2 - 1)

    def features(self, z: Tensor) -> tuple[Tensor, Tensor]:
        f = self.dec_in(z)
        f = f + self.dec_body(f)
        # the 1x1 `to_base` in float64: oneDNN's float32 sums for it differ by ~2e-7 between thread
        # counts, enough to flip a rounding of the 8-bit output; in float64 1, 2 and 4 threads agree
        # (and agree with the float32 1-thread output the committed fixtures were made with)
        w, b = self.to_base.weight, self.to_base.bias
        base = F.conv2d(f.double(), w.double(), b.double()).to(f.dtype)
        return f, base + 0.5

    def forward_query(self, z: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
        from .liif import bicubic_at

        feat, base = self.features(z)
        hw = (z.shape[2], z.shape[3])
        return self.head.query(self.head.prepare(feat), coord, cell, hw) + bicubic_at(base, coord, hw)

    @torch.no_grad()
    def render(
        self, z: Tensor, out_h: int, out_w: int, extent: tuple[float, float] = (1.0, 1.0), *, tile: int | None = 256,
        progress: bool = False,
    ) -> Tensor:
        """Decode latent ``z`` to an ``out_h x out_w`` image of the region ``extent`` of its domain."""
        ys = domain_centers(out_h, extent[0], device=z.device)
        xs = domain_centers(out_w, extent[1], device=z.device)
        cell = (2 * extent[0] / out_h, 2 * extent[1] / out_w)
        return render(self.features, self.radius, self.head, z, ys, xs, cell, tile=tile, progress=progress)

    # -- quantization and rate
    def gains(self, q: Tensor) -> Tensor:
        return torch.exp(self.log_gain[q])  # (B, c)

    def likelihood_bits(self, v: Tensor, q: Tensor) -> Tensor:
        """Bits of (noisy) scaled latent ``v`` (B, c, h, w) under the quality-``q`` prior, per sample."""
        mu = self.prior_mean[q][:, :, None, None]
        b = torch.exp(self.prior_logb[q])[:, :, None, None].clamp_min(0.02)
        p = laplace_cdf(v - mu + 0.5, b) - laplace_cdf(v - mu - 0.5, b)
        return -torch.log2(p.clamp_min(1e-9)).sum(dim=(1, 2, 3))

    def quantize_train(self, y: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """(decoder input with straight-through rounding, bits per sample with uniform noise)."""
        g = self.gains(q)[:, :, None, None]
        v = y * g
        bits = self.likelihood_bits(v + torch.empty_like(v).uniform_(-0.5, 0.5), q)
        v_hat = v + (torch.round(v) - v).detach()
        return v_hat / g, bits

    def prior_tables(self, radius: int) -> np.ndarray:
        """Integer frequency tables ``(qualities, c, 2*radius+1)`` of the Laplace priors, computed in
        float64 from the (stored) parameters and quantized once; the codec ships and uses only these."""
        from ...entropy import quantize_pmf

        k = np.arange(-radius, radius + 1, dtype=np.float64)
        mu = self.prior_mean.detach().double().numpy()[:, :, None]
        b = np.maximum(np.exp(self.prior_logb.detach().double().numpy()), 0.02)[:, :, None]

        def cdf(x: np.ndarray) -> np.ndarray:
            return 0.5 + 0.5 * np.sign(x) * (1 - np.exp(-np.abs(x) / b))

        pmf = np.maximum(cdf(k - mu + 0.5) - cdf(k - mu - 0.5), 0.0)
        pmf = pmf / pmf.sum(-1, keepdims=True)
        return quantize_pmf(pmf, precision=16)
