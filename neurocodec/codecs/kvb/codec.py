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

Validation: encode parameters and decode options are declared (:mod:`neurocodec.params`; ``model``
may also be a :class:`KVBottleneck` object from Python), and the header is checked against
:data:`SCHEMA` (:mod:`neurocodec.schema`, through :meth:`~neurocodec.codec.Codec.check_header`)
before any model is loaded or anything allocated; the decoded size it claims (indices, values and
logits) is held to the ``max_values`` limit. A model *path* recorded in a header is only a hint:
the decoder opens it only where :func:`neurocodec.weights.header_model_path` allows (a regular
``.ncx`` file outside /proc, /sys, /dev), reads it under the model-file size limit as data (never
code), and accepts it only if its digest is the one the header names; anything else asks for
``model=``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ... import weights
from ...codec import Codec
from ...errors import CorruptStreamError, InputError, UsageError
from ...params import Param, bind
from ...schema import Field, Schema, max_values_option
from .model import KIND, VERSIONS, KVBottleneck, read_model_file, shared
from .shipped import MODELS, load_shipped


class KVBDecoded(NamedTuple):
    indices: np.ndarray  # N x C int64
    values: np.ndarray  # N x C x value_dim float32
    logits: np.ndarray  # N x value_dim float32


def builtin_models() -> list[str]:
    """Names of the bottlenecks shipped in ``weights/`` (``<name>.ncx``, digests in ``shipped.SHIPPED``)."""
    return sorted(MODELS)


def resolve_model(model: Any, device: Any = "auto", *, from_header: bool = False) -> KVBottleneck:
    """A bottleneck from an instance (returned as it is), a built-in name or a model file path.

    Names and paths give the shared read-only copy (cached per file digest and device): use it to
    code and predict; to train, take your own with :meth:`KVBottleneck.load` / ``.shipped``.
    ``from_header``: the name comes from a bitstream, not the user, so a path must pass
    :func:`neurocodec.weights.header_model_path`."""
    if isinstance(model, KVBottleneck):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise UsageError(
            f"model must be a built-in name, a bottleneck file path or a KVBottleneck, got {type(model).__name__}"
        )
    text = str(model)
    if text in MODELS:
        return shared(load_shipped(text, KIND, VERSIONS), device)
    if from_header:
        return shared(read_model_file(weights.header_model_path(text, codec="kvb")), device)
    path = Path(text)
    if not path.is_file():
        raise UsageError(f"kvb model '{text}' is neither a built-in ({', '.join(builtin_models())}) "
                         "nor a bottleneck file")
    return shared(read_model_file(path), device)


def _model_label(model: Any) -> str | None:
    return str(model) if isinstance(model, (str, os.PathLike)) else None


def _layout(h: dict, sections: Mapping[str, bytes]) -> str | None:
    if h["num_keys"] > 1 << h["precision"]:
        return f"num_keys {h['num_keys']} cannot be coded at precision {h['precision']}"
    return None


#: the version-2 header (see the module docstring)
SCHEMA = Schema(
    "kvb",
    fields={
        "shape": Field("ints", length=2, lo=1, hi=1 << 31),
        "dtype": Field("str", choices=("int64",)),
        "bottleneck": Field("str", pattern="[0-9a-f]{16}"),
        "model": Field("str", nullable=True, length=(1, 4096)),
        "num_keys": Field("int", lo=1, hi=1 << 16),
        "value_dim": Field("int", lo=1, hi=1 << 20),
        "masked": Field("bool"),
        "precision": Field("int", lo=1, hi=32),
        "fixed_bits_per_sample": Field("float", required=False, lo=0),
        "coded_bits_per_sample": Field("float", required=False, lo=0),
        "model_bits_per_sample": Field("float", required=False, lo=0),
    },
    sections=("indices",),
    checks=(_layout,),
    # what decode returns: N x C indices, N x C x value_dim values, N x value_dim logits
    decoded=lambda h: h["shape"][0] * (h["shape"][1] * (1 + h["value_dim"]) + h["value_dim"]),
)

_MODEL_HELP = f"built-in bottleneck ({', '.join(sorted(MODELS))}) or a bottleneck file path (from Python also a KVBottleneck)"


def _bind(declared: tuple[Param, ...], given: Mapping[str, Any], what: str) -> dict[str, Any]:
    """:func:`neurocodec.params.bind`, letting a :class:`KVBottleneck` object through as ``model``."""
    given = dict(given)
    obj = given.pop("model", None) if isinstance(given.get("model"), KVBottleneck) else None
    if isinstance(given.get("model"), os.PathLike):
        given["model"] = os.fspath(given["model"])
    values = bind(declared, given, "codec 'kvb'", what)
    if obj is not None:
        values["model"] = obj
    return values


class KVBCodec(Codec):
    name = "kvb"
    version = 2
    min_version = 2
    kind = "representation"
    description = "discrete key-value bottleneck: C entropy-coded key indices per sample"
    params = (
        Param("model", "str", "mnist", _MODEL_HELP),
        Param("mask", "bool", True, "code only keys used in training (masked keys are never selected)"),
    )
    options = (
        Param("model", "str", None, "the bottleneck that encoded the file; none = the one its header names",
              nullable=True),
        max_values_option(),
    )

    @classmethod
    def schema(cls) -> Schema:
        return SCHEMA

    def compress(self, data: Any, *, progress: bool = False, **params: Any) -> tuple[dict, dict[str, bytes]]:
        """Code ``data`` (a batch the bottleneck's encoder takes) with parameters ``model`` and
        ``mask`` (see :attr:`params`)."""
        from ...entropy import SequentialEncoder

        values = _bind(self.params, params, "parameter")
        model, mask = values["model"], values["mask"]
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

    def decompress(self, header: dict, sections: Mapping[str, bytes], **options: Any) -> KVBDecoded:
        """Decode to :class:`KVBDecoded`; options ``model`` and ``max_values`` (see :attr:`options`)."""
        from ...entropy import SequentialDecoder

        values = _bind(self.options, options, "decode option")
        model = values["model"]
        # the header passed SCHEMA under max_values at the decompress gate (Codec.check_header)
        shape, want = header["shape"], header["bottleneck"]
        from_header = model is None
        if from_header:
            model = header.get("model")
            if model is None:
                raise UsageError(
                    "this kvb stream was made with an in-memory bottleneck: pass model= (its file or object)"
                )
        kvb = resolve_model(model, from_header=from_header)
        have = kvb.short_digest
        if have != want:
            raise InputError(
                f"kvb stream needs bottleneck {want}, but model '{_model_label(model) or 'given'}' is {have}: "
                "decode with the bottleneck file that encoded it"
            )
        n, C = shape
        if C != kvb.num_codebooks:
            raise CorruptStreamError(f"kvb stream has {C} codebooks, the bottleneck {kvb.num_codebooks}")
        for key, have_value in (("num_keys", kvb.num_keys), ("value_dim", kvb.value_dim),
                                ("precision", kvb.precision)):
            if header[key] != have_value:
                raise CorruptStreamError(f"kvb header field '{key}' is {header[key]}, the bottleneck has {have_value}")
        dec = SequentialDecoder(sections["indices"])
        idx = np.empty((n, C), dtype=np.int64)
        for c in range(C):
            idx[:, c] = dec.pull_iid(kvb.freqs[c], n)
        if (idx < 0).any() or (idx >= kvb.num_keys).any():
            raise CorruptStreamError("kvb stream decoded indices outside the codebooks")
        out = kvb.lookup(idx)
        return KVBDecoded(out.indices, out.values, out.logits)
