"""Frozen encoders for the key-value bottleneck.

An encoder maps a batch ``x`` (float32 tensor ``N, ...``) to features ``N, D``. Anything callable
works (a torch module, a function); the built-ins below need no download and are stored inside a
bottleneck's model file because each describes itself with :meth:`~BuiltinEncoder.spec` (JSON)
and :meth:`~BuiltinEncoder.arrays` (numpy):

* :class:`PCAEncoder`: principal components, fitted on the *unlabelled* key-initialisation data.
* :class:`RandomReLUEncoder`: fixed random projection + ReLU (random features), from a seed.
* :class:`ConvAEEncoder`: the latent of a small convolutional autoencoder pretrained on rendered
  letters (no digits), shipped as ``weights/conv_ae.ncx`` (a ``model:kvb-encoder`` file, trained
  by ``train_default.py``).

Why a bottleneck file holds the conv encoder's weights itself (its encoder half, 94 kB) rather than
naming the shipped file: then the bottleneck file alone is everything a decoder needs, and its
digest, which every stream records, covers the encoder too. The shipped file stays the source that
new bottlenecks copy from; its short digest is kept in the spec (``source``) as provenance.

Built-ins are fitted at most once (by ``KVBottleneck.init_keys``) and are frozen afterwards.
Building one never touches the global RNG (torch modules are made on the meta device and filled
from the stored arrays).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ... import weights as model_files
from ...errors import InputError, UsageError
from .shipped import load_shipped

ENCODER_KIND = "kvb-encoder"  # model-file kind of a pretrained encoder (the conv autoencoder)
ENCODER_FORMAT_VERSION = 1
CONV_AE_SIZE = 28  # the autoencoder sees 28x28 grey images


def flatten(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


class BuiltinEncoder:
    """Common interface of the encoders that can be stored in a bottleneck file."""

    kind: str = ""

    def fit(self, x: torch.Tensor) -> "BuiltinEncoder":  # pragma: no cover - overridden when needed
        return self

    @property
    def fitted(self) -> bool:
        return True

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def to(self, device: torch.device | str) -> "BuiltinEncoder":
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class IdentityEncoder(BuiltinEncoder):
    """Use the (flattened) input itself as features: for precomputed embeddings."""

    kind = "identity"

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return flatten(x)


class PCAEncoder(BuiltinEncoder):
    """Project flattened inputs on their top ``dim`` principal components (optionally whitened)."""

    kind = "pca"

    def __init__(self, dim: int = 32, whiten: bool = False) -> None:
        if int(dim) < 1:
            raise UsageError(f"PCA dim must be >= 1, got {dim}")
        self.dim = int(dim)
        self.whiten = bool(whiten)
        self.mean: torch.Tensor | None = None
        self.components: torch.Tensor | None = None  # (D_in, dim)

    @property
    def fitted(self) -> bool:
        return self.components is not None

    def fit(self, x: torch.Tensor) -> "PCAEncoder":
        flat = flatten(x).double()
        if flat.shape[0] < 2:
            raise InputError("PCA needs at least 2 samples to fit")
        if self.dim > flat.shape[1]:
            raise UsageError(f"PCA dim {self.dim} exceeds the input size {flat.shape[1]}")
        mean = flat.mean(0)
        # SVD of the centred data in float64 so the fit is reproducible
        _, s, vh = torch.linalg.svd(flat - mean, full_matrices=False)
        comps = vh[: self.dim].T
        # fix the sign of each component (largest |entry| positive) so fits are deterministic
        signs = torch.sign(comps[comps.abs().argmax(0), torch.arange(comps.shape[1])])
        comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
        if self.whiten:
            std = s[: self.dim] / max(flat.shape[0] - 1, 1) ** 0.5
            comps = comps / std.clamp_min(1e-8)
        self.mean = mean.float().to(x.device)
        self.components = comps.float().to(x.device)
        return self

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "dim": self.dim, "whiten": self.whiten}

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.fitted:
            return {}
        return {"mean": self.mean.cpu().numpy(), "components": self.components.cpu().numpy()}

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        mean, comps = np.asarray(arrays["mean"]), np.asarray(arrays["components"])
        if mean.ndim != 1 or comps.shape != (mean.shape[0], self.dim):
            raise InputError(f"PCA arrays have shapes {mean.shape} and {comps.shape}, "
                             f"expected (D,) and (D, {self.dim})")
        self.mean = torch.from_numpy(np.array(mean, np.float32))
        self.components = torch.from_numpy(np.array(comps, np.float32))

    def to(self, device: torch.device | str) -> "PCAEncoder":
        if self.fitted:
            self.mean, self.components = self.mean.to(device), self.components.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            raise UsageError("PCA encoder is not fitted: call init_keys() first")
        flat = flatten(x)
        if flat.shape[1] != self.mean.shape[0]:
            raise InputError(f"PCA encoder was fitted on {self.mean.shape[0]} values per sample, got {flat.shape[1]}")
        return (flat - self.mean) @ self.components


class RandomReLUEncoder(BuiltinEncoder):
    """``relu(W x + b)`` with Gaussian ``W`` (variance 1/D_in) and uniform ``b``, from a seed.

    Inputs are divided by their per-sample maximum first, so 0..1, 0..16 and 0..255 images give
    the same features. The weights are regenerated from the seed (numpy PCG64, stable across
    versions), so a saved bottleneck stores only the seed.
    """

    kind = "random_relu"

    def __init__(self, dim: int = 256, seed: int = 0, in_dim: int | None = None) -> None:
        if int(dim) < 1:
            raise UsageError(f"random feature dim must be >= 1, got {dim}")
        self.dim, self.seed = int(dim), int(seed)
        self.in_dim: int | None = None
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        if in_dim is not None:
            self._build(int(in_dim))

    def _build(self, in_dim: int) -> None:
        rng = np.random.default_rng(self.seed)
        w = rng.standard_normal((in_dim, self.dim)) / np.sqrt(in_dim)
        b = rng.uniform(-0.5, 0.5, self.dim)
        self.in_dim = in_dim
        self.weight = torch.from_numpy(w.astype(np.float32))
        self.bias = torch.from_numpy(b.astype(np.float32))

    @property
    def fitted(self) -> bool:
        return self.weight is not None

    def fit(self, x: torch.Tensor) -> "RandomReLUEncoder":
        self._build(flatten(x).shape[1])
        return self.to(x.device)

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "dim": self.dim, "seed": self.seed, "in_dim": self.in_dim}

    def to(self, device: torch.device | str) -> "RandomReLUEncoder":
        if self.fitted:
            self.weight, self.bias = self.weight.to(device), self.bias.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            raise UsageError("random feature encoder is not built: call init_keys() first")
        flat = flatten(x)
        if flat.shape[1] != self.in_dim:
            raise InputError(f"random feature encoder expects {self.in_dim} values per sample, got {flat.shape[1]}")
        flat = flat / flat.abs().amax(1, keepdim=True).clamp_min(1e-8)
        return torch.relu(flat @ self.weight + self.bias)


def conv_ae_encoder(latent: int = 64, width: int = 32) -> nn.Sequential:
    """The encoder half of :class:`ConvAE`: ``N,1,28,28`` -> ``N, latent``."""
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w // 2, 3, stride=2, padding=1), nn.ReLU(),  # 14x14
        nn.Conv2d(w // 2, w, 3, stride=2, padding=1), nn.ReLU(),  # 7x7
        nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),  # 4x4
        nn.Flatten(), nn.Linear(w * 16, latent),
    )


class ConvAE(nn.Module):
    """Small convolutional autoencoder for 28x28 grey images (latent ``latent`` values)."""

    def __init__(self, latent: int = 64, width: int = 32) -> None:
        super().__init__()
        w = width
        self.encoder = conv_ae_encoder(latent, width)
        self.decoder = nn.Sequential(
            nn.Linear(latent, w * 16), nn.ReLU(), nn.Unflatten(1, (w, 4, 4)),
            nn.ConvTranspose2d(w, w, 3, stride=2, padding=1), nn.ReLU(),  # 7x7
            nn.ConvTranspose2d(w, w // 2, 4, stride=2, padding=1), nn.ReLU(),  # 14x14
            nn.ConvTranspose2d(w // 2, 1, 4, stride=2, padding=1),  # 28x28 (logits)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def to_ae_input(x: torch.Tensor) -> torch.Tensor:
    """Any grey image batch (``N,H,W`` or ``N,1,H,W``, any value range) -> ``N,1,28,28`` in 0..1."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise InputError(f"the conv autoencoder takes grey images N,H,W or N,1,H,W; got shape {tuple(x.shape)}")
    x = x.float()
    x = x / x.flatten(1).amax(1).clamp_min(1e-8)[:, None, None, None]
    if x.shape[-2:] != (CONV_AE_SIZE, CONV_AE_SIZE):
        x = nn.functional.interpolate(x, size=(CONV_AE_SIZE, CONV_AE_SIZE), mode="bilinear", align_corners=False)
    return x


class ConvAEEncoder(BuiltinEncoder):
    """Latent of the shipped conv autoencoder (pretrained on rendered letters, frozen).

    ``weights``: a ``model:kvb-encoder`` file; default the shipped ``weights/conv_ae.ncx``, which is
    refused unless its digest is the one recorded in :data:`~.shipped.SHIPPED`."""

    kind = "conv_ae"

    def __init__(self, weights: str | Path | None = None) -> None:
        versions = (1, ENCODER_FORMAT_VERSION)
        if weights is None:
            mf = load_shipped("conv_ae", ENCODER_KIND, versions)
        else:
            mf = model_files.load(weights, kind=ENCODER_KIND, versions=versions)
        if mf.config.get("arch") != "conv_ae":
            raise InputError(f"kvb-encoder file {mf.short_digest} holds a '{mf.config.get('arch')}' encoder, "
                             "not a conv autoencoder")
        prefix = "encoder."
        state = {k[len(prefix):]: v for k, v in mf.arrays.items() if k.startswith(prefix)}
        self._setup(int(mf.config["latent"]), int(mf.config["width"]), state, mf.short_digest)

    @classmethod
    def from_arrays(cls, latent: int, width: int, arrays: Mapping[str, np.ndarray],
                    source: str | None = None) -> "ConvAEEncoder":
        """Rebuild from the encoder-half arrays a bottleneck file stores (see :meth:`arrays`)."""
        obj = cls.__new__(cls)
        obj._setup(int(latent), int(width), arrays, source)
        return obj

    def _setup(self, latent: int, width: int, arrays: Mapping[str, np.ndarray], source: str | None) -> None:
        self.latent, self.width, self.source = latent, width, source
        # the stored arrays (float16 as trained) are kept as they are, so a bottleneck saved on
        # this encoder holds exactly the shipped values
        self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        with torch.device("meta"):  # no initialisation, so the global RNG is not touched
            module = conv_ae_encoder(latent, width)
        module = module.to_empty(device="cpu")
        try:
            module.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in arrays.items()})
        except RuntimeError as exc:
            raise InputError(f"conv autoencoder arrays do not fit its architecture: {exc}".splitlines()[0]) from None
        self.model = module.eval().requires_grad_(False)

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "latent": self.latent, "width": self.width, "source": self.source}

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self._arrays)

    def to(self, device: torch.device | str) -> "ConvAEEncoder":
        self.model.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(to_ae_input(x))


_BUILTINS: Mapping[str, Callable[..., BuiltinEncoder]] = MappingProxyType({
    "identity": IdentityEncoder,
    "pca": PCAEncoder,
    "random_relu": RandomReLUEncoder,
    "conv_ae": ConvAEEncoder,
})


def builtin_names() -> list[str]:
    return sorted(_BUILTINS)


def make_encoder(name: str, **options: Any) -> BuiltinEncoder:
    """A built-in encoder by name: ``identity``, ``pca``, ``random_relu``, ``conv_ae``."""
    if name not in _BUILTINS:
        raise UsageError(f"unknown encoder '{name}' (built-ins: {', '.join(builtin_names())})")
    try:
        return _BUILTINS[name](**options)
    except TypeError as exc:
        raise UsageError(f"bad options for encoder '{name}': {exc}") from None


def from_spec(spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> BuiltinEncoder:
    """Rebuild a built-in encoder saved with :meth:`BuiltinEncoder.spec` / :meth:`arrays`."""
    kind = spec.get("type")
    if kind == "identity":
        return IdentityEncoder()
    # a stored bottleneck has keys, so its encoder was fitted: an unfitted one is a damaged file
    if kind == "pca":
        enc = PCAEncoder(spec["dim"], spec.get("whiten", False))
        if set(arrays) != {"mean", "components"}:
            raise InputError("bottleneck file names a PCA encoder but does not hold its mean and components")
        enc.load_arrays(arrays)
        return enc
    if kind == "random_relu":
        if not isinstance(spec.get("in_dim"), int):
            raise InputError("bottleneck file names a random-feature encoder without its input size")
        return RandomReLUEncoder(spec["dim"], spec["seed"], spec["in_dim"])
    if kind == "conv_ae":
        if not arrays:
            raise InputError("bottleneck file names a conv_ae encoder but holds none of its arrays")
        return ConvAEEncoder.from_arrays(spec["latent"], spec["width"], arrays, spec.get("source"))
    raise InputError(f"bottleneck file names an encoder this code cannot rebuild: {spec}")
