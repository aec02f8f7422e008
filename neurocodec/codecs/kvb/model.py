"""The discrete key-value bottleneck (Trauble et al., ICML 2023): what it computes, how it is
stored and how it is identified.

Pipeline for a batch ``x``::

    z = encoder(x)                       # frozen, N x D
    h[:, c] = z @ P[c]                   # C fixed random projections D -> d_k ("random"),
                                         # or C contiguous chunks of z ("chunk" = product quantization)
    i[:, c] = argmin_k |h[:, c] - keys[c, k]|    # frozen keys (EMA k-means on unlabelled data)
    logits = mean_c values[c, i[:, c]]   # values: the only trained tensor, zeros at start

Why it does not forget: a sample only touches the C values its keys select, and with SGD without
momentum or weight decay every other value stays exactly where it was (``train.py``).

Training (:meth:`KVBottleneck.init_keys`, :meth:`KVBottleneck.partial_fit`) lives in ``train.py``;
the methods here import it only when called, so decoding never loads training code.

Model file (``model:kvb``, format version 1, through :mod:`neurocodec.weights`): the config holds
the hyper-parameters, ``input_shape``, ``feature_dim``, ``precision``, ``tasks_seen``,
``classes_seen`` and the encoder spec; the arrays are ``keys`` (C x K x d_k float32), ``values``
(C x K x value_dim float32), ``counts`` (C x K int64, how often training selected each key),
``freqs`` (C x K int32, the entropy coder's tables) and ``encoder/<name>`` (a built-in encoder's
arrays). The random projection is not stored: it is regenerated from ``seed`` (numpy PCG64 is
stable across versions). Files are written uncompressed: lzma would save 30 % but cost ~0.5 s per
digest of an in-memory model, and that digest must be the one of the file :meth:`save` writes.

Sharing: :meth:`KVBottleneck.load` and :meth:`KVBottleneck.shipped` return a fresh object, yours to
train. The codec uses :func:`shared`, one cached read-only object per (file digest, device) built by
:func:`neurocodec.weights.build`; training it is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ... import weights
from ...errors import BadMagicError, InputError, UsageError
from ...runtime import resolve_device
from . import encoders as enc_mod
from .inputs import as_batch, as_labels
from .search import nearest_keys, unused_key_mask
from .shipped import MODELS, load_shipped

KIND = "kvb"  # model-file kind: the container's codec field is "model:kvb"
FORMAT_VERSION = 1  # bumped whenever the meaning of the config or the arrays changes
VERSIONS = (1, FORMAT_VERSION)  # model-format versions this code reads
COMPRESSION = "none"
_SPLITTERS = ("random", "chunk")
_ENCODER_PREFIX = "encoder/"


class Lookup(NamedTuple):
    """What the decoder reconstructs from the indices."""

    indices: np.ndarray  # N x C int64
    values: np.ndarray  # N x C x value_dim float32: the value each codebook selected
    logits: np.ndarray  # N x value_dim float32: their mean


class KVBottleneck:
    """Discrete key-value bottleneck on a frozen encoder.

    ``encoder``: a built-in name (``"pca"``, ``"random_relu"``, ``"conv_ae"``, ``"identity"``), a
    built-in encoder object, any torch module or a callable ``x -> N x D``. Torch modules are put
    in eval mode and never updated. ``device``: ``"auto"`` (default), ``"cpu"``, ``"cuda[:N]"``
    or a torch device (:func:`neurocodec.runtime.resolve_device`).
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
        if key_dim is not None and (not isinstance(key_dim, (int, np.integer)) or isinstance(key_dim, bool)
                                    or key_dim < 1):
            raise UsageError(f"key_dim must be a positive integer, got {key_dim!r}")
        if not isinstance(decay, (int, float)) or not 0.0 < decay < 1.0:
            raise UsageError(f"decay must lie in (0, 1), got {decay}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise UsageError(f"seed must be an integer, got {seed!r}")
        self.num_codebooks, self.num_keys, self.value_dim = int(num_codebooks), int(num_keys), int(value_dim)
        self.key_dim = int(key_dim) if key_dim is not None else (8 if splitter == "random" else None)
        self.splitter, self.decay, self.seed = splitter, float(decay), int(seed)
        self.device = resolve_device(device)
        self.encoder = self._resolve_encoder(encoder)
        self.input_shape: tuple[int, ...] | None = None
        self.feature_dim: int | None = None
        self.proj: torch.Tensor | None = None  # C x D x d_k
        self.keys: torch.Tensor | None = None  # C x K x d_k, frozen after init_keys
        self.values: torch.Tensor | None = None  # C x K x value_dim
        self.counts: torch.Tensor | None = None  # C x K: how often training selected each key
        self.freqs: np.ndarray | None = None  # C x K int32, read-only: entropy-coding tables from counts
        self.tasks_seen = 0
        self.classes_seen: list[int] = []
        self._shared = False  # True for the codec's cached copy: training it is refused
        self._digest_cache: tuple[tuple, str] | None = None  # (stamp, digest), see `digest`

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
        # (a local numpy PCG64 generator: stable across versions, so a file only stores the seed)
        p = np.random.default_rng(self.seed).standard_normal((C, dim, self.key_dim))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
        self.proj = torch.from_numpy(p.astype(np.float32)).to(self.device)

    def split(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``N x D`` -> per-codebook queries ``N x C x d_k``."""
        if self.splitter == "chunk":
            return z.reshape(z.shape[0], self.num_codebooks, self.key_dim)
        return torch.einsum("nd,cdk->nck", z, self.proj)

    def _nearest(self, h: torch.Tensor, mask: bool) -> torch.Tensor:
        """Index of the nearest key per codebook, ``N x C`` int64 (keys unused in training skipped if asked)."""
        return nearest_keys(h, self.keys, unused_key_mask(self.counts) if mask else None)

    # ------------------------------------------------------------------------------- keys
    @property
    def initialised(self) -> bool:
        return self.keys is not None

    def _require_keys(self) -> None:
        if self.keys is None:
            raise UsageError("the keys are not initialised: call init_keys(unlabelled_data) first")

    def _check_trainable(self) -> None:
        if self._shared:
            raise UsageError("this bottleneck is the codec's shared read-only copy of a model file: "
                             "train your own copy, from KVBottleneck.load(path) or KVBottleneck.shipped(name)")

    # ---------------------------------------------------------------- training (train.py)
    def init_keys(
        self, unlabelled: Any, *, epochs: int = 10, batch_size: int = 256, progress: bool = False
    ) -> "KVBottleneck":
        """Fit the keys by EMA k-means on unlabelled data, replacing dead keys; then freeze them.

        Resets the values (to zero) and the usage counts. Built-in encoders that need fitting
        (PCA) are fitted here, on the same unlabelled data, and frozen too. See :func:`.train.init_keys`.
        """
        from .train import init_keys

        return init_keys(self, unlabelled, epochs=epochs, batch_size=batch_size, progress=progress)

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
        See :func:`.train.partial_fit`."""
        from .train import partial_fit

        return partial_fit(self, x, y, epochs=epochs, batch_size=batch_size, lr=lr,
                           label_smoothing=label_smoothing, clip_norm=clip_norm, progress=progress)

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
        vals = self.values[torch.arange(self.num_codebooks, device=self.device)[None, :], idx]  # N x C x A (a copy)
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

    # ---------------------------------------------------------------------- entropy model
    def _refresh_tables(self) -> None:
        """Per-codebook index tables for the entropy coder, learned from the training codes.

        ``counts + 0.05`` keeps every key codable (the quantiser gives each at least 1/2**P), so
        unmasked codes stay encodable too; the tables are stored, never recomputed at decode.
        """
        from ...entropy import quantize_pmf

        counts = self.counts.double().cpu().numpy() + 0.05
        freqs = quantize_pmf(counts / counts.sum(1, keepdims=True), precision=self.precision)
        freqs.setflags(write=False)  # a table edited in place would not match the digest
        self.freqs = freqs

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

    # ---------------------------------------------------------------------------- identity
    @property
    def digest(self) -> str:
        """SHA-256 hex of the model file :meth:`save` writes for this bottleneck; for one read from a
        file and not trained since, the digest of that file. Streams record :attr:`short_digest`.

        Why computed lazily and invalidated, not computed once: a bottleneck is trained in steps
        (``init_keys``, then one ``partial_fit`` per task) and may code a stream between any two,
        so there is no moment after which it is immutable. Serialising and hashing costs a few ms
        per MB, too much to repeat for every small encode, so the digest is cached with a stamp of
        what it covers: the config, the identity of ``keys``/``values``/``counts``/``freqs``, and
        the in-place version counters torch keeps on tensors (``Tensor._version``). Training drops
        the cache explicitly; a rebound array, a hand edit of a tensor or a changed config makes the
        stamp differ, so the next call hashes again. ``freqs`` is read-only. The encoder and the
        projection are frozen once the keys exist; editing their tensors by hand is not detected.
        """
        self._require_keys()
        stamp = self._stamp()
        cached = self._digest_cache
        if cached is not None and _same_stamp(cached[0], stamp):
            return cached[1]
        digest = hashlib.sha256(self.to_bytes()).hexdigest()
        self._digest_cache = (stamp, digest)
        return digest

    @property
    def short_digest(self) -> str:
        """The first 16 hex digits of :attr:`digest`: what a ``kvb`` stream records."""
        return self.digest[:16]

    def _stamp(self) -> tuple:
        refs = (self.keys, self.values, self.counts, self.freqs)
        return json.dumps(self.config(), sort_keys=True), refs, tuple(_version(t) for t in refs[:3])

    def _invalidate(self) -> None:
        """Called by training before it changes anything."""
        self._digest_cache = None

    # --------------------------------------------------------------------------- save/load
    def config(self) -> dict[str, Any]:
        """The model file's JSON config (everything but the arrays)."""
        return {
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
            "classes_seen": list(self.classes_seen),
            "encoder": self.encoder_spec(),
        }

    def model_arrays(self) -> dict[str, np.ndarray]:
        """The model file's arrays, by name."""
        self._require_keys()
        out = {
            "keys": self.keys.cpu().numpy().astype(np.float32),
            "values": self.values.cpu().numpy().astype(np.float32),
            "counts": self.counts.cpu().numpy().astype(np.int64),
            "freqs": np.asarray(self.freqs, dtype=np.int32),
        }
        if isinstance(self.encoder, enc_mod.BuiltinEncoder):
            out.update({_ENCODER_PREFIX + k: np.asarray(v) for k, v in self.encoder.arrays().items()})
        return out

    def to_bytes(self) -> bytes:
        """The model file's bytes (a pure function of the model: saving twice gives the same digest)."""
        return weights.to_bytes(KIND, FORMAT_VERSION, self.config(), self.model_arrays(), compression=COMPRESSION)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the whole bottleneck (keys, values, counts, tables, projection seed, encoder spec
        and arrays) to one ``.ncx`` model file, atomically. Returns the path."""
        self._require_keys()
        stamp = self._stamp()
        digest = weights.save(path, KIND, FORMAT_VERSION, self.config(), self.model_arrays(), compression=COMPRESSION)
        self._digest_cache = (stamp, digest)  # the bytes just written are what `digest` hashes
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, encoder: Any = None,
             device: str | torch.device | None = None) -> "KVBottleneck":
        """A fresh bottleneck (yours to train) from a file written by :meth:`save`.

        Bottlenecks on a custom encoder need it back as ``encoder=``; the built-in encoders are
        stored in the file. Pickles, other kinds of file and damaged files are an InputError."""
        return cls.from_model_file(read_model_file(path), encoder=encoder, device=device)

    @classmethod
    def shipped(cls, name: str, *, device: str | torch.device | None = None) -> "KVBottleneck":
        """A fresh copy of a built-in bottleneck (``"digits"``, ``"mnist"``), refused unless its file
        has the digest recorded in :data:`.shipped.SHIPPED`."""
        if name not in MODELS:
            raise UsageError(f"no built-in kvb model '{name}' (built-ins: {', '.join(MODELS)})")
        return cls.from_model_file(load_shipped(name, KIND, VERSIONS), device=device)

    @classmethod
    def from_model_file(cls, mf: weights.ModelFile, *, encoder: Any = None,
                        device: str | torch.device | None = None) -> "KVBottleneck":
        """A fresh bottleneck from a parsed ``model:kvb`` file (its arrays are copied)."""
        what = f"kvb model file {mf.short_digest}"
        if mf.kind != KIND:
            raise InputError(f"{what} holds a '{mf.kind}' model, not a '{KIND}' model")
        cfg = mf.config
        device = resolve_device(device)  # a usage question (no CUDA here), not a bad file
        spec = cfg.get("encoder")
        if not isinstance(spec, Mapping):
            raise InputError(f"{what} has no encoder spec")
        if spec.get("type") == "custom":
            if encoder is None:
                raise UsageError(f"{what} was built on a custom encoder ({spec.get('name')}): load it with "
                                 "KVBottleneck.load(path, encoder=...) and pass that object")
        elif encoder is not None:
            raise UsageError(f"{what} stores its own {spec.get('type')} encoder: do not pass encoder=")
        try:
            if encoder is None:
                enc_arrays = {k[len(_ENCODER_PREFIX):]: v for k, v in mf.arrays.items()
                              if k.startswith(_ENCODER_PREFIX)}
                encoder = enc_mod.from_spec(spec, enc_arrays)
            obj = cls(encoder, num_codebooks=cfg["num_codebooks"], num_keys=cfg["num_keys"],
                      key_dim=cfg["key_dim"], value_dim=cfg["value_dim"], splitter=cfg["splitter"],
                      decay=cfg["decay"], seed=cfg["seed"], device=device)
            input_shape = cfg["input_shape"]
            obj.input_shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
            obj.feature_dim = int(cfg["feature_dim"])
            obj.tasks_seen = int(cfg["tasks_seen"])
            obj.classes_seen = [int(c) for c in cfg["classes_seen"]]
            precision = int(cfg["precision"])
        except UsageError as exc:  # a value the constructor refuses: the file is bad, not the call
            raise InputError(f"{what} has a bad config: {exc}") from None
        except InputError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{what} has a missing or malformed config entry ({exc})") from None
        try:
            obj._make_projection(obj.feature_dim)
        except UsageError as exc:
            raise InputError(f"{what}: {exc}") from None
        C, K, A, dk = obj.num_codebooks, obj.num_keys, obj.value_dim, obj.key_dim
        expect = {"keys": ((C, K, dk), "f"), "values": ((C, K, A), "f"), "counts": ((C, K), "iu"),
                  "freqs": ((C, K), "iu")}
        arrays = {}
        for name, (shape, kinds) in expect.items():
            arr = mf.array(name)
            if arr.shape != shape or arr.dtype.kind not in kinds:
                raise InputError(f"{what}: array '{name}' is {arr.dtype} {arr.shape}, expected {shape}")
            arrays[name] = arr
        if not (np.isfinite(arrays["keys"]).all() and np.isfinite(arrays["values"]).all()):
            raise InputError(f"{what}: keys or values hold NaN or infinite numbers")
        if (arrays["counts"] < 0).any():
            raise InputError(f"{what}: negative usage counts")
        freqs = np.array(arrays["freqs"], dtype=np.int32)  # a private copy
        if precision != obj.precision or (freqs < 1).any() or (freqs.sum(1, dtype=np.int64) != 1 << precision).any():
            raise InputError(f"{what}: its entropy-coding tables are not valid "
                             f"(each row must hold positive counts summing to 2**{obj.precision})")
        freqs.setflags(write=False)
        obj.keys = torch.from_numpy(np.array(arrays["keys"], dtype=np.float32)).to(obj.device)
        obj.values = torch.from_numpy(np.array(arrays["values"], dtype=np.float32)).to(obj.device)
        obj.counts = torch.from_numpy(np.array(arrays["counts"], dtype=np.int64)).to(obj.device)
        obj.freqs = freqs
        # the file's digest, whatever wrote it: what a stream made with this file records
        obj._digest_cache = (obj._stamp(), mf.digest)
        return obj

    def __repr__(self) -> str:
        return (
            f"KVBottleneck(encoder={self.encoder_spec().get('type')}, C={self.num_codebooks}, K={self.num_keys}, "
            f"d_k={self.key_dim}, value_dim={self.value_dim}, splitter={self.splitter!r}, tasks_seen={self.tasks_seen})"
        )


def _version(t: torch.Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # an inference-mode tensor keeps no counter (and cannot be edited outside it)
        return -1


def _same_stamp(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and all(x is y for x, y in zip(a[1], b[1])) and a[2] == b[2]


# ------------------------------------------------------------------------------ shared copies
def read_model_file(path: str | os.PathLike) -> weights.ModelFile:
    """A ``model:kvb`` file (cached by :func:`neurocodec.weights.load`); an InputError otherwise."""
    try:
        return weights.load(path, kind=KIND, versions=VERSIONS)
    except BadMagicError as exc:
        if Path(path).suffix.lower() == ".npz":  # the format before model files
            raise BadMagicError(f"{exc}: kvb .npz files are no longer read, model files are .ncx now") from None
        raise


def _build_shared(mf: weights.ModelFile, device: str) -> KVBottleneck:
    obj = KVBottleneck.from_model_file(mf, device=device)
    obj._shared = True
    return obj


def shared(mf: weights.ModelFile, device: str | torch.device | None = "auto") -> KVBottleneck:
    """The cached, read-only bottleneck of a model file on ``device`` (one per digest and device).

    Why cached: building copies and checks ~1 MB of arrays, far more than coding a few samples.
    Why read-only: every caller in the process gets the same object; training it is refused
    (use :meth:`KVBottleneck.load` for a copy of your own)."""
    return weights.build(mf, _build_shared, str(resolve_device(device)))
