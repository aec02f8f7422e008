"""Entropy coding: the only place neurocodec touches constriction. See :mod:`.coders`."""
from __future__ import annotations

from . import coders
from .coders import (
    MIN_SCALE,
    SequentialDecoder,
    SequentialEncoder,
    decode_quantized,
    decode_symbols,
    decode_with_tables,
    empirical_table,
    encode_quantized,
    encode_symbols,
    encode_with_tables,
)

_TABLES = ("DEFAULT_PRECISION", "pmf_to_freqs_row", "quantize_pmf")


def __getattr__(name: str):
    """The :mod:`.tables` names, loaded when first asked for: they are Numba functions, and a
    caller on the compiled kernels (a pc encode) never needs them (nor Numba's import time)."""
    if name in _TABLES:
        from . import tables

        return getattr(tables, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [*coders.__all__, *_TABLES]
