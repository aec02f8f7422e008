"""Model files: one ``.ncx`` container each, identified by the hash of its bytes, never pickle.

Every learned object the package ships or a user trains (a pc circuit, a kvb bottleneck, the ldm
autoencoder and UNet, an hnerv training checkpoint) is stored the same way:

* the container's codec field is ``"model:<kind>"`` (``kind`` = the wing, e.g. ``"pc"``) and its
  codec version is the kind's model-format version, so a reader refuses a model of another wing or
  of a newer format with one clear line;
* the JSON header holds the configuration (``"config"``) and, for each array, its dtype and shape
  (``"arrays"``); nested Python structures (an optimizer state, a list of tensors) are flattened by
  :func:`flatten` into a JSON skeleton plus named arrays and restored by :func:`unflatten`;
* each array is one section: raw little-endian bytes, optionally lzma-compressed as a whole
  (``"compression"`` in the header), checked by the container's CRCs.

Why not ``torch.save``: a pickle runs code when it is opened, so a model file from a stranger
would be a program. A container of plain arrays is data, and its CRCs and versions come for free.

Identity: :attr:`ModelFile.digest` is the SHA-256 of the file's bytes. Bitstreams record the short
form (:attr:`ModelFile.short_digest`) of the model that made them, and the wings record the digests
of the files they ship (a ``SHIPPED`` table beside the code that loads them), so a swapped or edited
file is detected, not silently used.

Size: :func:`load` refuses a file above :data:`DEFAULT_MAX_MODEL_BYTES` (1 GiB; ``max_bytes=`` or
``$NEUROCODEC_MAX_MODEL_BYTES`` to change, ``0`` for none) before reading it, reads only regular
files (never a FIFO or device, which could block or never end), and :func:`from_bytes` refuses
arrays that would unpack (lzma included) to more than the same limit, so a small file cannot
claim gigabytes. A path that a *bitstream header* names (not the user) goes through
:func:`header_model_path` first.

Loading is cached by path, size and modification time (one read and hash per file and process), and
what comes back is immutable: arrays are read-only, the config is a frozen mapping. Objects built
from a model file (torch modules, circuits) are cached by :func:`build`, keyed by the file's digest
and the device, and must not be mutated by their users: copy before training or moving.
"""
from __future__ import annotations

import functools
import hashlib
import lzma
import math
import os
import stat as _stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np

from . import container as ncx
from .errors import CorruptStreamError, InputError, NeurocodecError, UnsupportedVersionError, UsageError
from .schema import limit_in_force

PREFIX = "model:"
_COMPRESSIONS = ("none", "lzma")
# dtypes a model file may hold: plain numeric data only (no object arrays, nothing that unpickles)
_DTYPES = frozenset("|b1 |i1 |u1 <i2 <u2 <i4 <u4 <i8 <u8 <f2 <f4 <f8".split())

T = TypeVar("T")

#: bytes a model file may have (and its arrays may unpack to) unless the caller allows more: 1 GiB,
#: some 300 times the largest shipped model (3.4 MB), and what a decoder can hold in memory twice over
DEFAULT_MAX_MODEL_BYTES = 1 << 30
ENV_MAX_MODEL_BYTES = "NEUROCODEC_MAX_MODEL_BYTES"
#: folders a header-named model path may never point into (after symlinks are resolved)
_FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")


def max_model_bytes(max_bytes: int | None = None) -> int | None:
    """The model-file size limit in force: ``max_bytes`` if given, else ``$NEUROCODEC_MAX_MODEL_BYTES``,
    else :data:`DEFAULT_MAX_MODEL_BYTES`; ``None`` (``0`` asked for) means no limit. Read like the
    decode limits (:func:`neurocodec.schema.limit_in_force`)."""
    return limit_in_force("max_bytes", max_bytes, ENV_MAX_MODEL_BYTES, DEFAULT_MAX_MODEL_BYTES)


def _too_big(what: str, size: int, limit: int, noun: str = "bytes") -> InputError:
    return InputError(f"{what} is {size} {noun}, above the model-file limit of {limit} bytes: if you trust it, "
                      f"pass max_bytes={size} to neurocodec.weights.load or set {ENV_MAX_MODEL_BYTES}={size}")


def header_model_path(text: Any, *, codec: str) -> Path:
    """The model file that a bitstream *header* names, if the rule allows opening it; else an
    :class:`InputError` telling the user to pass the model themselves.

    Why a rule: a header is written by whoever made the file, and the decoder would open what it
    names. Allowed is a regular file (symlinks resolved) whose name ends in ``.ncx``, outside
    ``/proc``, ``/sys`` and ``/dev``; it is then read by :func:`load` under the size limit, parsed
    as a model container (data, never code) and used only when its digest is the one the header
    records. Relative paths resolve against the current folder (as the encoder recorded them)."""
    def refuse(why: str) -> InputError:
        return InputError(f"{codec} file names the model path {str(text)[:200]!r}, which is {why}: "
                          "pass the model file with model=PATH (command line: --param model=PATH)")

    if not isinstance(text, str) or not text or "\0" in text or len(text) > 4096:
        raise refuse("not a usable path")
    try:
        real = Path(text).resolve()
    except (OSError, RuntimeError, ValueError):
        raise refuse("not a usable path") from None
    if any(str(real) == root or str(real).startswith(root + os.sep) for root in _FORBIDDEN_ROOTS):
        raise refuse("inside a system folder (/proc, /sys, /dev)")
    if real.suffix.lower() != ".ncx":
        raise refuse("not a .ncx model file")
    try:
        mode = real.stat().st_mode
    except OSError:
        raise refuse("not there") from None
    if not _stat.S_ISREG(mode):
        raise refuse("not a regular file")
    return real


def _read_regular_file(path: str, limit: int | None) -> bytes:
    """The bytes of a regular file, at most ``limit``: opened without blocking (a FIFO swapped in
    after the caller's stat cannot hang us), checked to be a regular file on the open descriptor,
    read with a bound (a file that grew past the limit is refused, not read to its end)."""
    what = f"model file '{path}'"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not _stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} is not a regular file")
        if limit is not None and st.st_size > limit:
            raise _too_big(what, st.st_size, limit)
        data = fh.read(st.st_size + 1 if limit is None else min(st.st_size, limit) + 1)
        if limit is not None and len(data) > limit:
            raise _too_big(what, len(data), limit)
        if len(data) > st.st_size:  # it grew while we read: take the rest, still bounded
            data += fh.read(-1 if limit is None else limit + 1 - len(data))
            if limit is not None and len(data) > limit:
                raise _too_big(what, len(data), limit)
    return data


# ------------------------------------------------------------------------------- frozen values
def freeze(value: Any) -> Any:
    """Deep read-only view of JSON-like data: dicts -> MappingProxyType, lists -> tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A fresh, mutable, JSON-serialisable deep copy of :func:`freeze`'s output (or any JSON-like data)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


# ------------------------------------------------------------------------- nested structures
_ARRAY_KEY = "__array__"


def flatten(tree: Any, prefix: str = "") -> tuple[Any, dict[str, np.ndarray]]:
    """Split a nested structure of dicts, lists, scalars, numpy arrays and torch tensors into a
    JSON skeleton (arrays replaced by ``{"__array__": name}``) and the named arrays.

    Dict keys become strings (an optimizer state's integer keys are restored by
    :func:`unflatten` with ``int_keys``)."""
    arrays: dict[str, np.ndarray] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, np.ndarray) or _is_tensor(node):
            arrays[path] = _to_numpy(node)
            return {_ARRAY_KEY: path}
        if isinstance(node, Mapping):
            return {str(k): walk(v, f"{path}/{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(v, f"{path}/{i}" if path else str(i)) for i, v in enumerate(node)]
        if isinstance(node, (np.integer, np.floating, np.bool_)):
            return node.item()
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise UsageError(f"cannot store a {type(node).__name__} in a model file (at '{path or '/'}')")

    return walk(tree, prefix), arrays


def unflatten(skeleton: Any, arrays: Mapping[str, np.ndarray], *, as_tensors: bool = False,
              int_keys: bool = False) -> Any:
    """Inverse of :func:`flatten`. Arrays are copied (writable) and, with ``as_tensors``, turned
    into CPU torch tensors; with ``int_keys`` dict keys that are decimal integers become ints."""
    def walk(node: Any) -> Any:
        if isinstance(node, Mapping):
            if set(node) == {_ARRAY_KEY}:
                name = node[_ARRAY_KEY]
                if name not in arrays:
                    raise InputError(f"model file refers to an array '{name}' it does not hold")
                arr = np.array(arrays[name])  # a writable copy
                if as_tensors:
                    import torch

                    return torch.from_numpy(arr)
                return arr
            return {(int(k) if int_keys and k.lstrip("-").isdigit() else k): walk(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(v) for v in node]
        return node

    return walk(skeleton)


def _is_tensor(value: Any) -> bool:
    # without importing torch: a module that never touched torch holds no tensors
    mod = type(value).__module__
    return mod.startswith("torch") and hasattr(value, "detach") and hasattr(value, "numpy")


def _to_numpy(value: Any) -> np.ndarray:
    if _is_tensor(value):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            raise UsageError("bfloat16 tensors cannot be stored in a model file: convert to float32 first")
        value = value.numpy()
    value = np.asarray(value)
    # not np.ascontiguousarray: it turns a 0-d array (an optimizer's step count) into shape (1,)
    return value if value.flags.c_contiguous else value.copy(order="C")


# ----------------------------------------------------------------------------------- the file
@dataclass(frozen=True, eq=False)
class ModelFile:
    """A parsed model file: what it is (``kind``, ``version``), its ``config`` (frozen JSON), its
    ``arrays`` (read-only numpy arrays by name) and ``digest`` (SHA-256 hex of the file's bytes)."""

    kind: str
    version: int
    config: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray]
    digest: str
    size: int

    @property
    def short_digest(self) -> str:
        """The first 16 hex digits of :attr:`digest`: what a bitstream records (64 bits)."""
        return self.digest[:16]

    def array(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise InputError(f"{self.kind} model file has no array '{name}'") from None

    def config_dict(self) -> dict[str, Any]:
        """A mutable deep copy of the config."""
        return thaw(self.config)


def to_bytes(kind: str, version: int, config: Mapping[str, Any], arrays: Mapping[str, Any], *,
             compression: str = "none") -> bytes:
    """Serialise a model. ``arrays`` maps names (ASCII, at most 255 characters) to numpy arrays or
    torch tensors; ``config`` must be JSON-serialisable. The bytes are a pure function of the
    arguments (sorted keys, fixed lzma preset), so saving the same model twice gives the same digest."""
    if compression not in _COMPRESSIONS:
        raise UsageError(f"compression must be one of {', '.join(_COMPRESSIONS)}, got '{compression}'")
    if not isinstance(version, int) or version < 1:
        raise UsageError(f"model format version must be a positive int, got {version!r}")
    table: dict[str, list] = {}
    sections: dict[str, bytes] = {}
    for name in sorted(arrays):
        arr = _to_numpy(arrays[name])
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        if arr.dtype.str not in _DTYPES:
            raise UsageError(f"array '{name}' has dtype {arr.dtype}, which a model file cannot hold")
        raw = arr.tobytes(order="C")
        if compression == "lzma":
            raw = lzma.compress(raw, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
        table[name] = [arr.dtype.str, list(arr.shape)]
        sections[name] = raw
    header = {"config": thaw(config), "arrays": table, "compression": compression}
    return ncx.pack(ncx.Container(PREFIX + kind, version, header, sections))


def from_bytes(data: bytes, *, kind: str | None = None, versions: tuple[int, int] | None = None,
               what: str = "model file", max_bytes: int | None = None) -> ModelFile:
    """Parse and verify a model file. ``kind`` and ``versions`` (min, max accepted) are checked when
    given; the arrays may hold at most ``max_bytes`` in all (:func:`max_model_bytes`), checked from
    the array table before anything is unpacked. Raises :class:`~neurocodec.errors.InputError` (or
    a subclass) naming what is wrong."""
    limit = max_model_bytes(max_bytes)
    try:
        box = ncx.unpack(data)
    except CorruptStreamError as exc:
        raise type(exc)(f"{what}: {exc}") from None
    if not box.codec.startswith(PREFIX):
        raise InputError(f"{what} is a '{box.codec}' stream, not a model file")
    got = box.codec[len(PREFIX):]
    if kind is not None and got != kind:
        raise InputError(f"{what} holds a '{got}' model, not a '{kind}' model")
    if versions is not None and not versions[0] <= box.codec_version <= versions[1]:
        raise UnsupportedVersionError(
            f"{what}: {got} model format version {box.codec_version} is not supported "
            f"(this neurocodec reads {versions[0]}..{versions[1]})")
    head = box.header
    table = head.get("arrays")
    compression = head.get("compression", "none")
    if not isinstance(head.get("config", {}), dict) or not isinstance(table, dict) or compression not in _COMPRESSIONS:
        raise CorruptStreamError(f"{what}: header lacks a valid config, array table or compression")
    if set(table) != set(box.sections):
        raise CorruptStreamError(f"{what}: array table and sections disagree")
    arrays: dict[str, np.ndarray] = {}
    specs: dict[str, tuple[np.dtype, tuple[int, ...], int]] = {}
    for name, spec in table.items():
        try:
            dtype_str, shape = spec
            if not isinstance(dtype_str, str) or not isinstance(shape, list) or len(shape) > 32 or any(
                    isinstance(s, bool) or not isinstance(s, int) for s in shape):
                raise TypeError
            dtype = np.dtype(dtype_str)
            shape = tuple(shape)
        except (TypeError, ValueError):
            raise CorruptStreamError(f"{what}: array '{name}' has a malformed dtype/shape entry") from None
        if dtype.str not in _DTYPES or any(s < 0 for s in shape):
            raise CorruptStreamError(f"{what}: array '{name}' has an unsupported dtype or shape {spec}")
        specs[name] = (dtype, shape, math.prod(shape))  # Python ints: no int64 wrap-around
    unpacked = sum(count * dtype.itemsize for dtype, _, count in specs.values())
    if limit is not None and unpacked > limit:
        raise _too_big(f"{what} (its arrays unpacked)", unpacked, limit)
    for name, (dtype, shape, count) in specs.items():
        raw = box.sections[name]
        if compression == "lzma":
            try:
                dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
                raw = dec.decompress(raw, max_length=count * dtype.itemsize + 1)
            except lzma.LZMAError as exc:
                raise CorruptStreamError(f"{what}: array '{name}' does not decompress ({exc})") from None
        if len(raw) != count * dtype.itemsize:
            raise CorruptStreamError(f"{what}: array '{name}' holds {len(raw)} bytes, its shape {shape} "
                                     f"needs {count * dtype.itemsize}")
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape)  # read-only: backed by bytes
        arrays[name] = arr
    return ModelFile(got, box.codec_version, freeze(head.get("config", {})), MappingProxyType(arrays),
                     hashlib.sha256(data).hexdigest(), len(data))


def save(path: str | os.PathLike, kind: str, version: int, config: Mapping[str, Any],
         arrays: Mapping[str, Any], *, compression: str = "none") -> str:
    """Write a model file atomically; returns its digest (SHA-256 hex)."""
    from .io import write_bytes_atomic

    data = to_bytes(kind, version, config, arrays, compression=compression)
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def load(path: str | os.PathLike, *, kind: str | None = None, versions: tuple[int, int] | None = None,
         expect_digest: str | None = None, max_bytes: int | None = None) -> ModelFile:
    """Read a model file (cached by resolved path, size and mtime). With ``expect_digest`` (full or
    short hex), a file whose bytes hash differently is refused: that is how shipped models are
    pinned to the code that uses them. A file (or its unpacked arrays) above ``max_bytes``
    (:func:`max_model_bytes`: 1 GiB unless changed) is refused before it is read."""
    p = Path(path)
    limit = max_model_bytes(max_bytes)
    try:
        st = p.stat()
    except OSError:
        raise InputError(f"model file '{p}' does not exist") from None
    if not _stat.S_ISREG(st.st_mode):
        raise InputError(f"model file '{p}' is not a file")
    if limit is not None and st.st_size > limit:
        raise _too_big(f"model file '{p}'", st.st_size, limit)
    model = _load_cached(str(p.resolve()), st.st_size, st.st_mtime_ns, 0 if limit is None else limit)
    if kind is not None and model.kind != kind:
        raise InputError(f"model file '{p}' holds a '{model.kind}' model, not a '{kind}' model")
    if versions is not None and not versions[0] <= model.version <= versions[1]:
        raise UnsupportedVersionError(
            f"model file '{p}': {model.kind} model format version {model.version} is not supported "
            f"(this neurocodec reads {versions[0]}..{versions[1]})")
    if expect_digest is not None and not model.digest.startswith(expect_digest.lower()):
        raise InputError(f"model file '{p}' has digest {model.short_digest}, expected {expect_digest[:16]}: "
                         f"the file was changed or replaced")
    return model


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, size: int, mtime_ns: int, limit: int) -> ModelFile:
    # size and mtime are part of the key so an edited file is read again; the limit (0 = none) so a
    # file refused under one limit is not served from the cache under another
    data = _read_regular_file(path, limit or None)
    return from_bytes(data, what=f"model file '{path}'", max_bytes=limit)


# ------------------------------------------------------------------------- built objects
_BUILT: OrderedDict[tuple, Any] = OrderedDict()
_BUILT_LOCK = threading.Lock()
_BUILT_MAX = 16


def build(model: ModelFile, factory: Callable[[ModelFile, str], T], device: str = "cpu") -> T:
    """``factory(model, device)``, cached by (factory, model digest, device).

    Why: turning arrays into a torch module or a mixed circuit costs far more than coding one small
    input, and every decode would pay it. The cached object is shared: callers must treat it as
    read-only (no ``.to()``, no training, no attribute writes). A different device is a different
    cache entry, never an in-place move."""
    key = (getattr(factory, "__module__", ""), getattr(factory, "__qualname__", repr(factory)), model.digest,
           str(device))
    with _BUILT_LOCK:
        if key in _BUILT:
            _BUILT.move_to_end(key)
            return _BUILT[key]
    try:
        obj = factory(model, str(device))
    except NeurocodecError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise InputError(f"{model.kind} model file {model.short_digest} does not fit its code: {exc}") from None
    with _BUILT_LOCK:
        _BUILT[key] = obj
        while len(_BUILT) > _BUILT_MAX:
            _BUILT.popitem(last=False)
    return obj


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 hex of a file's bytes (what :attr:`ModelFile.digest` is for a model file)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
