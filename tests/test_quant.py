"""neurocodec.quant: quantization, side information, global magnitude pruning."""
from __future__ import annotations

import numpy as np
import pytest

from neurocodec.errors import CorruptStreamError, UsageError
from neurocodec.quant import (
    choose_axis,
    dequantize,
    global_magnitude_masks,
    quantize,
    scales_from_bytes,
    scales_to_bytes,
)


def test_symmetric_per_channel_error_bound_and_zeros():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 4, 3, 3)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)[:, None, None, None]
    w[0, 0] = 0.0
    qt = quantize(w, 8)
    assert qt.per_channel and qt.scale.shape == (8,) and qt.scale.dtype == np.float16
    assert qt.q.dtype == np.int32 and np.abs(qt.q).max() <= 127
    back = qt.dequantize()
    # error per channel at most half a step
    step = qt.scale.astype(np.float32)[:, None, None, None]
    assert np.all(np.abs(back - w) <= step / 2 + 1e-6)
    assert np.all(back[0, 0] == 0.0) and np.all(qt.q[0, 0] == 0)
    # per-channel scales follow the channel magnitudes
    assert qt.scale[7] > qt.scale[0]


def test_affine_uses_full_range_and_dequantize_is_the_same_function():
    rng = np.random.default_rng(1)
    x = (rng.random((3, 50)) * 4 + 10).astype(np.float32)
    qt = quantize(x, 6, per_channel=True, symmetric=False)
    assert qt.q.min() >= 0 and qt.q.max() <= 63 and qt.q.max() >= 62
    assert np.array_equal(qt.dequantize(), dequantize(qt.q, qt.scale, qt.offset, True))
    assert np.abs(qt.dequantize() - x).max() < 4 / 63


def test_constant_and_all_zero_tensors():
    z = np.zeros((4, 20), np.float32)
    for sym in (True, False):
        qt = quantize(z, 8, symmetric=sym)
        assert np.array_equal(qt.dequantize(), z)
    c = np.full((20,), 3.0, np.float32)
    assert np.allclose(quantize(c, 8, symmetric=False).dequantize(), 3.0, atol=2e-3)


def test_axis_rule_and_bad_bits():
    assert choose_axis((16, 8, 3, 3)) and not choose_axis((16,)) and not choose_axis((16, 2))
    with pytest.raises(UsageError):
        quantize(np.ones(4, np.float32), 1)


def test_scale_bytes_round_trip_and_corruption():
    a, b = np.array([1.5, 2.0], np.float16), np.array([0.25], np.float16)
    data = scales_to_bytes([a, b])
    ra, rb = scales_from_bytes(data, [2, 1])
    assert np.array_equal(ra, a) and np.array_equal(rb, b)
    with pytest.raises(CorruptStreamError):
        scales_from_bytes(data[:-1], [2, 1])
    with pytest.raises(CorruptStreamError):
        scales_from_bytes(np.array([np.inf, 1, 1], np.float16).tobytes(), [2, 1])


def test_global_magnitude_masks_prune_the_smallest_overall():
    rng = np.random.default_rng(2)
    big = rng.normal(size=(100,)).astype(np.float32) * 10
    small = rng.normal(size=(100,)).astype(np.float32) * 0.1
    masks = global_magnitude_masks([big, small], 0.3)
    kept = masks[0].sum() + masks[1].sum()
    assert kept == 140
    # one global threshold: the small tensor loses far more than the big one
    assert masks[1].sum() < masks[0].sum()
    assert np.abs(small[~masks[1]]).max() <= np.abs(big[masks[0]]).min()
    assert all(m.all() for m in global_magnitude_masks([big], 0.0))
    with pytest.raises(UsageError):
        global_magnitude_masks([big], 1.0)
