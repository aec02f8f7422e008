"""The pc wing's formats before the shared model files: the ``.ncpc`` model file (read, to convert
it) and the model hash that version-1 bitstreams record.

Why keep them: files coded with pc bitstream version 1 name their model by :func:`v1_model_hash`
(a hash of the stored arrays, not of a file), and users may hold ``.ncpc`` models they trained.
Both stay usable: the decoder accepts a v1 file whose hash matches the model's v1 hash, and
:func:`convert` turns an ``.ncpc`` into a ``pc`` model file with exactly the same parameters (so the
same v1 hash). Nothing here is pickle: the old file was a JSON header and lzma-compressed raw arrays.

Old ``.ncpc`` layout: ``b"NCPC\\0\\1\\r\\n"``, uint32 LE header length, JSON header ``{"name", "info",
"circuits": {"<C>": {"patch", "states"}}, "arrays": [[key, dtype, shape, offset], ...]}``, then the
lzma stream of the arrays' bytes concatenated in sorted key order.
"""
from __future__ import annotations

import hashlib
import json
import lzma
import struct
from pathlib import Path

import numpy as np

from ...errors import CorruptStreamError, InputError, UsageError
from .model import HCLT, PCModel
from .structure import compile_tree

NCPC_MAGIC = b"NCPC\x00\x01\r\n"
_MAX_BLOB = 1 << 31  # refuse to inflate an old file past 2 GiB


def _layout(model: PCModel) -> tuple[dict, list[tuple[str, np.ndarray]]]:
    """The v1 header's ``circuits`` and ``arrays`` entries and the arrays in stored order."""
    arrays = sorted(model.arrays().items())
    meta: dict = {"circuits": {str(c): {"patch": list(circ.patch), "states": circ.num_states}
                               for c, circ in model.circuits.items()}, "arrays": []}
    off = 0
    for key, a in arrays:
        meta["arrays"].append([key, a.dtype.str, list(a.shape), off])
        off += a.nbytes
    return meta, arrays


def v1_model_hash(model: PCModel) -> str:
    """The ``model_hash`` a version-1 pc bitstream records: SHA-256 (16 hex) of the v1 header's
    circuits/arrays entries and the stored parameter bytes. Name and training info do not count."""
    meta, arrays = _layout(model)
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for _, a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def read_ncpc(data: bytes, what: str = "pc model") -> PCModel:
    """Parse an old ``.ncpc`` file into a :class:`PCModel` (same parameters exactly)."""
    if not data.startswith(NCPC_MAGIC) or len(data) < len(NCPC_MAGIC) + 4:
        raise InputError(f"{what}: not a .ncpc model file")
    (n,) = struct.unpack_from("<I", data, len(NCPC_MAGIC))
    start = len(NCPC_MAGIC) + 4
    try:
        meta = json.loads(data[start:start + n])
        dec = lzma.LZMADecompressor()
        blob = dec.decompress(data[start + n:], max_length=_MAX_BLOB)
        arrays = {}
        for key, dt, shape, off in meta["arrays"]:
            dtype = np.dtype(dt)
            if dtype.kind not in "iub" or dtype.hasobject:
                raise ValueError(f"array {key} has dtype {dt}")
            count = int(np.prod(shape))
            if off < 0 or off + count * dtype.itemsize > len(blob):
                raise ValueError(f"array {key} reaches past the end")
            arrays[key] = np.frombuffer(blob, dtype=dtype, count=count, offset=off).reshape(shape)
        circuits = {}
        for c, spec in meta["circuits"].items():
            p = f"c{int(c)}_"
            circuits[int(c)] = HCLT(compile_tree(arrays[p + "parent"]), arrays[p + "prior"], arrays[p + "trans"],
                                    arrays.get(p + "leaf"), tuple(int(v) for v in spec["patch"]),
                                    arrays.get(p + "bw"), arrays.get(p + "basis"))
        return PCModel(circuits, str(meta.get("name", "custom")), dict(meta.get("info", {})))
    except (ValueError, KeyError, TypeError, lzma.LZMAError, UsageError, CorruptStreamError) as exc:
        raise InputError(f"{what}: damaged .ncpc model file ({exc})") from None


def convert(src: str | Path, dst: str | Path) -> tuple[PCModel, str]:
    """``.ncpc`` file -> ``pc`` model file; returns the model and the new file's digest."""
    p = Path(src)
    if not p.is_file():
        raise InputError(f"pc model file '{p}' does not exist")
    model = read_ncpc(p.read_bytes(), f"pc model '{p}'")
    return model, model.save(dst)
