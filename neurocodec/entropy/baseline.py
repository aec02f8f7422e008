"""Raw constriction calls, the baseline the entropy benchmark measures this layer against.

Why here: ``neurocodec.entropy`` is the only package that touches constriction, so the baseline
lives in it too. Each function codes already-prepared arrays (int32 symbols, float64 tables) with
no checks and no copies: the fastest use of constriction this layer could possibly make.
"""
from __future__ import annotations

import numpy as np
import constriction

_model = constriction.stream.model
_queue = constriction.stream.queue


def encode_iid(symbols32: np.ndarray, counts: np.ndarray) -> np.ndarray:
    enc = _queue.RangeEncoder()
    enc.encode(symbols32, _model.Categorical(counts, perfect=False))
    return enc.get_compressed()


def decode_iid(words: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
    return _queue.RangeDecoder(words).decode(_model.Categorical(counts, perfect=False), n)


def encode_gaussian(symbols32: np.ndarray, means: np.ndarray, scales: np.ndarray, lo: int, hi: int) -> np.ndarray:
    enc = _queue.RangeEncoder()
    enc.encode(symbols32, _model.QuantizedGaussian(lo, hi), means, scales)
    return enc.get_compressed()


def decode_gaussian(words: np.ndarray, means: np.ndarray, scales: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return _queue.RangeDecoder(words).decode(_model.QuantizedGaussian(lo, hi), means, scales)


def encode_tables(symbols32: np.ndarray, tables: np.ndarray) -> np.ndarray:
    enc = _queue.RangeEncoder()
    enc.encode(symbols32, _model.Categorical(perfect=False), tables)
    return enc.get_compressed()


def decode_tables(words: np.ndarray, tables: np.ndarray) -> np.ndarray:
    return _queue.RangeDecoder(words).decode(_model.Categorical(perfect=False), tables)
