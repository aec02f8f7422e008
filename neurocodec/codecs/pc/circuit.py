"""The HCLT model: a compiled tree plus its parameters, and the ``.ncpc`` file that stores it.

Parameters are stored as quantised log-probabilities (uint8, 1/8 bit steps, 0..31.875 bits) and
lzma-compressed: a 784-pixel M=32 model is a few MB. The coder only ever uses the *dequantised*
parameters, and the model's identity (``model_hash``) is the SHA-256 of exactly the stored bytes,
so a file records which model it needs and a decoder can refuse any other.
"""
from __future__ import annotations

import functools
import hashlib
import json
import lzma
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from ...errors import CorruptStreamError, InputError, UsageError
from .structure import Tree, compile_tree

MAGIC = b"NCPC\x00\x01\r\n"
Q_STEP = 8.0  # quantisation steps per bit of -log2 p
Q_MAX = 255
ALPHABET = 256


@njit(cache=True)
def _dequantize_rows(q, out):
    """p = 2^(-q/8), each row renormalised; sequential float64 so every machine gets the same bits."""
    rows, k = q.shape
    for r in range(rows):
        s = 0.0
        for c in range(k):
            val = 2.0 ** (-float(q[r, c]) / Q_STEP)
            out[r, c] = val
            s += val
        for c in range(k):
            out[r, c] /= s


@njit(cache=True)
def _mix_leaves(w, basis, out):
    """leaf[v, k, c] = sum_l w[v, k, l] * basis[l, c], summed in a fixed order (reproducible)."""
    d, m, nb = w.shape
    for v in range(d):
        for k in range(m):
            for c in range(basis.shape[1]):
                acc = 0.0
                for el in range(nb):
                    acc += w[v, k, el] * basis[el, c]
                out[v, k, c] = acc


def quantize_probs(p: np.ndarray) -> np.ndarray:
    """Float probabilities -> uint8 codes of -log2 p in 1/8-bit steps (clipped at 2^-31.875)."""
    with np.errstate(divide="ignore"):
        q = np.rint(-np.log2(np.maximum(np.asarray(p, np.float64), 1e-300)) * Q_STEP)
    return np.clip(q, 0, Q_MAX).astype(np.uint8)


def dequantize(q: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(q.reshape(-1, q.shape[-1]))
    out = np.empty(flat.shape, dtype=np.float64)
    _dequantize_rows(flat, out)
    return out.reshape(q.shape)


@dataclass
class HCLT:
    """One circuit over ``D = ph * pw * channels`` variables (a patch, variables in raster then
    channel order). ``q_*`` are the stored codes; ``prior/trans/leaf`` their float64 values."""

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
        d = self.tree.size
        m = self.q_prior.shape[0]
        if self.q_leaf is None:
            if self.q_bw is None or self.q_basis is None or self.q_bw.shape[:2] != (d, m) \
                    or self.q_basis.shape != (self.q_bw.shape[2], ALPHABET):
                raise CorruptStreamError("pc model: leaf basis shapes do not match the tree")
        elif self.q_leaf.shape != (d, m, ALPHABET):
            raise CorruptStreamError("pc model: leaf shapes do not match the tree")
        if self.q_trans.shape != (d, m, m):
            raise CorruptStreamError("pc model: parameter shapes do not match the tree")
        if int(np.prod(self.patch)) != d:
            raise CorruptStreamError("pc model: patch shape does not match the number of variables")
        self.prior = dequantize(self.q_prior[None])[0]
        self.trans = dequantize(self.q_trans)
        if self.q_leaf is not None:
            self.leaf = dequantize(self.q_leaf)
        else:
            self.leaf = np.empty((d, m, ALPHABET))
            _mix_leaves(dequantize(self.q_bw), dequantize(self.q_basis), self.leaf)

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
        out = {f"{prefix}parent": self.tree.parent.astype("<i4"), f"{prefix}prior": self.q_prior,
               f"{prefix}trans": self.q_trans}
        if self.q_leaf is not None:
            out[f"{prefix}leaf"] = self.q_leaf
        else:
            out[f"{prefix}bw"] = self.q_bw
            out[f"{prefix}basis"] = self.q_basis
        return out


@dataclass
class PCModel:
    """What a ``.ncpc`` file holds: one circuit per channel count (1 and/or 3), plus a name."""

    circuits: dict[int, HCLT]
    name: str = "custom"
    info: dict = field(default_factory=dict)

    def _payload(self) -> tuple[dict, bytes]:
        arrays: dict[str, np.ndarray] = {}
        meta = {"name": self.name, "info": self.info, "circuits": {}, "arrays": []}
        for c in sorted(self.circuits):
            circ = self.circuits[c]
            meta["circuits"][str(c)] = {"patch": list(circ.patch), "states": circ.num_states}
            arrays.update(circ.arrays(f"c{c}_"))
        blob = bytearray()
        for key in sorted(arrays):
            a = np.ascontiguousarray(arrays[key])
            meta["arrays"].append([key, a.dtype.str, list(a.shape), len(blob)])
            blob += a.tobytes()
        return meta, bytes(blob)

    @functools.cached_property
    def model_hash(self) -> str:
        """SHA-256 (hex, 16 chars) of the stored parameters and structure (computed once: do not
        edit ``circuits`` of a model whose hash was read)."""
        meta, blob = self._payload()
        h = hashlib.sha256(json.dumps({k: meta[k] for k in ("circuits", "arrays")}, sort_keys=True).encode())
        h.update(blob)
        return h.hexdigest()[:16]

    def to_bytes(self) -> bytes:
        meta, blob = self._payload()
        head = json.dumps(meta, sort_keys=True).encode()
        return MAGIC + struct.pack("<I", len(head)) + head + lzma.compress(blob, preset=9 | lzma.PRESET_EXTREME)

    def save(self, path: str | Path) -> None:
        from ...io import write_bytes_atomic

        write_bytes_atomic(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "pc model") -> "PCModel":
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            raise InputError(f"{what}: not a .ncpc model file")
        (n,) = struct.unpack_from("<I", data, len(MAGIC))
        try:
            meta = json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + n])
            blob = lzma.decompress(data[len(MAGIC) + 4 + n:])
            arrays = {}
            for key, dt, shape, off in meta["arrays"]:
                size = int(np.prod(shape)) * np.dtype(dt).itemsize
                if off + size > len(blob):
                    raise ValueError("array past end")
                arrays[key] = np.frombuffer(blob, dtype=dt, count=int(np.prod(shape)), offset=off).reshape(shape).copy()
            circuits = {}
            for c, spec in meta["circuits"].items():
                p = f"c{int(c)}_"
                tree = compile_tree(arrays[p + "parent"].astype(np.int32))
                circuits[int(c)] = HCLT(tree, arrays[p + "prior"], arrays[p + "trans"], arrays.get(p + "leaf"),
                                        tuple(int(v) for v in spec["patch"]), arrays.get(p + "bw"),
                                        arrays.get(p + "basis"))
        except (ValueError, KeyError, TypeError, lzma.LZMAError, UsageError) as exc:
            raise InputError(f"{what}: damaged model file ({exc})") from None
        return cls(circuits, str(meta.get("name", "custom")), dict(meta.get("info", {})))

    @classmethod
    def load(cls, path: str | Path) -> "PCModel":
        p = Path(path)
        if not p.is_file():
            raise InputError(f"pc model file '{p}' does not exist")
        return cls.from_bytes(p.read_bytes(), f"pc model '{p}'")


BUILTIN_MODELS = ("mnist", "natural")
_WEIGHTS = Path(__file__).resolve().parent / "weights"


def builtin_path(name: str) -> Path:
    return _WEIGHTS / f"{name}.ncpc"


@functools.lru_cache(maxsize=4)
def _load_file(path: str, mtime_ns: int, size: int) -> PCModel:
    # Why a cache: decompressing and mixing a 784-pixel model takes ~0.5 s, far more than coding one
    # digit; keyed by mtime and size so an edited file is read again. Callers must not mutate it.
    return PCModel.load(path)


def load_model(model: "str | Path | PCModel") -> PCModel:
    """``"mnist"``, ``"natural"`` (shipped), a path to a ``.ncpc`` file, or a :class:`PCModel`."""
    if isinstance(model, PCModel):
        return model
    if isinstance(model, str) and model in BUILTIN_MODELS:
        path = builtin_path(model)
        if not path.is_file():
            raise UsageError(f"the shipped pc model '{model}' is missing from this installation ({path})")
    elif isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise InputError(f"pc model file '{path}' does not exist")
    else:
        raise UsageError(f"model must be 'mnist', 'natural' or a path to a .ncpc file, got {type(model).__name__}")
    st = path.stat()
    out = _load_file(str(path.resolve()), st.st_mtime_ns, st.st_size)
    if isinstance(model, str) and model in BUILTIN_MODELS and out.name != model:
        raise UsageError(f"the shipped pc model file {path} names itself '{out.name}', not '{model}'")
    return out

