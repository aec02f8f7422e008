"""``kvb`` codec: a batch of samples -> the C key indices each selects, entropy coded.

Stream (``.ncx`` container, codec version 2):

* header: ``shape`` ``[N, C]`` and ``dtype`` of the decoded indices; ``bottleneck``: the short
  digest (16 hex digits of the SHA-256 of the model file's bytes, :attr:`KVBottleneck.short_digest`)
  of the bottleneck that made the stream: the decoder refuses any other; ``model``: where that
  bottleneck came from (a built-in name or a path, as a hint); ``num_keys``, ``value_dim``,
  ``masked``, ``precision``; and the rate: ``fixed_bits_per_sample`` (C * log2 K),
  ``coded_bits_per_sample`` (the section below, in bits, per sample) and
  ``model_bits_per_sample`` (its ideal size under the tables).
* section ``indices``: range-coded indices, codebook after codebook, each codebook under its
  own integer frequency table learned from the training codes (stored in the model file, so it
  costs nothing per stream).

Version 2 changed what ``bottleneck`` means: version 1 recorded a 32-hex hash of the config and
arrays of the old ``.kvb.npz`` files, which this code no longer reads, so version-1 streams are
refused (``min_version = 2``).

Stateless: built-in names and paths resolve to the cached read-only bottleneck of their model file
(:func:`.model.shared`), which neither encode nor decode modifies; nothing is kept between calls.

``decode`` returns :class:`KVBDecoded` ``(indices, values, logits)``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ...codec import Codec
from ...errors import CorruptStreamError, InputError, UsageError
from .model import KIND, VERSIONS, KVBottleneck, read_model_file, shared
from .shipped import MODELS, load_shipped


class KVBDecoded(NamedTuple):
    indices: np.ndarray  # N x C int64
    values: np.ndarray  # N x C x value_dim float32
    logits: np.ndarray  # N x value_dim float32


def builtin_models() -> list[str]:
    """Names of the bottlenecks shipped in ``weights/`` (``<name>.ncx``, digests in ``shipped.SHIPPED``)."""
    return sorted(MODELS)


def resolve_model(model: Any, device: Any = "auto") -> KVBottleneck:
    """A bottleneck from an instance (returned as it is), a built-in name or a model file path.

    Names and paths give the shared read-only copy (cached per file digest and device): use it to
    code and predict; to train, take your own with :meth:`KVBottleneck.load` / ``.shipped``."""
    if isinstance(model, KVBottleneck):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise UsageError(
            f"model must be a built-in name, a bottleneck file path or a KVBottleneck, got {type(model).__name__}"
        )
    text = str(model)
    if text in MODELS:
        return shared(load_shipped(text, KIND, VERSIONS), device)
    path = Path(text)
    if not path.is_file():
        raise UsageError(f"kvb model '{text}' is neither a built-in ({', '.join(builtin_models())}) "
                         "nor a bottleneck file")
    return shared(read_model_file(path), device)


def _model_label(model: Any) -> str | None:
    return str(model) if isinstance(model, (str, os.PathLike)) else None


class KVBCodec(Codec):
    name = "kvb"
    version = 2
    min_version = 2
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
            "bottleneck": kvb.short_digest,
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
        have = kvb.short_digest
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
