"""The ``ldm`` image codec's compression latent (v2): a mean-scale hyperprior, one model for 8 qualities.

Why this shape: the first ``ldm`` latent (f=2, 8 channels, factorized Laplace) needed about 5x JPEG's
bits. The learned codecs that beat JPEG by half on Kodak are f=16 transforms with a hyperprior
(CompressAI's Kodak results: Balle'18 hyperprior -55 %, Minnen'18 mean-scale -58 % BD-rate vs JPEG).
This module is that design without the autoregressive context (a 10x slower serial decode):

* ``g_a``: 4 stride-2 5x5 convs with GDN -> ``y`` (``M`` channels at 1/16 resolution);
  ``g_s``: the mirror with IGDN. :meth:`HyperpriorModel.synthesis_features` stops before the last
  up-sampling conv so a LIIF head can later decode the same latent at any size.
* hyper path: ``h_a`` (3x3 conv, two stride-2 5x5 convs) -> ``z`` (1/64 resolution), a learned
  non-parametric density per ``z`` channel (Balle et al. 2018, appendix 6.1); ``h_s`` (two stride-2
  5x5 transposed convs, a 3x3 conv, ReLU only) -> per-element mean and scale of a Gaussian for ``y``
  (scale bounded below by 0.11). ReLU and plain convs only in ``h_s`` because the values that select a
  symbol's coding table must later be computed in integer arithmetic (Balle et al., ICLR 2019) so
  that every machine decodes the same bits; GDN there would make that needlessly hard.
* variable rate (Cui et al. 2021, "asymmetric gained"): quality ``q`` scales ``y`` channel-wise by a
  learned gain vector before rounding and by a separate learned inverse gain before ``g_s``; a larger
  gain is a finer quantiser. One network, trained with each sample drawing its own quality.
* quantisation in training: additive uniform noise for the rate terms; for the decoder path the
  straight-through rounding of ``y - mean`` (``round(y - mu) + mu``, as decoding will do) and of ``z``.

Decoding never imports training code: this module is the model only (architecture, likelihoods,
model-file build). Training lives in :mod:`.train_hyperprior`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor

MODEL_KIND = "ldm"          # the wing's model kind (weights.load(kind=...))
NETWORK = "hyperprior"      # config["network"]: which ldm network a model file holds
FORMAT_VERSION = 2          # model-format version of an exported hyperprior (2: + integer h_s and coding
                            # tables, see .hpcoding; 1: weights only)
SCALE_BOUND = 0.11          # lower bound of the Gaussian scales (CompressAI's default)
LIKELIHOOD_BOUND = 1e-9     # no symbol costs more than ~30 bits
#: what a decode-only copy of a model file keeps (:func:`.hpcoding.write_decode_only`): the synthesis
#: and its inverse gains, the integer ``h_s`` and the coding tables: everything a decoder reads
DECODE_KEEP = ("g_s.", "g_s_out.", "log2_inv_gain", "hs_int/", "y_radius", "y_tables", "y_thresholds",
               "z_lo", "z_size", "z_tables")
# CompressAI's lambdas for its 8 qualities (MSE on [0, 255] scale: loss = lambda * 255^2 * mse + bpp)
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)


# -------------------------------------------------------------------------------- small parts
class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it pushes x up (CompressAI's trick): a plain
    clamp would freeze a parameter or a scale that fell below its bound."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through, None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    return _LowerBound.apply(x, bound)


def ste_round(x: Tensor) -> Tensor:
    """Rounding with an identity gradient."""
    return x + (torch.round(x) - x).detach()


class GDN(nn.Module):
    """Generalized divisive normalization (Balle et al. 2016): ``x / sqrt(beta + gamma @ x^2)``
    (``inverse``: times). Parameters are stored as square roots with a pedestal, as in CompressAI,
    so they stay non-negative and trainable near zero."""

    _PEDESTAL = 2.0 ** -36
    _BETA_MIN = 1e-6

    def __init__(self, ch: int, inverse: bool = False, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = inverse
        p = self._PEDESTAL
        self.beta = nn.Parameter(torch.sqrt(torch.ones(ch) + p))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(ch) + p))

    def forward(self, x: Tensor) -> Tensor:
        p = self._PEDESTAL
        beta = lower_bound(self.beta, math.sqrt(self._BETA_MIN + p)) ** 2 - p
        gamma = lower_bound(self.gamma, math.sqrt(p)) ** 2 - p
        norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def _conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


class FactorizedDensity(nn.Module):
    """Balle et al. 2018 (appendix 6.1) univariate density per channel: a monotone cumulative
    ``c(x) = sigmoid(f_K(...f_1(x)))`` built from softplus-positive matrices and tanh gates.
    ``likelihood(z)`` is ``c(z + 1/2) - c(z - 1/2)``: the probability of the integer bin around ``z``
    (exact for rounded ``z``; with noisy ``z`` it is the density of the noisy variable)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            # deterministic spread of the biases (no global RNG at construction time)
            spread = torch.linspace(-0.5, 0.5, channels * dims[i + 1]).reshape(channels, dims[i + 1], 1)
            self.biases.append(nn.Parameter(spread.clone()))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits(self, x: Tensor) -> Tensor:
        # x: (C, 1, L) -> cumulative logits (C, 1, L)
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: Tensor) -> Tensor:
        """``z``: (B, C, H, W) -> bin probabilities of the same shape, bounded below."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self._logits(v - 0.5)
        upper = self._logits(v + 0.5)
        # evaluate in the tail where the sigmoids are far from 1 (numerically stable difference)
        sign = -torch.sign(lower + upper).detach()
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        lik = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        lik = lik.reshape(c, b, h, w).permute(1, 0, 2, 3)
        return lower_bound(lik, LIKELIHOOD_BOUND)

    def cdf(self, x: Tensor) -> Tensor:
        """Cumulative at points ``x`` of shape (C, L): for building coding tables later."""
        return torch.sigmoid(self._logits(x.unsqueeze(1))).squeeze(1)


def gaussian_likelihood(y: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """Probability of the unit bin around ``y`` under N(mean, scale^2), scale bounded below by 0.11.
    Computed on ``-|y - mean|`` so both tails use the accurate side of erfc."""
    s = lower_bound(scale, SCALE_BOUND)
    v = (y - mean).abs()
    c = -1.0 / math.sqrt(2.0)
    upper = 0.5 * torch.erfc(c * (0.5 - v) / s)
    lower = 0.5 * torch.erfc(c * (-0.5 - v) / s)
    return lower_bound(upper - lower, LIKELIHOOD_BOUND)


# ------------------------------------------------------------------------------------ the model
class HyperpriorModel(nn.Module):
    """Mean-scale hyperprior codec model with ``qualities`` gain vectors.

    ``n``: width of the main transforms; ``m``: channels of ``y``; ``nh``: width of the hyper
    transforms; ``nz``: channels of ``z``. Inputs are ``B,3,H,W`` in [0, 1] with H and W multiples of
    64 (pad before: ``y`` is at 1/16 and ``z`` at 1/64 resolution)."""

    def __init__(self, n: int = 128, m: int = 192, nh: int = 128, nz: int = 128, qualities: int = 8) -> None:
        super().__init__()
        self.config = dict(n=n, m=m, nh=nh, nz=nz, qualities=qualities)
        self.g_a = nn.Sequential(
            _conv(3, n), GDN(n), _conv(n, n), GDN(n), _conv(n, n), GDN(n), _conv(n, m))
        # g_s body up to the last up-sampling (features at 1/2 resolution), then the pixel layer
        self.g_s = nn.Sequential(
            _deconv(m, n), GDN(n, inverse=True), _deconv(n, n), GDN(n, inverse=True),
            _deconv(n, n), GDN(n, inverse=True))
        self.g_s_out = _deconv(n, 3)
        self.h_a = nn.Sequential(
            _conv(m, nh, 3, 1), nn.ReLU(), _conv(nh, nh), nn.ReLU(), _conv(nh, nz))
        self.h_s = nn.Sequential(
            _deconv(nz, nh), nn.ReLU(), _deconv(nh, nh), nn.ReLU(), _conv(nh, 2 * m, 3, 1))
        self.z_density = FactorizedDensity(nz)
        # log2 gains: finer quantiser for higher quality; doubling lambda ~ halving MSE ~ step / sqrt(2)
        init = (torch.arange(qualities, dtype=torch.float32) - (qualities - 1) / 2) * 0.5
        self.log2_gain = nn.Parameter(init[:, None].repeat(1, m).contiguous())
        self.log2_inv_gain = nn.Parameter((-init)[:, None].repeat(1, m).contiguous())

    # ---- pieces (also what a codec's encode/decode will call)
    def gains(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder and decoder gain vectors for quality indices ``q`` (0-based, shape (B,))."""
        g = torch.exp2(self.log2_gain[q])[:, :, None, None]
        ig = torch.exp2(self.log2_inv_gain[q])[:, :, None, None]
        return g, ig

    def analysis(self, x: Tensor, q: Tensor) -> Tensor:
        """``x`` in [0, 1] -> gained ``y`` (continuous; round ``y - mean`` to code it)."""
        g, _ = self.gains(q)
        return self.g_a(x * 2.0 - 1.0) * g

    def hyper_analysis(self, y: Tensor) -> Tensor:
        return self.h_a(y)

    def hyper_synthesis(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """Rounded ``z`` -> (mean, scale) of ``y`` (the scale not yet bounded)."""
        mean, scale = self.h_s(z_hat).chunk(2, dim=1)
        return mean, scale

    def synthesis_features(self, y_hat: Tensor, q: Tensor) -> Tensor:
        """Dequantised ``y`` -> ``n``-channel features at 1/2 resolution (what a LIIF head may use)."""
        _, ig = self.gains(q)
        return self.g_s(y_hat * ig)

    def synthesis(self, y_hat: Tensor, q: Tensor) -> Tensor:
        """Dequantised ``y`` -> image in [0, 1] (not clipped)."""
        return (self.g_s_out(self.synthesis_features(y_hat, q)) + 1.0) * 0.5

    # ---- training forward
    def forward(self, x: Tensor, q: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Training/evaluation pass. In training mode the rates come from additive uniform noise and
        the decoder sees straight-through rounded values; in eval mode everything is rounded, so the
        rate is the actual cost of the discretised symbols under the model (before table rounding).

        Returns ``x_hat``, ``bits_y`` and ``bits_z`` (per sample)."""
        y = self.analysis(x, q)
        z = self.hyper_analysis(y)
        if self.training:
            z_rate = z + _uniform_like(z, generator)
            z_hat = ste_round(z)
        else:
            z_hat = z_rate = torch.round(z)
        mean, scale = self.hyper_synthesis(z_hat)
        if self.training:
            y_rate = y + _uniform_like(y, generator)
            y_hat = ste_round(y - mean) + mean
        else:
            y_hat = y_rate = torch.round(y - mean) + mean
        lik_y = gaussian_likelihood(y_rate, mean, scale)
        lik_z = self.z_density.likelihood(z_rate)
        x_hat = self.synthesis(y_hat, q)
        bits_y = -torch.log2(lik_y).flatten(1).sum(1)
        bits_z = -torch.log2(lik_z).flatten(1).sum(1)
        return {"x_hat": x_hat, "bits_y": bits_y, "bits_z": bits_z}


def _uniform_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) - 0.5


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------- model files
def model_config(model: HyperpriorModel, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config an exported model file carries: the network name and its constructor args."""
    cfg: dict[str, Any] = {"network": NETWORK, "args": dict(model.config), "lambdas": list(LAMBDAS)}
    if extra:
        cfg.update(extra)
    return cfg


def export_arrays(model: HyperpriorModel) -> dict[str, np.ndarray]:
    """Inference weights by state-dict name (float32)."""
    return {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}


def decode_only_of(model_file: Any) -> str | None:
    """The SHA-256 of the full model a decode-only file was cut from, or None for a full model."""
    made = model_file.config.get("decode_only_of")
    return made if isinstance(made, str) else None


def from_model_file(model_file: Any, device: str = "cpu") -> HyperpriorModel:
    """A factory for :func:`neurocodec.weights.build`: the eval-mode network a model file holds.
    The result may be shared through the build cache: never train or move it in place."""
    from ...errors import InputError

    cfg = model_file.config
    if cfg.get("network") != NETWORK:
        raise InputError(f"ldm model file {model_file.short_digest} holds a '{cfg.get('network')}' "
                         f"network, not a '{NETWORK}'")
    model = HyperpriorModel(**{k: int(v) for k, v in cfg["args"].items()})
    names = list(model.state_dict())
    if decode_only_of(model_file) is not None:
        # a decode-only copy (hpcoding.write_decode_only): the synthesis only; the codec refuses to
        # encode with it and training to start from it, so the rest is never used
        names = [k for k in names if k.startswith(DECODE_KEEP)]
    state = {k: torch.from_numpy(np.array(model_file.array(k), dtype=np.float32)) for k in names}
    model.load_state_dict(state, strict=len(names) == len(model.state_dict()))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)
