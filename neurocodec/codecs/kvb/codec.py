"""``kvb`` codec: a batch of samples -> the C key indices each selects, entropy coded.

Stream (``.ncx`` container, codec version 1):

* header: ``shape`` ``[N, C]`` and ``dtype`` of the decoded indices; ``bottleneck``: the
  fingerprint of the bottleneck that made the stream (the decoder refuses any other);
  ``model``: where that bottleneck came from (a built-in name or a path, as a hint);
  ``num_keys``, ``masked``, ``precision``; and the rate: ``fixed_bits_per_sample``
  (C * log2 K) and ``coded_bits_per_sample`` (the section below, in bits, per sample).
* section ``indices``: range-coded indices, codebook after codebook, each codebook under its
  own integer frequency table learned from the training codes (stored in the bottleneck file,
  so it costs nothing per stream).

``decode`` returns :class:`KVBDecoded` ``(indices, values, logits)``.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ...codec import Codec
from ...errors import CorruptStreamError, InputError, UsageError
from .encoders import WEIGHTS_DIR

_BUILTIN_SUFFIX = ".kvb.npz"


class KVBDecoded(NamedTuple):
    indices: np.ndarray  # N x C int64
    values: np.ndarray  # N x C x value_dim float32
    logits: np.ndarray  # N x value_dim float32


def builtin_models() -> list[str]:
    """Names of the bottlenecks shipped in ``weights/`` (``<name>.kvb.npz``)."""
    return sorted(p.name[: -len(_BUILTIN_SUFFIX)] for p in WEIGHTS_DIR.glob(f"*{_BUILTIN_SUFFIX}"))


def resolve_model(model: Any, device: Any = None):
    """A KVBottleneck from an instance, a built-in name or a file path."""
    from .bottleneck import KVBottleneck

    if isinstance(model, KVBottleneck):
        return model
    if not isinstance(model, (str, Path)):
        raise UsageError(
            f"model must be a built-in name, a bottleneck file path or a KVBottleneck, got {type(model).__name__}"
        )
    text = str(model)
    builtin = WEIGHTS_DIR / f"{text}{_BUILTIN_SUFFIX}"
    if "/" not in text and "\\" not in text and builtin.is_file():
        return KVBottleneck.load(builtin, device=device)
    path = Path(text)
    if not path.is_file():
        known = ", ".join(builtin_models()) or "none"
        raise UsageError(f"kvb model '{text}' is neither a built-in ({known}) nor a bottleneck file")
    return KVBottleneck.load(path, device=device)


def _model_label(model: Any) -> str | None:
    return str(model) if isinstance(model, (str, Path)) else None


class KVBCodec(Codec):
    name = "kvb"
    version = 1
    kind = "representation"
    description = "discrete key-value bottleneck: C entropy-coded key indices per sample"

    def compress(
        self, data: Any, *, progress: bool = False, model: Any = "mnist", mask: bool = True
    ) -> tuple[dict, dict[str, bytes]]:
        from ...entropy import SequentialEncoder

        kvb = resolve_model(model)
        kvb._require_keys()
        idx = kvb.indices(data, mask=bool(mask)).cpu().numpy()
        enc = SequentialEncoder()
        # codebook-major: codebook c's N indices under its own table
        for c in range(kvb.num_codebooks):
            enc.push_iid(idx[:, c], kvb.freqs[c])
        payload = enc.finish()
        n = idx.shape[0]
        header = {
            "shape": [int(n), kvb.num_codebooks],
            "dtype": "int64",
            "bottleneck": kvb.fingerprint(),
            "model": _model_label(model),
            "num_keys": kvb.num_keys,
            "value_dim": kvb.value_dim,
            "masked": bool(mask),
            "precision": kvb.precision,
            "fixed_bits_per_sample": kvb.fixed_bits,
            "coded_bits_per_sample": 8 * len(payload) / n,
            "model_bits_per_sample": kvb.model_bits(idx),
        }
        return header, {"indices": payload}

    def decompress(self, header: dict, sections: Mapping[str, bytes], *, model: Any = None) -> KVBDecoded:
        from ...entropy import SequentialDecoder

        shape = header.get("shape")
        want = header.get("bottleneck")
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and s > 0 for s in shape)):
            raise CorruptStreamError(f"kvb header has a bad shape {shape!r}")
        if not isinstance(want, str):
            raise CorruptStreamError("kvb header does not name its bottleneck")
        if model is None:
            model = header.get("model")
            if model is None:
                raise UsageError(
                    "this kvb stream was made with an in-memory bottleneck: pass model= (its file or object)"
                )
        kvb = resolve_model(model)
        have = kvb.fingerprint()
        if have != want:
            raise InputError(
                f"kvb stream needs bottleneck {want}, but model '{_model_label(model) or 'given'}' is {have}: "
                "decode with the bottleneck file that encoded it"
            )
        n, C = shape
        if C != kvb.num_codebooks:
            raise CorruptStreamError(f"kvb stream has {C} codebooks, the bottleneck {kvb.num_codebooks}")
        if "indices" not in sections:
            raise CorruptStreamError("kvb stream has no 'indices' section")
        dec = SequentialDecoder(sections["indices"])
        idx = np.empty((n, C), dtype=np.int64)
        for c in range(C):
            idx[:, c] = dec.pull_iid(kvb.freqs[c], n)
        if (idx < 0).any() or (idx >= kvb.num_keys).any():
            raise CorruptStreamError("kvb stream decoded indices outside the codebooks")
        out = kvb.lookup(idx)
        return KVBDecoded(out.indices, out.values, out.logits)
