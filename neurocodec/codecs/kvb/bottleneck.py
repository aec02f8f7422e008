"""The discrete key-value bottleneck (Trauble et al., ICML 2023) as a trainable object.

Pipeline for a batch ``x``::

    z = encoder(x)                       # frozen, N x D
    h[:, c] = z @ P[c]                   # C fixed random projections D -> d_k ("random"),
                                         # or C contiguous chunks of z ("chunk" = product quantization)
    i[:, c] = argmin_k |h[:, c] - keys[c, k]|    # frozen keys (EMA k-means on unlabelled data)
    logits = mean_c values[c, i[:, c]]   # values: the only trained tensor, zeros at start

Why it does not forget: a sample only touches the C values its keys select, and with SGD
without momentum or weight decay every other value stays exactly where it was. Because keys and
encoder are frozen, ``partial_fit`` computes the key indices once per task; each epoch is then a
gather and a scatter-add over ``N x C`` integers, which makes thousands of epochs cheap.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from ...errors import InputError, UsageError
from . import encoders as enc_mod

FORMAT = "neurocodec-kvb"
FORMAT_VERSION = 1
_SPLITTERS = ("random", "chunk")
# elements per distance block (codebooks x samples x keys): bounds memory of the nearest-key search
_BLOCK = 1 << 22


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_batch(x: Any, what: str = "x") -> torch.Tensor:
    """numpy array / torch tensor / nested list -> float32 CPU-or-device tensor ``N, ...``.

    ``uint8`` images are scaled to 0..1; anything non-numeric, empty, 1-D or non-finite is refused.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise InputError(f"{what} is not an array ({exc})") from None
        if arr.dtype.kind not in "biuf":
            raise InputError(f"{what} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise InputError(f"{what} must be real")
    if t.ndim < 2:
        raise InputError(f"{what} must be a batch (N, ...) with at least 2 dimensions, got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.numel() == 0:
        raise InputError(f"{what} is empty (shape {tuple(t.shape)})")
    scale = 1 / 255 if t.dtype == torch.uint8 else 1.0
    t = t.float() * scale if t.dtype != torch.float32 else t
    if not torch.isfinite(t).all():
        raise InputError(f"{what} holds NaN or infinite values")
    return t


def as_labels(y: Any, n: int, num_classes: int) -> torch.Tensor:
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"labels must be integers, got dtype {arr.dtype}")
    arr = arr.reshape(-1).astype(np.int64)
    if arr.size != n:
        raise InputError(f"got {arr.size} labels for {n} samples")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise InputError(
            f"labels must lie in 0..{num_classes - 1} (value_dim={num_classes}), got {arr.min()}..{arr.max()}"
        )
    return torch.from_numpy(arr)


class Lookup(NamedTuple):
    """What the decoder reconstructs from the indices."""

    indices: np.ndarray  # N x C int64
    values: np.ndarray  # N x C x value_dim float32: the value each codebook selected
    logits: np.ndarray  # N x value_dim float32: their mean


class KVBottleneck:
    """Discrete key-value bottleneck on a frozen encoder.

    ``encoder``: a built-in name (``"pca"``, ``"random_relu"``, ``"conv_ae"``, ``"identity"``), a
    built-in encoder object, any torch module or a callable ``x -> N x D``. Torch modules are put
    in eval mode and never updated.
    """

    def __init__(
        self,
        encoder: Any = "pca",
        *,
        num_codebooks: int = 64,
        num_keys: int = 128,
        key_dim: int | None = None,
        value_dim: int = 10,
        splitter: str = "random",
        decay: float = 0.95,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        for name, v in (("num_codebooks", num_codebooks), ("num_keys", num_keys), ("value_dim", value_dim)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise UsageError(f"{name} must be a positive integer, got {v!r}")
        if num_keys > 1 << 16:
            raise UsageError(f"num_keys must be at most {1 << 16}, got {num_keys}")
        if splitter not in _SPLITTERS:
            raise UsageError(f"splitter must be one of {', '.join(_SPLITTERS)}, got {splitter!r}")
        if key_dim is not None and (not isinstance(key_dim, (int, np.integer)) or key_dim < 1):
            raise UsageError(f"key_dim must be a positive integer, got {key_dim!r}")
        if not 0.0 < decay < 1.0:
            raise UsageError(f"decay must lie in (0, 1), got {decay}")
        self.num_codebooks, self.num_keys, self.value_dim = int(num_codebooks), int(num_keys), int(value_dim)
        self.key_dim = int(key_dim) if key_dim is not None else (8 if splitter == "random" else None)
        self.splitter, self.decay, self.seed = splitter, float(decay), int(seed)
        self.device = torch.device(device) if device is not None else default_device()
        self.encoder = self._resolve_encoder(encoder)
        self.input_shape: tuple[int, ...] | None = None
        self.feature_dim: int | None = None
        self.proj: torch.Tensor | None = None  # C x D x d_k
        self.keys: torch.Tensor | None = None  # C x K x d_k, frozen after init_keys
        self.values: torch.Tensor | None = None  # C x K x value_dim
        self.counts: torch.Tensor | None = None  # C x K: how often training selected each key
        self.freqs: np.ndarray | None = None  # C x K int32: entropy-coding tables from counts
        self.tasks_seen = 0
        self.classes_seen: list[int] = []

    # ------------------------------------------------------------------------------ encoder
    def _resolve_encoder(self, encoder: Any) -> Any:
        if encoder is None:
            encoder = "identity"
        if isinstance(encoder, str):
            encoder = enc_mod.make_encoder(encoder)
        if isinstance(encoder, torch.nn.Module):
            encoder = encoder.to(self.device).eval().requires_grad_(False)
        elif isinstance(encoder, enc_mod.BuiltinEncoder):
            encoder.to(self.device)
        elif not callable(encoder):
            raise UsageError(
                f"encoder must be a built-in name, a torch module or a callable, got {type(encoder).__name__}"
            )
        return encoder

    def encoder_spec(self) -> dict[str, Any]:
        if isinstance(self.encoder, enc_mod.BuiltinEncoder):
            return self.encoder.spec()
        return {"type": "custom", "name": type(self.encoder).__name__}

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            if tuple(x.shape) == self.input_shape:
                return x[None]  # a single sample
            raise InputError(f"expected samples of shape {self.input_shape}, got a batch of shape {tuple(x.shape)}")
        return x

    @torch.no_grad()
    def features(self, x: Any, batch_size: int = 2048) -> torch.Tensor:
        """Frozen encoder output ``N x D`` (on this bottleneck's device)."""
        t = self._check_input(as_batch(x))
        out = []
        for s in range(0, t.shape[0], batch_size):
            z = self.encoder(t[s : s + batch_size].to(self.device))
            z = torch.as_tensor(z, device=self.device).float()
            out.append(z.reshape(z.shape[0], -1))
        z = torch.cat(out)
        if self.feature_dim is not None and z.shape[1] != self.feature_dim:
            raise InputError(f"encoder gave {z.shape[1]} features, the keys were built on {self.feature_dim}")
        if not torch.isfinite(z).all():
            raise InputError("encoder produced NaN or infinite features")
        return z

    # ---------------------------------------------------------------------------- splitting
    def _make_projection(self, dim: int) -> None:
        C = self.num_codebooks
        if self.splitter == "chunk":
            if dim % C:
                raise UsageError(
                    f"splitter='chunk' needs the feature size ({dim}) to be a multiple of num_codebooks ({C})"
                )
            if self.key_dim is not None and self.key_dim != dim // C:
                raise UsageError(f"splitter='chunk' gives key_dim = {dim} / {C} = {dim // C}, not {self.key_dim}")
            self.key_dim, self.proj = dim // C, None
            return
        # fixed random Gaussian projection per codebook with unit-norm columns, from the seed
        # (numpy PCG64 is stable across versions, so a file only needs to store the seed)
        p = np.random.default_rng(self.seed).standard_normal((C, dim, self.key_dim))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
        self.proj = torch.from_numpy(p.astype(np.float32)).to(self.device)

    def split(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``N x D`` -> per-codebook queries ``N x C x d_k``."""
        if self.splitter == "chunk":
            return z.reshape(z.shape[0], self.num_codebooks, self.key_dim)
        return torch.einsum("nd,cdk->nck", z, self.proj)

    def _nearest(self, h: torch.Tensor, mask: bool) -> torch.Tensor:
        """Index of the nearest key per codebook, ``N x C`` int64 (unused keys masked if asked)."""
        N, C, _ = h.shape
        K = self.num_keys
        keys = self.keys
        knorm = (keys * keys).sum(-1)  # C x K
        blocked = None
        if mask and self.counts is not None:
            unused = self.counts == 0
            # a codebook no training sample reached keeps all its keys
            blocked = unused & ~unused.all(1, keepdim=True)
            if not blocked.any():
                blocked = None
        out = torch.empty(N, C, dtype=torch.long, device=h.device)
        cstep = max(1, min(C, _BLOCK // max(1, K * min(N, 256))))
        nstep = max(1, _BLOCK // max(1, cstep * K))
        for c0 in range(0, C, cstep):
            c1 = min(C, c0 + cstep)
            kb, kn = keys[c0:c1], knorm[c0:c1]
            for n0 in range(0, N, nstep):
                hb = h[n0 : n0 + nstep, c0:c1].transpose(0, 1)  # c x n x d_k
                d = torch.baddbmm(kn[:, None, :], hb, kb.transpose(1, 2), alpha=-2.0)  # c x n x K
                if blocked is not None:
                    d.masked_fill_(blocked[c0:c1, None, :], math.inf)
                out[n0 : n0 + nstep, c0:c1] = d.argmin(-1).T
        return out

    # ------------------------------------------------------------------------------- keys
    @property
    def initialised(self) -> bool:
        return self.keys is not None

    def _require_keys(self) -> None:
        if self.keys is None:
            raise UsageError("the keys are not initialised: call init_keys(unlabelled_data) first")

    @torch.no_grad()
    def init_keys(
        self, unlabelled: Any, *, epochs: int = 10, batch_size: int = 256, progress: bool = False
    ) -> "KVBottleneck":
        """Fit the keys by EMA k-means on unlabelled data, replacing dead keys; then freeze them.

        Resets the values (to zero) and the usage counts. Built-in encoders that need fitting
        (PCA) are fitted here, on the same unlabelled data, and frozen too.
        """
        if epochs < 1 or batch_size < 1:
            raise UsageError("epochs and batch_size must be >= 1")
        x = as_batch(unlabelled, "unlabelled data")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise InputError(f"expected samples of shape {self.input_shape}, got {tuple(x.shape[1:])}")
        self.input_shape = tuple(x.shape[1:])
        if isinstance(self.encoder, enc_mod.BuiltinEncoder) and not self.encoder.fitted:
            self.encoder.fit(x.to(self.device))
        self.feature_dim = None
        z = self.features(x)
        self.feature_dim = z.shape[1]
        self._make_projection(self.feature_dim)
        h = self.split(z)  # N x C x d_k
        N, C, dk = h.shape
        K = self.num_keys
        gen = torch.Generator().manual_seed(self.seed)
        # start from random samples (per codebook), as k-means++-free EMA k-means does
        start = torch.randint(0, N, (C, K), generator=gen).to(self.device)
        keys = h[start, torch.arange(C, device=self.device)[:, None]].clone()  # C x K x d_k
        B = min(batch_size, N)
        expected = B / K
        ema_count = torch.full((C, K), expected, device=self.device)
        ema_sum = keys * expected
        threshold = 0.1 * B / K
        offs = (torch.arange(C, device=self.device) * K)[None, :]
        steps = epochs * math.ceil(N / B)
        self.keys = keys
        with tqdm(total=steps, desc="kvb keys", disable=not progress, file=None) as bar:
            step = 0
            for _ in range(epochs):
                perm = torch.randperm(N, generator=gen).to(self.device)
                for s in range(0, N, B):
                    hb = h[perm[s : s + B]]  # b x C x d_k
                    b = hb.shape[0]
                    idx = self._nearest(hb, mask=False)
                    flat = (idx + offs).reshape(-1)
                    ones = torch.ones_like(flat, dtype=torch.float32)
                    cnt = torch.zeros(C * K, device=self.device).index_add_(0, flat, ones)
                    sums = torch.zeros(C * K, dk, device=self.device).index_add_(0, flat, hb.reshape(-1, dk))
                    ema_count.mul_(self.decay).add_(cnt.view(C, K), alpha=1 - self.decay)
                    ema_sum.mul_(self.decay).add_(sums.view(C, K, dk), alpha=1 - self.decay)
                    # Laplace-smoothed cluster sizes keep the division finite
                    total = ema_count.sum(1, keepdim=True)
                    n = (ema_count + 1e-5) / (total + K * 1e-5) * total
                    keys = ema_sum / n[..., None]
                    step += 1
                    if step < steps:
                        # dead keys: move them onto random samples of this batch
                        dead = ema_count < threshold
                        if dead.any():
                            ci, ki = dead.nonzero(as_tuple=True)
                            rows = torch.randint(0, b, (ci.numel(),), generator=gen).to(self.device)
                            keys[ci, ki] = hb[rows, ci]
                            ema_count[ci, ki] = expected
                            ema_sum[ci, ki] = keys[ci, ki] * expected
                    self.keys = keys
                    bar.update(1)
        self.keys = keys.contiguous()
        self.values = torch.zeros(C, K, self.value_dim, device=self.device)
        self.counts = torch.zeros(C, K, dtype=torch.long, device=self.device)
        self.tasks_seen, self.classes_seen = 0, []
        self._update_freqs()
        return self

    # ------------------------------------------------------------------------------ codes
    @torch.no_grad()
    def indices(self, x: Any, *, mask: bool = True, batch_size: int = 2048) -> torch.Tensor:
        """Selected key per codebook, ``N x C`` int64 tensor. ``mask``: skip keys never used in training."""
        self._require_keys()
        t = self._check_input(as_batch(x))
        out = [
            self._nearest(self.split(self.features(t[s : s + batch_size])), mask)
            for s in range(0, t.shape[0], batch_size)
        ]
        return torch.cat(out)

    @torch.no_grad()
    def lookup(self, indices: Any) -> Lookup:
        """Values and logits for given key indices (``N x C``): the non-parametric decoder."""
        self._require_keys()
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        if idx.ndim != 2 or idx.shape[1] != self.num_codebooks or idx.dtype.is_floating_point:
            raise InputError(
                f"indices must be an integer array N x {self.num_codebooks}, got {tuple(idx.shape)} {idx.dtype}"
            )
        idx = idx.long().to(self.device)
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.num_keys):
            raise InputError(f"indices must lie in 0..{self.num_keys - 1}")
        vals = self.values[torch.arange(self.num_codebooks, device=self.device)[None, :], idx]  # N x C x A
        return Lookup(idx.cpu().numpy(), vals.cpu().numpy(), vals.mean(1).cpu().numpy())

    @torch.no_grad()
    def logits(self, x: Any, *, mask: bool = True) -> torch.Tensor:
        self._require_keys()
        idx = self.indices(x, mask=mask)
        C = self.num_codebooks
        flat = idx + (torch.arange(C, device=self.device) * self.num_keys)[None, :]
        return self.values.view(-1, self.value_dim)[flat].mean(1)

    def predict(self, x: Any, *, mask: bool = True) -> np.ndarray:
        """Class ids (int64 numpy array) for a batch."""
        return self.logits(x, mask=mask).argmax(1).cpu().numpy()

    def score(self, x: Any, y: Any) -> float:
        pred = self.predict(x)
        return float((pred == as_labels(y, len(pred), self.value_dim).numpy()).mean())

    # ---------------------------------------------------------------------------- values
    @torch.no_grad()
    def partial_fit(
        self,
        x: Any,
        y: Any,
        *,
        epochs: int = 500,
        batch_size: int = 256,
        lr: float = 0.3,
        label_smoothing: float = 0.1,
        clip_norm: float = 1.0,
        progress: bool = False,
    ) -> "KVBottleneck":
        """Learn one more task (any labels in ``0..value_dim-1``; no task id). Only values move.

        SGD on the values alone: cross-entropy with label smoothing on the mean of the selected
        values, plain SGD (no momentum, no weight decay: unselected values never move), gradient
        norm clipped to ``clip_norm``. The gradient is written by hand (it is a scatter of
        ``softmax - target``), which is exact and much faster than autograd here.
        """
        self._require_keys()
        if epochs < 0 or batch_size < 1 or lr <= 0 or not 0 <= label_smoothing < 1 or clip_norm <= 0:
            raise UsageError("need epochs >= 0, batch_size >= 1, lr > 0, 0 <= label_smoothing < 1, clip_norm > 0")
        t = self._check_input(as_batch(x))
        labels = as_labels(y, t.shape[0], self.value_dim).to(self.device)
        C, K, A = self.num_codebooks, self.num_keys, self.value_dim
        # keys and encoder are frozen: the indices of this task are computed once
        idx = self.indices(t, mask=False)
        flat = idx + (torch.arange(C, device=self.device) * K)[None, :]  # N x C into the C*K table
        self.counts += torch.bincount(flat.reshape(-1), minlength=C * K).view(C, K)
        N = flat.shape[0]
        target = torch.full((N, A), label_smoothing / A, device=self.device)
        target[torch.arange(N, device=self.device), labels] += 1.0 - label_smoothing
        V = self.values.view(C * K, A)
        # |grad| <= sqrt(2 / C) always (|softmax - target| <= sqrt 2 per sample, averaged over the
        # batch and the codebooks), so the clip can only act when that bound exceeds clip_norm
        may_clip = math.sqrt(2.0 / C) > clip_norm
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.tasks_seen + 1)
        B = min(batch_size, N)
        for _ in tqdm(range(epochs), desc="kvb values", disable=not progress):
            perm = torch.randperm(N, generator=gen).to(self.device)
            for s in range(0, N, B):
                bi = perm[s : s + B]
                fb = flat[bi]  # b x C
                b = fb.shape[0]
                logit = V[fb].mean(1)  # b x A
                g = (torch.softmax(logit, 1) - target[bi]) / (b * C)  # d loss / d value, per sample
                rows = fb.reshape(-1)
                contrib = g[:, None, :].expand(b, C, A).reshape(-1, A)
                scale = lr
                if may_clip:
                    uniq, inv = torch.unique(rows, return_inverse=True)
                    grad = torch.zeros(uniq.numel(), A, device=self.device).index_add_(0, inv, contrib)
                    norm = float(grad.norm())
                    if norm > clip_norm:
                        scale = lr * clip_norm / (norm + 1e-6)
                V.index_add_(0, rows, contrib, alpha=-scale)
        self.tasks_seen += 1
        self.classes_seen = sorted(set(self.classes_seen) | set(labels.unique().cpu().numpy().tolist()))
        self._update_freqs()
        return self

    # ---------------------------------------------------------------------- entropy model
    def _update_freqs(self) -> None:
        """Per-codebook index tables for the entropy coder, learned from the training codes.

        ``counts + 0.05`` keeps every key codable (the quantiser gives each at least 1/2**P), so
        unmasked codes stay encodable too; the tables are stored, never recomputed at decode.
        """
        from ...entropy import quantize_pmf

        counts = self.counts.double().cpu().numpy() + 0.05
        self.freqs = quantize_pmf(counts / counts.sum(1, keepdims=True), precision=self.precision)

    @property
    def precision(self) -> int:
        return max(16, min(24, int(math.ceil(math.log2(self.num_keys))) + 8))

    @property
    def fixed_bits(self) -> float:
        """Bits per sample of the fixed-length code: C * log2(K)."""
        return self.num_codebooks * math.log2(self.num_keys)

    def model_bits(self, indices: Any) -> float:
        """Ideal bits per sample of ``indices`` under the stored tables (cross-entropy)."""
        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
        logp = np.log2(self.freqs.astype(np.float64)) - self.precision
        return float(-logp[np.arange(self.num_codebooks)[None, :], idx].sum(1).mean())

    # --------------------------------------------------------------------------- save/load
    def config(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "num_codebooks": self.num_codebooks,
            "num_keys": self.num_keys,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "splitter": self.splitter,
            "decay": self.decay,
            "seed": self.seed,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "feature_dim": self.feature_dim,
            "precision": self.precision,
            "tasks_seen": self.tasks_seen,
            "classes_seen": self.classes_seen,
            "encoder": self.encoder_spec(),
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        self._require_keys()
        out = {
            "keys": self.keys.cpu().numpy().astype(np.float32),
            "values": self.values.cpu().numpy().astype(np.float32),
            "counts": self.counts.cpu().numpy().astype(np.int64),
            "freqs": np.asarray(self.freqs, dtype=np.int32),
        }
        if isinstance(self.encoder, enc_mod.BuiltinEncoder):
            out.update({f"encoder.{k}": np.asarray(v) for k, v in self.encoder.arrays().items()})
        return out

    def fingerprint(self) -> str:
        """SHA-256 (hex, 32 chars) of everything a decoder depends on: config, keys, values,
        usage counts, entropy tables and built-in encoder arrays. Streams carry it."""
        h = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode())
        for name, arr in sorted(self._arrays().items()):
            h.update(name.encode() + str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:32]

    def save(self, path: str | Path) -> Path:
        """Write the whole bottleneck (keys, values, counts, tables, projection seed, encoder spec)
        to one ``.npz`` file (no pickle)."""
        from ...io import atomic_path

        path = Path(path)
        arrays = self._arrays()
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, config=np.array(json.dumps(self.config())), **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)  # the atomic temp file is private; a model file is not
        return path

    @classmethod
    def load(cls, path: str | Path, *, encoder: Any = None, device: str | torch.device | None = None) -> "KVBottleneck":
        """Read a file written by :meth:`save`. Bottlenecks on a custom encoder need ``encoder=``."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no such bottleneck file: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            config = json.loads(str(data.pop("config")))
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise InputError(f"{path} is not a kvb bottleneck file ({exc})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise InputError(f"{path} is not a kvb bottleneck file")
        if config.get("format_version", 0) > FORMAT_VERSION:
            raise InputError(f"{path} was written by a newer neurocodec (kvb format {config['format_version']})")
        enc_arrays = {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("encoder.")}
        spec = config["encoder"]
        if encoder is None:
            if spec.get("type") == "custom":
                raise UsageError(f"{path} was built on a custom encoder ({spec.get('name')}): pass it as encoder=")
            encoder = enc_mod.from_spec(spec, enc_arrays)
        obj = cls(
            encoder,
            num_codebooks=config["num_codebooks"],
            num_keys=config["num_keys"],
            key_dim=config["key_dim"],
            value_dim=config["value_dim"],
            splitter=config["splitter"],
            decay=config["decay"],
            seed=config["seed"],
            device=device,
        )
        C, K, A, dk = obj.num_codebooks, obj.num_keys, obj.value_dim, obj.key_dim
        try:
            keys, values, counts, freqs = data["keys"], data["values"], data["counts"], data["freqs"]
        except KeyError as exc:
            raise InputError(f"{path} lacks the array {exc}") from None
        expect = {"keys": (C, K, dk), "values": (C, K, A), "counts": (C, K), "freqs": (C, K)}
        for name, arr in (("keys", keys), ("values", values), ("counts", counts), ("freqs", freqs)):
            if arr.shape != expect[name]:
                raise InputError(f"{path}: array '{name}' has shape {arr.shape}, expected {expect[name]}")
        obj.input_shape = tuple(config["input_shape"]) if config["input_shape"] is not None else None
        obj.feature_dim = config["feature_dim"]
        obj._make_projection(obj.feature_dim)
        obj.keys = torch.from_numpy(keys.astype(np.float32)).to(obj.device)
        obj.values = torch.from_numpy(values.astype(np.float32)).to(obj.device)
        obj.counts = torch.from_numpy(counts.astype(np.int64)).to(obj.device)
        obj.freqs = freqs.astype(np.int32)
        obj.tasks_seen, obj.classes_seen = int(config["tasks_seen"]), list(config["classes_seen"])
        return obj

    def __repr__(self) -> str:
        return (
            f"KVBottleneck(encoder={self.encoder_spec().get('type')}, C={self.num_codebooks}, K={self.num_keys}, "
            f"d_k={self.key_dim}, value_dim={self.value_dim}, splitter={self.splitter!r}, tasks_seen={self.tasks_seen})"
        )
