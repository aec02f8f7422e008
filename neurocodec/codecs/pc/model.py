"""The pc model: HCLT circuits with quantised parameters, stored as a ``pc`` model file.

Parameters are quantised log-probabilities (uint8, 1/8-bit steps, 0..31.875 bits). Why: the coder
must see the same floats on every machine, so it only ever uses the *dequantised* values, computed
by one sequential Numba loop; and uint8 codes compress well (a 784-pixel M=16 model is 0.3 MB).

File: a model file of :mod:`neurocodec.weights`, kind ``"pc"``, model-format version 1:

* config ``{"name": str, "info": {...training record...}, "circuits": {"<C>": {"patch": [ph, pw, C],
  "states": M}}}``, one circuit per channel count C;
* arrays (lzma-compressed) per circuit: ``c<C>_parent`` (<i4, D), ``c<C>_prior`` (u1, M),
  ``c<C>_trans`` (u1, D x M x M) and either ``c<C>_leaf`` (u1, D x M x 256) or mixture weights
  ``c<C>_bw`` (u1, D x M x L) over shared value distributions ``c<C>_basis`` (u1, L x 256).

Identity: the SHA-256 of the file's bytes (:attr:`PCModel.digest`); a bitstream records
:attr:`PCModel.short_digest` and the decoder refuses another model. The shipped models' digests are
pinned in :data:`SHIPPED`, so an edited or swapped ``weights/*.ncx`` is refused.

Loading goes through :func:`neurocodec.weights.load` (cached by path, size, mtime) and
:func:`neurocodec.weights.build` (dequantising and mixing the leaves takes ~0.5 s for ``mnist``,
far more than coding a digit, so the built model is cached by digest). The returned
:class:`PCModel` is shared: it is frozen and its arrays are read-only.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ... import weights
from ...runtime import lazy_import
from ...errors import BadMagicError, CorruptStreamError, InputError, UsageError
from .structure import Tree, compile_tree

KIND = "pc"
FORMAT_VERSION = 1  # bump when the config or array layout above changes
FORMAT_VERSIONS = (1, 1)  # model-format versions this code reads
Q_STEP = 8.0  # quantisation steps per bit of -log2 p
Q_MAX = 255
ALPHABET = 256

# SHA-256 of the shipped model files: a file that hashes differently is refused, not used.
# Retraining (train_default.py) prints the new digest; record it here with the new file.
SHIPPED: Mapping[str, str] = MappingProxyType({
    "mnist": "b0f21f789ce5695c8b9ae6e708d2810f0faf174a4ecc2a68f396db95d061202a",  # the third: 12 epochs, basis 64; the first two are in RETIRED
    "natural": "37fa2f2778df8b042f8c768f013c7f49770090ea7e8c5ff1de02fd446de4f69c",
    # the photo model (a ``pc-photo`` model file, :mod:`.photo`; trained by train_photo.py)
    "photo": "90034c8ca8ca591ac8633666175ed565c370ad75fae8db080b8a51d47c603a58",
})
#: shipped files since replaced, kept so that every file coded with them still decodes (a file
#: records its model's name and ``model_hash``): (name, model_hash) -> (file under weights/, SHA-256)
RETIRED: Mapping[tuple[str, str], tuple[str, str]] = MappingProxyType({
    ("mnist", "b82e576ea7bbd9ae"): ("mnist-1.ncx", "b82e576ea7bbd9ae2a6d2ec6ff0c17dc2d089d7c0e71bb3d03ab9abce6902630"),
    ("mnist", "bcaca5ff03b0423c"): ("mnist-2.ncx", "bcaca5ff03b0423cae5e48587510c698947c09b78559320aa66e69c11e295ac2"),
})
PHOTO_MODELS = frozenset({"photo"})  # shipped names whose file is a pc-photo model
BUILTIN_MODELS = tuple(SHIPPED)
_WEIGHTS = Path(__file__).resolve().parent / "weights"
#: the Numba twins of native's dequantize and mix_leaves: loaded only when the compiled kernels are not used
_kernels = lazy_import("neurocodec.codecs.pc.kernels")


# ------------------------------------------------------------------------------ quantisation
def quantize_probs(p: np.ndarray) -> np.ndarray:
    """Float probabilities -> uint8 codes of -log2 p in 1/8-bit steps (clipped at 2^-31.875)."""
    with np.errstate(divide="ignore"):
        q = np.rint(-np.log2(np.maximum(np.asarray(p, np.float64), 1e-300)) * Q_STEP)
    return np.clip(q, 0, Q_MAX).astype(np.uint8)


def dequantize(q: np.ndarray) -> np.ndarray:
    """uint8 codes -> float64 probabilities (rows of the last axis renormalised)."""
    from . import native

    if native.current() == "native":  # the compiled twin: same bits, no JIT compile on a first call
        return native.dequantize(q)
    flat = np.ascontiguousarray(q.reshape(-1, q.shape[-1]))
    out = np.empty(flat.shape, dtype=np.float64)
    _kernels.dequantize_rows(flat, out)
    return out.reshape(q.shape)


def _frozen(a: np.ndarray | None, dtype: Any = None) -> np.ndarray | None:
    """A read-only array with these values: already read-only arrays (a model file's) are kept,
    writable ones are copied first, so freezing never changes an array the caller still holds."""
    if a is None:
        return None
    arr = np.asarray(a, dtype=dtype)
    if arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C")
    arr.flags.writeable = False
    return arr


# ------------------------------------------------------------------------------------ circuit
@dataclass(frozen=True, eq=False)
class HCLT:
    """One circuit over ``D = ph * pw * channels`` variables (a patch, variables in raster then
    channel order). ``q_*`` are the stored codes; ``prior/trans/leaf`` their float64 values.
    Frozen, arrays read-only: a loaded circuit is shared by every coder in the process."""

    tree: Tree
    q_prior: np.ndarray  # (M,)
    q_trans: np.ndarray  # (D, M, M)
    q_leaf: np.ndarray | None  # (D, M, 256), or None when the leaves mix shared bases
    patch: tuple[int, int, int]
    q_bw: np.ndarray | None = None  # (D, M, L) mixture weights over ...
    q_basis: np.ndarray | None = None  # (L, 256) value distributions shared by every pixel
    prior: np.ndarray = field(init=False, repr=False)
    trans: np.ndarray = field(init=False, repr=False)
    leaf: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)  # frozen: set once, here
        for name in ("q_prior", "q_trans", "q_leaf", "q_bw", "q_basis"):
            a = getattr(self, name)
            if a is not None and np.asarray(a).dtype != np.uint8:
                raise CorruptStreamError(f"pc model: {name} must hold uint8 codes, got {np.asarray(a).dtype}")
            put(name, _frozen(a, np.uint8))
        put("patch", tuple(int(v) for v in self.patch))
        d = self.tree.size
        if self.q_prior.ndim != 1 or self.q_prior.shape[0] < 1:
            raise CorruptStreamError("pc model: the prior must be a non-empty vector")
        m = self.q_prior.shape[0]
        if self.q_leaf is None:
            if self.q_bw is None or self.q_basis is None or self.q_bw.ndim != 3 or self.q_bw.shape[:2] != (d, m) \
                    or self.q_basis.shape != (self.q_bw.shape[2], ALPHABET):
                raise CorruptStreamError("pc model: leaf basis shapes do not match the tree")
        elif self.q_leaf.shape != (d, m, ALPHABET):
            raise CorruptStreamError("pc model: leaf shapes do not match the tree")
        if self.q_trans.shape != (d, m, m):
            raise CorruptStreamError("pc model: parameter shapes do not match the tree")
        if len(self.patch) != 3 or min(self.patch) < 1 or int(np.prod(self.patch)) != d:
            raise CorruptStreamError("pc model: patch shape does not match the number of variables")
        put("prior", _frozen(dequantize(self.q_prior[None])[0]))
        put("trans", _frozen(dequantize(self.q_trans)))
        if self.q_leaf is not None:
            put("leaf", _frozen(dequantize(self.q_leaf)))
        else:
            from . import native

            if native.current() == "native":
                leaf = native.mix_leaves(dequantize(self.q_bw), dequantize(self.q_basis))
            else:
                leaf = np.empty((d, m, ALPHABET))
                _kernels.mix_leaves(dequantize(self.q_bw), dequantize(self.q_basis), leaf)
            put("leaf", _frozen(leaf))

    @classmethod
    def from_probs(cls, tree: Tree, prior: np.ndarray, trans: np.ndarray, leaf: np.ndarray | None,
                   patch: tuple[int, int, int], bw: np.ndarray | None = None,
                   basis: np.ndarray | None = None) -> "HCLT":
        """Quantise float parameters: full ``leaf`` tables, or mixture weights ``bw`` over ``basis``."""
        if leaf is None:
            return cls(tree, quantize_probs(prior), quantize_probs(trans), None, tuple(patch),
                       quantize_probs(bw), quantize_probs(basis))
        return cls(tree, quantize_probs(prior), quantize_probs(trans), quantize_probs(leaf), tuple(patch))

    @property
    def num_vars(self) -> int:
        return self.tree.size

    @property
    def num_states(self) -> int:
        return int(self.q_prior.shape[0])

    @property
    def channels(self) -> int:
        return int(self.patch[2])

    def num_params(self) -> int:
        leaves = self.q_leaf.size if self.q_leaf is not None else self.q_bw.size + self.q_basis.size
        return int(self.q_prior.size + self.q_trans.size + leaves)

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """ln p(x) per row of ``x`` (P, D) ints (-1 = marginalised)."""
        from .kernels import log_likelihood

        x = np.ascontiguousarray(x, dtype=np.int16)
        out = np.empty(x.shape[0])
        t = self.tree
        log_likelihood(x, self.prior, self.trans, self.leaf, t.child_ptr, t.child_idx, t.post, t.root, out)
        return out

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The stored arrays of this circuit, named ``<prefix><what>`` (see the module docstring)."""
        out = {f"{prefix}parent": self.tree.parent.astype("<i4"), f"{prefix}prior": self.q_prior,
               f"{prefix}trans": self.q_trans}
        if self.q_leaf is not None:
            out[f"{prefix}leaf"] = self.q_leaf
        else:
            out[f"{prefix}bw"] = self.q_bw
            out[f"{prefix}basis"] = self.q_basis
        return out


# -------------------------------------------------------------------------------------- model
def _json_safe(value: Any) -> Any:
    """Non-finite floats -> None (a model file's JSON config holds no NaN), numpy scalars -> Python."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


@dataclass(frozen=True, eq=False)
class PCModel:
    """What a ``pc`` model file holds: one circuit per channel count (1 and/or 3), a name, and the
    training record ``info``. Frozen (``circuits`` and ``info`` are read-only mappings); to change a
    model, build a new one."""

    circuits: Mapping[int, HCLT]
    name: str = "custom"
    info: Mapping[str, Any] = field(default_factory=dict)
    #: digest of the file this model was read from (None: built in memory, hashed on demand)
    source_digest: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        circuits = {}
        for c, circ in sorted(dict(self.circuits).items()):
            if not isinstance(circ, HCLT) or int(c) != circ.channels:
                raise UsageError(f"pc model: circuit key {c} must be an HCLT over {c}-channel patches")
            circuits[int(c)] = circ
        if not circuits:
            raise UsageError("pc model: no circuits")
        object.__setattr__(self, "circuits", MappingProxyType(circuits))
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "info", weights.freeze(_json_safe(self.info)))

    # ---- identity
    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 hex of the model file's bytes (computed from :meth:`to_bytes` for a model built in
        memory: saving is deterministic, so it is the digest its file will have)."""
        return self.source_digest or hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def short_digest(self) -> str:
        """The 16 hex digits a bitstream records (``model_hash``)."""
        return self.digest[:16]

    # ---- file
    def config(self) -> dict[str, Any]:
        """The model file's JSON config (a fresh, mutable dict)."""
        return {"name": self.name, "info": weights.thaw(self.info),
                "circuits": {str(c): {"patch": list(circ.patch), "states": circ.num_states}
                             for c, circ in self.circuits.items()}}

    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for c, circ in self.circuits.items():
            out.update(circ.arrays(f"c{c}_"))
        return out

    def to_bytes(self) -> bytes:
        """The model file's bytes (lzma-compressed arrays: the shipped files stay small)."""
        return weights.to_bytes(KIND, FORMAT_VERSION, self.config(), self.arrays(), compression="lzma")

    def save(self, path: str | Path) -> str:
        """Write the model file atomically; returns its digest (SHA-256 hex)."""
        return weights.save(path, KIND, FORMAT_VERSION, self.config(), self.arrays(), compression="lzma")

    @classmethod
    def from_model_file(cls, mf: weights.ModelFile) -> "PCModel":
        """Build the circuits of a parsed model file (prefer :func:`load_file`: it caches)."""
        return _build(mf, "cpu")

    @classmethod
    def load(cls, path: str | Path, *, expect_digest: str | None = None) -> "PCModel":
        """Read a ``pc`` model file (the same as :func:`load_file`)."""
        return load_file(path, expect_digest=expect_digest)


def _build(mf: weights.ModelFile, device: str) -> PCModel:
    """:func:`weights.build` factory: config + arrays -> PCModel. ``device`` is always "cpu" (the
    coder runs on the CPU kernels), it is only part of the cache key."""
    cfg = mf.config
    try:
        circuits = {}
        for c, spec in cfg["circuits"].items():
            p = f"c{int(c)}_"
            tree = compile_tree(mf.array(p + "parent"))
            circuits[int(c)] = HCLT(tree, mf.array(p + "prior"), mf.array(p + "trans"), mf.arrays.get(p + "leaf"),
                                    tuple(int(v) for v in spec["patch"]), mf.arrays.get(p + "bw"),
                                    mf.arrays.get(p + "basis"))
            if circuits[int(c)].num_states != int(spec["states"]):
                raise CorruptStreamError(f"circuit {c} has {circuits[int(c)].num_states} states, its config says "
                                         f"{spec['states']}")
        return PCModel(circuits, str(cfg.get("name", "custom")), cfg.get("info", {}), source_digest=mf.digest)
    except (UsageError, CorruptStreamError) as exc:
        raise CorruptStreamError(f"pc model file {mf.short_digest} is damaged: {exc}") from None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptStreamError(f"pc model file {mf.short_digest} has a malformed config ({exc!r})") from None


# ------------------------------------------------------------------------------------ loading
def builtin_path(name: str) -> Path:
    """Where the shipped model ``name`` lives (``weights/<name>.ncx`` beside this module)."""
    return _WEIGHTS / f"{name}.ncx"


def load_file(path: str | Path, *, expect_digest: str | None = None) -> PCModel:
    """A ``pc`` model file -> the shared, read-only :class:`PCModel` (cached by digest)."""
    try:
        mf = weights.load(path, kind=KIND, versions=FORMAT_VERSIONS, expect_digest=expect_digest)
    except BadMagicError:
        if _starts_with(path, b"NCPC"):
            raise InputError(f"'{path}' is an old .ncpc pc model, which this version no longer reads: convert it "
                             f"with `neurocodec pc convert {path} -o NEW.ncx`") from None
        raise
    return weights.build(mf, _build, "cpu")


def _starts_with(path: str | Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(magic)) == magic
    except OSError:
        return False


def load_shipped(name: str, model_hash: str) -> "PCModel | PhotoModel":
    """The shipped model ``name`` whose ``model_hash`` a file records: the current file, or a
    retired one (:data:`RETIRED`) when the file was coded before ``name`` was retrained. A hash
    that matches neither is the caller's to report (it compares the hashes)."""
    key = (name, model_hash)
    current = load_model(name)
    if key in RETIRED and current.short_digest != model_hash:
        file, digest = RETIRED[key]
        path = _WEIGHTS / file
        if not path.is_file():
            raise UsageError(f"the retired pc model '{name}' ({model_hash}) is missing from this installation ({path})")
        return load_file(path, expect_digest=digest)
    return current


def load_model(model: "str | Path | PCModel | PhotoModel") -> "PCModel | PhotoModel":
    """``"mnist"``, ``"natural"``, ``"photo"`` (shipped, digest-checked), a path to a ``pc`` or
    ``pc-photo`` model file, or a :class:`PCModel` / :class:`~.photo.PhotoModel` (returned as it is)."""
    from . import photo

    if isinstance(model, (PCModel, photo.PhotoModel)):
        return model
    if isinstance(model, str) and model in SHIPPED:
        path = builtin_path(model)
        if not path.is_file():
            raise UsageError(f"the shipped pc model '{model}' is missing from this installation ({path})")
        reader = photo.load_file if model in PHOTO_MODELS else load_file
        out = reader(path, expect_digest=SHIPPED[model])
        if out.name != model:
            raise UsageError(f"the shipped pc model file {path} names itself '{out.name}', not '{model}'")
        return out
    if isinstance(model, (str, Path)):
        if photo.is_photo_file(model):
            return photo.load_file(model)
        return load_file(model)
    raise UsageError(f"model must be {', '.join(map(repr, SHIPPED))} or a path to a pc model file (.ncx), "
                     f"got {type(model).__name__}")
