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
from .tables import DEFAULT_PRECISION, pmf_to_freqs_row, quantize_pmf

__all__ = [*coders.__all__, "DEFAULT_PRECISION", "pmf_to_freqs_row"]
