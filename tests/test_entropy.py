from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurocodec import entropy
from neurocodec.errors import CorruptStreamError, UsageError


def entropy_bytes(x: np.ndarray) -> float:
    _, counts = np.unique(x, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum() / 8)


@pytest.mark.parametrize("dist", ["geometric", "uniform16", "peaked"])
def test_rate_within_one_percent_of_entropy_on_1m_symbols(dist):
    rng = np.random.default_rng(1)
    n = 1_000_000
    x = {
        "geometric": rng.geometric(0.2, n) - 1,
        "uniform16": rng.integers(-8, 8, n),
        "peaked": rng.choice(5, n, p=[0.96, 0.01, 0.01, 0.01, 0.01]),
    }[dist]
    blob = entropy.encode_symbols(x)
    assert np.array_equal(entropy.decode_symbols(blob), x)
    h = entropy_bytes(x)
    assert len(blob) <= 1.01 * h + 64, (len(blob), h)


def test_constant_and_empty_and_single():
    for x in (np.zeros(0, np.int64), np.full(1000, -7), np.array([3])):
        blob = entropy.encode_symbols(x)
        assert np.array_equal(entropy.decode_symbols(blob), x)
    assert len(entropy.encode_symbols(np.full(10_000, 5))) < 8


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(-2000, 2000)))
def test_symbols_round_trip_property(x):
    assert np.array_equal(entropy.decode_symbols(entropy.encode_symbols(x)), x)


def test_symbols_reject_floats_and_wide_ranges():
    with pytest.raises(UsageError):
        entropy.encode_symbols(np.array([0.5]))
    with pytest.raises(UsageError):
        entropy.encode_symbols(np.array([0, 2**22]))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_decode_symbols_garbage_raises_corrupt_only(data):
    try:
        entropy.decode_symbols(data)
    except CorruptStreamError:
        pass


def test_decode_symbols_refuses_huge_counts():
    from neurocodec.container import write_uvarint

    with pytest.raises(CorruptStreamError):
        entropy.decode_symbols(write_uvarint(10**12) + b"\x00")
    with pytest.raises(CorruptStreamError, match="expected 5"):
        entropy.decode_symbols(entropy.encode_symbols(np.arange(4)), count=5)


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_quantized_families_round_trip_and_rate(family):
    rng = np.random.default_rng(2)
    n = 50_000
    means = rng.normal(0, 5, n)
    scales = rng.uniform(0.3, 6, n)
    x = np.clip(np.round(means + rng.normal(0, 1, n) * scales), -60, 60).astype(np.int64)
    blob = entropy.encode_quantized(x, means, scales, lo=-60, hi=60, family=family)
    back = entropy.decode_quantized(blob, means, scales, lo=-60, hi=60, family=family, count=n)
    assert np.array_equal(back, x)
    # a model that fits costs fewer bits than coding the same values with the wrong scales
    wrong = entropy.encode_quantized(x, means, np.full(n, 40.0), lo=-60, hi=60, family=family)
    assert len(blob) < len(wrong)


def test_quantized_zero_scales_are_clamped_not_panicking():
    x = np.array([0, 1, -1])
    blob = entropy.encode_quantized(x, np.zeros(3), np.zeros(3), lo=-4, hi=4)
    assert np.array_equal(entropy.decode_quantized(blob, np.zeros(3), np.zeros(3), lo=-4, hi=4, count=3), x)


def test_quantized_out_of_range_is_usage_error():
    with pytest.raises(UsageError):
        entropy.encode_quantized(np.array([10]), 0.0, 1.0, lo=-4, hi=4)


def test_quantize_pmf_exact_sums_and_floor():
    rng = np.random.default_rng(3)
    pmf = rng.dirichlet(np.full(256, 0.05), size=500)
    pmf[0] = 0
    pmf[0, 17] = 1.0
    freqs = entropy.quantize_pmf(pmf, precision=16)
    assert freqs.dtype == np.int32
    assert (freqs.sum(axis=1) == 1 << 16).all()
    assert freqs.min() >= 1
    assert freqs[0, 17] == (1 << 16) - 255


def test_quantize_pmf_is_scale_invariant_and_deterministic():
    rng = np.random.default_rng(4)
    pmf = rng.random((50, 10))
    a = entropy.quantize_pmf(pmf)
    b = entropy.quantize_pmf(pmf.copy())
    assert np.array_equal(a, b)
    # proportional to pmf up to the +1 floor: frequencies stay within 1 of the exact scaling
    exact = pmf / pmf.sum(axis=1, keepdims=True) * ((1 << 16) - 10)
    assert np.abs(a - 1 - exact).max() < 2


@pytest.mark.parametrize("bad", [[0.0, 0.0], [1.0, np.nan], [1.0, -0.5], [np.inf, 1.0]])
def test_quantize_pmf_rejects_non_distributions(bad):
    with pytest.raises(UsageError):
        entropy.quantize_pmf(np.array(bad))


def test_numba_row_function_matches_vectorised():
    rng = np.random.default_rng(5)
    pmf = rng.random(256)
    out = np.empty(256, np.int32)
    assert entropy.pmf_to_freqs_row(pmf, out, 16)
    assert np.array_equal(out, entropy.quantize_pmf(pmf))


def test_tables_and_sequential_coding():
    rng = np.random.default_rng(6)
    pmf = rng.dirichlet(np.full(256, 0.1), size=(40, 30))
    freqs = entropy.quantize_pmf(pmf)
    x = np.array([[rng.choice(256, p=f / f.sum()) for f in row] for row in freqs])
    enc = entropy.SequentialEncoder()
    for step in range(30):  # position-major, as an autoregressive decoder would pull
        enc.push(x[:, step], freqs[:, step])
    enc.push_iid(np.array([1, 2, 3]), np.array([5, 5, 5, 5]))
    blob = enc.finish()
    dec = entropy.SequentialDecoder(blob)
    got = np.stack([dec.pull(freqs[:, step]) for step in range(30)], axis=1)
    assert np.array_equal(got, x)
    assert np.array_equal(dec.pull_iid(np.array([5, 5, 5, 5]), 3), [1, 2, 3])
    # rate close to the model's own cross-entropy
    p = freqs / (1 << 16)
    ideal = -np.log2(np.take_along_axis(p, x[..., None], axis=-1)).sum() / 8
    assert len(blob) <= ideal * 1.01 + 64
    one = entropy.encode_with_tables(x.reshape(-1), freqs.reshape(-1, 256))
    assert np.array_equal(entropy.decode_with_tables(one, freqs.reshape(-1, 256)), x.reshape(-1))


def test_table_checks():
    with pytest.raises(UsageError):
        entropy.encode_with_tables(np.array([0, 1]), np.ones((3, 4), np.int32))
    with pytest.raises(UsageError):
        entropy.encode_with_tables(np.array([0]), np.zeros((1, 4), np.int32))
    with pytest.raises(UsageError):
        entropy.encode_with_tables(np.array([4]), np.ones((1, 4), np.int32))
    with pytest.raises(CorruptStreamError):
        entropy.SequentialDecoder(b"abc")


def test_float64_tables_code_like_their_integer_twins_and_bad_input_is_refused():
    rng = np.random.default_rng(3)
    freqs = entropy.quantize_pmf(rng.dirichlet(np.full(40, 0.3), size=500))
    x = (np.cumsum(freqs, 1) < rng.integers(0, 1 << 16, 500)[:, None]).sum(1)
    blob = entropy.encode_with_tables(x, freqs)
    assert entropy.encode_with_tables(x.astype(np.int32), freqs.astype(np.float64)) == blob
    assert np.array_equal(entropy.decode_with_tables(blob, freqs.astype(np.float64)), x)
    for symbols, tables in ((np.array([40]), freqs[:1]), (np.array([-1]), freqs[:1]), (np.array([2**33]), freqs[:1]),
                            (np.array([1], np.int32), np.zeros((1, 4))), (np.array([1]), np.zeros((1, 4), int)),
                            (np.array([1]), np.full((1, 4), np.nan))):
        with pytest.raises(UsageError):
            entropy.encode_with_tables(symbols, tables)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint32, np.bool_])
def test_iid_symbols_of_every_integer_type_at_their_extremes(dtype):
    info = np.iinfo(dtype) if dtype is not np.bool_ else None
    lo, hi = (0, 1) if info is None else (max(info.min, -300), min(info.max, 300))
    x = np.random.default_rng(0).integers(lo, hi + 1, 3000).astype(dtype)
    x[:2] = (lo, hi)
    back = entropy.decode_symbols(entropy.encode_symbols(x))
    assert np.array_equal(back, x.astype(np.int64))


# ------------------------------------------- the layer codes exactly what raw constriction codes
def test_iid_words_are_raw_constrictions_and_decode_across_chunks():
    from neurocodec.entropy import baseline, coders

    x = np.random.default_rng(7).geometric(0.1, 3 * coders._SYMBOL_CHUNK + 17) - 1 + 1000
    blob = entropy.encode_symbols(x)
    lo, counts = entropy.empirical_table(x)
    words = baseline.encode_iid((x - lo).astype(np.int32), counts.astype(np.float64))
    assert blob.endswith(words.astype("<u4").tobytes())
    assert np.array_equal(entropy.decode_symbols(blob), x)
    assert entropy.encode_symbols((x - lo).astype(np.uint16)).endswith(words.astype("<u4").tobytes())


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16, np.float32])
def test_table_words_are_raw_constrictions_across_chunks(dtype):
    from neurocodec.entropy import baseline, coders

    rows = 2 * (coders._TABLE_CHUNK // 256) + 5
    rng = np.random.default_rng(8)
    freqs = entropy.quantize_pmf(rng.dirichlet(np.full(256, 0.2), size=rows), precision=15)
    x = (np.cumsum(freqs, 1) < rng.integers(0, 1 << 15, rows)[:, None]).sum(1)
    words = baseline.encode_tables(x.astype(np.int32), freqs.astype(np.float64)).astype("<u4").tobytes()
    given = freqs.astype(dtype)
    assert entropy.encode_with_tables(x, given) == words
    assert entropy.encode_with_tables(x, np.asfortranarray(given)) == words
    assert np.array_equal(entropy.decode_with_tables(words, given), x)
    bad = freqs.copy()
    bad[-1, 3] = 0  # in the last chunk: still refused
    with pytest.raises(UsageError, match=">= 1"):
        entropy.encode_with_tables(x, bad)
    with pytest.raises(UsageError, match=">= 1"):
        entropy.decode_with_tables(words, bad)


def test_pull_takes_any_array_like_and_refuses_bad_shapes():
    freqs = np.array([[1, 2, 3], [3, 2, 1]])
    blob = entropy.encode_with_tables(np.array([2, 0]), freqs)
    assert entropy.SequentialDecoder(blob).pull(freqs.tolist()).tolist() == [2, 0]
    assert entropy.SequentialDecoder(blob).pull(freqs.astype(np.float64)).dtype == np.int64
    with pytest.raises(UsageError):
        entropy.SequentialDecoder(blob).pull(np.ones(3))
    with pytest.raises(CorruptStreamError):
        entropy.SequentialDecoder(blob).pull(np.full((2, 3), np.nan))


@pytest.mark.parametrize("x", [[0, 2**20 - 1], [2**20 - 1, 0], [-2**63, -2**63 + 5], [2**63 - 1, 2**63 - 3, 2**63 - 1]])
def test_symbol_ranges_at_the_edges_of_int64_and_the_alphabet(x):
    x = np.array(x, dtype=np.int64)
    assert np.array_equal(entropy.decode_symbols(entropy.encode_symbols(x)), x)


@pytest.mark.parametrize("x", [[0, 2**20], [2**20, 0], [5, 5, 5, -2**40], [-2**63, 2**63 - 1]])
def test_symbol_ranges_just_too_wide_are_refused(x):
    with pytest.raises(UsageError, match="wider than"):
        entropy.encode_symbols(np.array(x, dtype=np.int64))


def test_overlong_count_varints_still_decode_and_bad_offsets_are_corrupt():
    from neurocodec.container import write_uvarint

    x = np.array([0, 1, 1, 0, 1])
    blob = entropy.encode_symbols(x)
    head = write_uvarint(5) + write_uvarint(0) + write_uvarint(2)
    counts = write_uvarint(2) + write_uvarint(3)
    assert blob.startswith(head + counts)
    overlong = bytes([0x82] + [0x80] * 8 + [0x00]) + bytes([0x83] + [0x80] * 8 + [0x00])  # 10-byte varints
    assert np.array_equal(entropy.decode_symbols(head + overlong + blob[len(head + counts):]), x)
    huge = write_uvarint(5) + write_uvarint(2**64) + write_uvarint(2) + blob[len(head):]
    with pytest.raises(CorruptStreamError, match="int64"):
        entropy.decode_symbols(huge)


def test_big_endian_inputs_code_like_native_ones():
    rng = np.random.default_rng(9)
    x = rng.integers(-40, 40, 5000)
    assert entropy.encode_symbols(x.astype(">i4")) == entropy.encode_symbols(x)
    freqs = entropy.quantize_pmf(rng.dirichlet(np.ones(8), size=300))
    y = (np.cumsum(freqs, 1) < rng.integers(0, 1 << 16, 300)[:, None]).sum(1)
    blob = entropy.encode_with_tables(y, freqs)
    assert entropy.encode_with_tables(y.astype(">i8"), freqs.astype(">i4")) == blob
    assert np.array_equal(entropy.decode_with_tables(blob, freqs.astype(">f8")), y)
