"""The Numba passes around the coder calls of :mod:`.coders`: range, counts, shifts, table
conversion and varint tables.

Why Numba: constriction codes a symbol in a few nanoseconds, so every extra numpy pass over the
symbols (a min, a max, a cast, a bincount, an add) costs a visible fraction of the coding time.
These kernels fuse what numpy would do in several passes into one, and work on cache-sized chunks
where the result goes straight to the coder. They compute exactly what the numpy expressions they
replace computed: the coded bytes do not depend on them being used.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def min_max(flat: np.ndarray) -> tuple[int, int]:
    lo = flat[0]
    hi = flat[0]
    for i in range(flat.shape[0]):  # selects, not min()/max(): LLVM vectorises this form best
        v = flat[i]
        lo = v if v < lo else lo
        hi = v if v > hi else hi
    return int(lo), int(hi)


@njit(cache=True)
def shift_and_count(flat: np.ndarray, lo: int, shifted: np.ndarray, counts: np.ndarray) -> None:
    """``shifted = flat - lo`` (int32) and ``counts += bincount(shifted)`` in one pass.

    ``hi - lo < 2**20`` was checked, so every ``x - lo`` (in int64) fits int32. Four partial
    histograms, so that runs of one symbol (skewed data) do not serialise on one counter."""
    n = flat.shape[0]
    part = np.zeros((4, counts.shape[0]), dtype=np.int64)
    m = n - n % 4
    for i in range(0, m, 4):
        a = np.int64(flat[i]) - lo
        b = np.int64(flat[i + 1]) - lo
        c = np.int64(flat[i + 2]) - lo
        d = np.int64(flat[i + 3]) - lo
        shifted[i] = a
        shifted[i + 1] = b
        shifted[i + 2] = c
        shifted[i + 3] = d
        part[0, a] += 1
        part[1, b] += 1
        part[2, c] += 1
        part[3, d] += 1
    for i in range(m, n):
        a = np.int64(flat[i]) - lo
        shifted[i] = a
        part[0, a] += 1
    for s in range(counts.shape[0]):
        counts[s] += part[0, s] + part[1, s] + part[2, s] + part[3, s]


@njit(cache=True)
def unshift(decoded: np.ndarray, lo: int, alphabet: int, out: np.ndarray) -> bool:
    """``out = decoded + lo`` (int64); False if a decoded symbol is outside ``0..alphabet-1``."""
    bad = False
    for i in range(decoded.shape[0]):
        s = np.int64(decoded[i])
        bad |= (s < 0) | (s >= alphabet)
        out[i] = s + lo
    return not bad


@njit(cache=True)
def int_rows_to_f64(src: np.ndarray, dst: np.ndarray) -> bool:
    """Copy integer frequency rows into float64 ones; False if any frequency is < 1."""
    lo = 1
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            v = src[i, j]
            dst[i, j] = v
            lo = min(lo, v)
    return lo >= 1


@njit(cache=True)
def put_uvarints(values: np.ndarray, out: np.ndarray) -> int:
    """LEB128 of each non-negative int64 into ``out`` (room for 10 bytes a value); bytes used."""
    k = 0
    for i in range(values.shape[0]):
        v = np.uint64(values[i])
        while v >= 0x80:
            out[k] = np.uint8((v & 0x7F) | 0x80)
            v >>= np.uint64(7)
            k += 1
        out[k] = np.uint8(v)
        k += 1
    return k


@njit(cache=True)
def get_uvarints(buf: np.ndarray, pos: int, out: np.ndarray) -> int:
    """Read ``out.size`` varints from ``buf[pos:]``; the position after them, or -1 if the data
    ends early or a varint is longer than 9 bytes (the caller re-reads slowly to report it)."""
    n = buf.shape[0]
    for i in range(out.shape[0]):
        value = np.int64(0)
        shift = 0
        done = False
        for _ in range(9):  # 63 bits: fits int64
            if pos >= n:
                return -1
            byte = np.int64(buf[pos])
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                done = True
                break
            shift += 7
        if not done:
            return -1
        out[i] = value
    return pos
