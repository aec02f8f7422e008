"""Deterministic probability -> integer frequency tables, shared by every encoder and decoder.

A decode must never depend on float rounding that could differ between the encoding and decoding
machine. So every probability a codec computes is first turned into integer frequencies by
:func:`quantize_pmf` (or the Numba twin :func:`pmf_to_freqs_row` called from inside kernels), in
float64, sequentially, without fastmath; only those integers reach the arithmetic coder.

The cumulative table is ``C(v) = floor(F(v) * (2^P - A)) + v`` with ``F`` the running sum of the
normalised pmf: strictly increasing, so every symbol keeps a frequency >= 1, and ``C(A) = 2^P``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..errors import UsageError

DEFAULT_PRECISION = 16  # bits; constriction's coders accept up to 24


@njit(cache=True, fastmath=False)
def pmf_to_freqs_row(pmf: np.ndarray, out: np.ndarray, precision: int) -> bool:
    """Fill ``out`` (int32, len A) with frequencies summing to ``2**precision``.

    Returns False (leaving ``out`` undefined) if the pmf has a negative, NaN or infinite entry or
    sums to zero; callers turn that into an error.
    """
    n = pmf.shape[0]
    total = 0.0
    for v in range(n):
        p = pmf[v]
        if not (p >= 0.0) or p == np.inf:
            return False
        total += p
    if not (total > 0.0) or total == np.inf:
        return False
    budget = (1 << precision) - n
    cum = 0.0
    prev = 0
    for v in range(n - 1):
        cum += pmf[v]
        c = np.int64(np.floor(cum / total * budget)) + v + 1
        out[v] = c - prev
        prev = c
    out[n - 1] = (1 << precision) - prev
    return True


@njit(cache=True, fastmath=False)
def _quantize_rows(pmf: np.ndarray, precision: int, out: np.ndarray) -> np.int64:
    for i in range(pmf.shape[0]):
        if not pmf_to_freqs_row(pmf[i], out[i], precision):
            return i
    return -1


def quantize_pmf(pmf: np.ndarray, precision: int = DEFAULT_PRECISION) -> np.ndarray:
    """Integer frequencies (int32, same shape) for one pmf ``(A,)`` or many ``(..., A)``.

    Every frequency is >= 1 and each row sums to exactly ``2**precision``.
    """
    pmf = np.asarray(pmf, dtype=np.float64)
    if pmf.ndim == 0 or pmf.shape[-1] < 1:
        raise UsageError("pmf must have a last axis of length >= 1")
    alphabet = pmf.shape[-1]
    if not 1 <= precision <= 24 or alphabet > (1 << precision) // 2:
        raise UsageError(f"precision {precision} too small for an alphabet of {alphabet}")
    flat = np.ascontiguousarray(pmf.reshape(-1, alphabet))
    out = np.empty(flat.shape, dtype=np.int32)
    bad = _quantize_rows(flat, precision, out)
    if bad >= 0:
        raise UsageError(f"pmf row {bad} is not a distribution (negative, NaN, infinite or all zero)")
    return out.reshape(pmf.shape)
