"""Frozen encoders for the key-value bottleneck.

An encoder maps a batch ``x`` (float32 tensor ``N, ...``) to features ``N, D``. Anything callable
works (a torch module, a function); the built-ins below need no download and can be saved inside a
bottleneck file because each describes itself with :meth:`spec` and :meth:`arrays`:

* :class:`PCAEncoder`: principal components, fitted on the *unlabelled* key-initialisation data.
* :class:`RandomReLUEncoder`: fixed random projection + ReLU (random features), from a seed.
* :class:`ConvAEEncoder`: the latent of a small convolutional autoencoder pretrained on rendered
  letters (no digits), shipped in ``weights/conv_ae.npz`` and trained by ``train_default.py``.

Built-ins are fitted at most once (by ``KVBottleneck.init_keys``) and are frozen afterwards.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ...errors import InputError, UsageError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CONV_AE_WEIGHTS = WEIGHTS_DIR / "conv_ae.npz"
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

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.mean = torch.from_numpy(np.asarray(arrays["mean"], np.float32).copy())
        self.components = torch.from_numpy(np.asarray(arrays["components"], np.float32).copy())

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


class ConvAE(nn.Module):
    """Small convolutional autoencoder for 28x28 grey images (latent ``latent`` values)."""

    def __init__(self, latent: int = 64, width: int = 32) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w // 2, 3, stride=2, padding=1), nn.ReLU(),  # 14x14
            nn.Conv2d(w // 2, w, 3, stride=2, padding=1), nn.ReLU(),  # 7x7
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),  # 4x4
            nn.Flatten(), nn.Linear(w * 16, latent),
        )
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


def _state_to_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


class ConvAEEncoder(BuiltinEncoder):
    """Latent of the shipped conv autoencoder (pretrained on rendered letters, frozen)."""

    kind = "conv_ae"

    def __init__(self, weights: str | Path | None = None) -> None:
        path = Path(weights) if weights is not None else CONV_AE_WEIGHTS
        if not path.exists():
            raise UsageError(
                f"conv autoencoder weights {path} are missing (run neurocodec/codecs/kvb/train_default.py)"
            )
        with np.load(path, allow_pickle=False) as z:
            config = json.loads(str(z["config"]))
            state = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files if k != "config"}
        self.config = config
        self.model = ConvAE(latent=config["latent"], width=config["width"])
        self.model.load_state_dict(state)
        self.model.eval().requires_grad_(False)
        h = hashlib.sha256()
        for k in sorted(state):
            h.update(k.encode() + state[k].numpy().tobytes())
        self.weights_sha = h.hexdigest()[:16]

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "weights_sha": self.weights_sha}

    def to(self, device: torch.device | str) -> "ConvAEEncoder":
        self.model.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.encoder(to_ae_input(x))


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


def from_spec(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> BuiltinEncoder:
    """Rebuild a built-in encoder saved with :meth:`BuiltinEncoder.spec` / :meth:`arrays`."""
    kind = spec.get("type")
    if kind == "identity":
        return IdentityEncoder()
    if kind == "pca":
        enc = PCAEncoder(spec["dim"], spec.get("whiten", False))
        if arrays:
            enc.load_arrays(arrays)
        return enc
    if kind == "random_relu":
        return RandomReLUEncoder(spec["dim"], spec["seed"], spec.get("in_dim"))
    if kind == "conv_ae":
        enc = ConvAEEncoder()
        if spec.get("weights_sha") != enc.weights_sha:
            raise InputError(
                f"bottleneck was built on conv autoencoder weights {spec.get('weights_sha')}, "
                f"but this package ships {enc.weights_sha}"
            )
        return enc
    raise InputError(f"bottleneck file names an encoder this code cannot rebuild: {spec}")
