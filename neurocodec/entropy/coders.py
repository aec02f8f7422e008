"""Arithmetic coding on constriction: the only module that touches it.

Three families, each with a self-contained byte format (the container frames them):

* :func:`encode_symbols` / :func:`decode_symbols`: integer tensors under an empirical categorical
  model whose (rescaled) count table travels in the stream. For weights, embeddings, indices.
* :func:`encode_quantized` / :func:`decode_quantized`: per-symbol quantized Gaussian or Laplace
  (latents); the caller supplies means and scales, identical on both sides.
* :func:`encode_with_tables` / :func:`decode_with_tables`, and the streaming
  :class:`SequentialEncoder` / :class:`SequentialDecoder`: per-symbol integer frequency tables
  (pixel conditionals), where the decoder learns each table only after the previous symbols.

All use constriction's range coder (a queue: symbols are decoded in the order they were
encoded, so tables can be computed on the fly) with ``perfect=False``. Symbols are int32.
Compressed words are stored little-endian.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NoReturn

import numpy as np
import constriction

from ..container import Reader, write_uvarint
from ..errors import CorruptStreamError, UsageError
from ..runtime import lazy_import

kernels = lazy_import("neurocodec.entropy.kernels")  # Numba: imported on the first kernel call

_model = constriction.stream.model
_queue = constriction.stream.queue

MAX_ALPHABET = 1 << 20
_COUNT_BITS = 14  # count tables are rescaled to this many bits before they are stored
# Work the layer does on the way to or from the coder goes in chunks that stay in cache: the
# coder's result is copied out (decoded symbols) or its input converted (integer tables) while it
# is still there. Splitting a coder call into consecutive calls codes exactly the same bytes.
_SYMBOL_CHUNK = 1 << 16  # decoded symbols per coder call (256 KiB of int32)
# Table entries converted per coder call: 512 KiB of float64 stays in L2 while constriction reads it
# (2^14-2^16 measured best; 2^18 was about 0.1x slower against raw constriction).
_TABLE_CHUNK = 1 << 16
_F64 = np.dtype(np.float64)
_I32 = np.dtype(np.int32)
_I64 = np.iinfo(np.int64)


def _words_le(words: np.ndarray) -> np.ndarray:
    return np.asarray(words, dtype=np.uint32).astype("<u4", copy=False)


def _words_to_bytes(words: np.ndarray) -> bytes:
    return _words_le(words).tobytes()


def _bytes_to_words(data: bytes, what: str) -> np.ndarray:
    if len(data) % 4:
        raise CorruptStreamError(f"{what}: compressed data length {len(data)} is not a multiple of 4")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


class _guard:
    """Turn any failure inside constriction (its panics derive from BaseException) into a
    CorruptStreamError: a decoder fed damaged words must report, not crash. (A plain class, not
    one built per call: pixel decoders enter it once per pixel.)"""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> "_guard":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            return False
        if isinstance(exc, CorruptStreamError):
            return False
        raise CorruptStreamError(f"{self.what}: entropy decoding failed ({type(exc).__name__}: {exc})") from None


def _decode_failed(what: str, exc: BaseException) -> None:
    """What :class:`_guard` does, for the hot paths that use a bare try (cheaper than a with)."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, CorruptStreamError)):
        raise exc
    raise CorruptStreamError(f"{what}: entropy decoding failed ({type(exc).__name__}: {exc})") from None


def _zigzag(v: int) -> int:
    return (v << 1) if v >= 0 else ((-v << 1) - 1)


def _unzigzag(u: int) -> int:
    return (u >> 1) if not u & 1 else -((u + 1) >> 1)


# ------------------------------------------------------------------- (a) empirical categorical
def _shifted_counts(flat: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(offset, symbols - offset as int32, raw counts), shared by :func:`empirical_table` and
    :func:`encode_symbols`: two fused passes (min/max, then shift-and-count) where numpy needs
    four (min, max, subtract-and-cast, bincount)."""
    if flat.dtype.kind == "u" and flat.dtype.itemsize == 8:
        flat = flat.astype(np.int64)  # no uint64 symbol fits the alphabet anyway unless small
    lo, hi = kernels.min_max(flat)
    if hi - lo + 1 > MAX_ALPHABET:
        raise UsageError(f"symbol range {lo}..{hi} is wider than {MAX_ALPHABET}")
    shifted = np.empty(flat.size, dtype=np.int32)
    counts = np.zeros(hi - lo + 1, dtype=np.int64)
    kernels.shift_and_count(flat, lo, shifted, counts)
    return lo, shifted, counts


def _rescale(counts: np.ndarray) -> np.ndarray:
    counts = counts.astype(np.int64, copy=False)
    top = counts.max()
    limit = (1 << _COUNT_BITS) - 1
    if top > limit:
        scaled = (counts * limit + top // 2) // top
        counts = np.where(counts > 0, np.maximum(scaled, 1), 0)
    return counts


def empirical_table(symbols: np.ndarray) -> tuple[int, np.ndarray]:
    """(offset, counts) for the i.i.d. model of ``symbols``: counts rescaled to at most 14 bits,
    nonzero counts kept nonzero. This is exactly the table :func:`encode_symbols` stores."""
    flat = _flat_ints(symbols)
    if flat.size == 0:
        raise UsageError("no symbols to count")
    lo, _, counts = _shifted_counts(flat)
    return lo, _rescale(counts)


def _flat_ints(symbols: np.ndarray) -> np.ndarray:
    arr = np.asarray(symbols)
    if arr.dtype.kind not in "iub":
        raise UsageError(f"symbols must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "b":
        return arr.reshape(-1).astype(np.int8)
    return arr.reshape(-1) if arr.dtype.isnative else arr.reshape(-1).astype(arr.dtype.newbyteorder("="))


def _uvarints(values: np.ndarray) -> bytes:
    """``b"".join(write_uvarint(v) for v in values)`` for non-negative int64 values, in one pass."""
    buf = np.empty(10 * values.size, dtype=np.uint8)
    return buf[:kernels.put_uvarints(values, buf)].tobytes()


def _read_counts(reader: Reader, alphabet: int) -> np.ndarray:
    """``alphabet`` uvarint counts as float64. A stream the fast reader cannot take (truncated, or
    a varint over 9 bytes) is re-read by :class:`Reader`, which reports it or reads it as before."""
    values = np.empty(alphabet, dtype=np.int64)
    end = kernels.get_uvarints(np.frombuffer(reader.data, dtype=np.uint8), reader.pos, values)
    if end < 0:
        return np.array([reader.uvarint("count") for _ in range(alphabet)], dtype=np.float64)
    reader.pos = end
    return values.astype(np.float64)


def encode_symbols(symbols: np.ndarray) -> bytes:
    """Code an integer array i.i.d. under its own empirical distribution.

    Format: uvarint n; if n: zigzag uvarint offset, uvarint alphabet size, one uvarint count per
    symbol, then the range coder's words. The shape is the caller's to store.
    """
    flat = _flat_ints(symbols)
    out = bytearray(write_uvarint(flat.size))
    if flat.size == 0:
        return bytes(out)
    lo, shifted, raw = _shifted_counts(flat)
    counts = _rescale(raw)
    out += write_uvarint(_zigzag(lo)) + write_uvarint(counts.size)
    out += _uvarints(counts)
    if counts.size == 1:
        return bytes(out)
    model = _model.Categorical(counts.astype(np.float64), perfect=False)
    enc = _queue.RangeEncoder()
    enc.encode(shifted, model)
    # joined from the words' own buffer: a bytes copy of them first costs a fresh allocation
    return b"".join((out, _words_le(enc.get_compressed())))


def decode_symbols(data: bytes, count: int | None = None, max_symbols: int | None = None) -> np.ndarray:
    """Inverse of :func:`encode_symbols`: a flat int64 array.

    Pass ``count`` (from the shape in your header) and the stream must hold exactly that many
    symbols, or ``max_symbols`` as an upper bound. Without either the count is capped at
    2**24 + 4096 per stored byte: skewed streams can legitimately hold far more symbols than
    bytes, but a damaged count cannot ask for gigabytes.
    """
    reader = Reader(data, "symbol stream")
    n = reader.uvarint("symbol count")
    if count is not None and n != count:
        raise CorruptStreamError(f"symbol stream holds {n} symbols, expected {count}")
    limit = max_symbols if max_symbols is not None else (1 << 24) + 4096 * len(data)
    if count is None and n > limit:
        raise CorruptStreamError(f"symbol stream declares {n} symbols, more than {limit} plausible")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lo = _unzigzag(reader.uvarint("symbol offset"))
    alphabet = reader.uvarint("alphabet size", limit=reader.remaining)
    if alphabet < 1:
        raise CorruptStreamError("symbol stream has an empty alphabet")
    counts = _read_counts(reader, alphabet)
    if not (_I64.min <= lo and lo + alphabet - 1 <= _I64.max):
        raise CorruptStreamError(f"symbol stream offset {lo} is out of the int64 range")
    if alphabet == 1:
        if reader.remaining:
            raise CorruptStreamError("symbol stream has trailing bytes")
        return np.full(n, lo, dtype=np.int64)
    if not counts.any():
        raise CorruptStreamError("symbol stream has an all-zero count table")
    words = _bytes_to_words(reader.data[reader.pos:], "symbol stream")  # one copy, not two
    with _guard("symbol stream"):
        out = np.empty(n, dtype=np.int64)
        model = _model.Categorical(counts, perfect=False)
        ok = _decode_iid_into(_queue.RangeDecoder(words), model, out, lo, alphabet)
    if not ok:
        raise CorruptStreamError("symbol stream decoded out-of-range symbols")
    return out


def _decode_iid_into(dec, model, out: np.ndarray, lo: int, alphabet: int) -> bool:
    """Decode ``out.size`` i.i.d. symbols into ``out`` as int64 plus ``lo``, a cache-sized chunk
    per coder call; False if one fell outside ``0..alphabet-1``."""
    ok = True
    for i in range(0, out.size, _SYMBOL_CHUNK):
        j = min(out.size, i + _SYMBOL_CHUNK)
        ok &= kernels.unshift(dec.decode(model, j - i), lo, alphabet, out[i:j])
    return ok


# --------------------------------------------------------- (b) quantized Gaussian / Laplace
_FAMILIES = {"gaussian": _model.QuantizedGaussian, "laplace": _model.QuantizedLaplace}
MIN_SCALE = 1e-3  # constriction panics on scale 0; scales are clamped to this on both sides


def _family(name: str, lo: int, hi: int):
    if name not in _FAMILIES:
        raise UsageError(f"unknown family '{name}' (known: {', '.join(_FAMILIES)})")
    if lo >= hi:
        raise UsageError("need lo < hi")
    return _FAMILIES[name](int(lo), int(hi))


def _params(means: np.ndarray, scales: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    means = np.ascontiguousarray(np.broadcast_to(np.asarray(means, np.float64).reshape(-1) if np.ndim(means) else means, (n,)), dtype=np.float64)
    scales = np.ascontiguousarray(np.broadcast_to(np.asarray(scales, np.float64).reshape(-1) if np.ndim(scales) else scales, (n,)), dtype=np.float64)
    if not (np.isfinite(means).all() and np.isfinite(scales).all()):
        raise UsageError("means and scales must be finite")
    return means, np.maximum(scales, MIN_SCALE)


def encode_quantized(
    symbols: np.ndarray, means: np.ndarray, scales: np.ndarray, *, lo: int, hi: int, family: str = "gaussian"
) -> bytes:
    """Code integers in ``[lo, hi]`` under per-symbol quantized Gaussians/Laplacians.

    Symbols outside ``[lo, hi]`` raise :class:`UsageError` (clip first). Means and scales must be
    bit-identical at the decoder (derive them from already-decoded integers, never from float
    outputs of a network that could differ across machines).
    """
    flat = _flat_ints(symbols)
    if flat.size == 0:
        return b""
    smallest, largest = kernels.min_max(flat)
    if smallest < lo or largest > hi:
        raise UsageError(f"symbols outside [{lo}, {hi}]")
    model = _family(family, lo, hi)
    means, scales = _params(means, scales, flat.size)
    enc = _queue.RangeEncoder()
    enc.encode(flat.astype(np.int32), model, means, scales)
    return _words_to_bytes(enc.get_compressed())


def decode_quantized(
    data: bytes, means: np.ndarray, scales: np.ndarray, *, lo: int, hi: int, family: str = "gaussian", count: int
) -> np.ndarray:
    """Inverse of :func:`encode_quantized`; ``count`` symbols come back as int64."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    model = _family(family, lo, hi)
    means, scales = _params(means, scales, count)
    words = _bytes_to_words(data, "quantized stream")
    with _guard("quantized stream"):
        dec = _queue.RangeDecoder(words)
        return dec.decode(model, means, scales).astype(np.int64)


# ------------------------------------------------------------ (c) per-symbol frequency tables
def _check_tables(freqs: np.ndarray, n: int) -> np.ndarray:
    """``n`` numeric frequency rows, as an array (not converted: see :func:`_f64_chunks`)."""
    freqs = np.asarray(freqs)
    if freqs.ndim != 2 or freqs.shape[0] != n or freqs.dtype.kind not in "iuf":
        raise UsageError(f"freqs must be a numeric array of shape ({n}, alphabet); got {freqs.shape} {freqs.dtype}")
    return freqs if freqs.dtype.isnative else freqs.astype(freqs.dtype.newbyteorder("="))


def _f64_chunks(freqs: np.ndarray):
    """(start, stop, float64 C-contiguous rows) covering the checked rows ``freqs``: the array
    itself when it already is float64 and C-contiguous, else converted a cache-sized chunk at a
    time into one reused buffer, which the coder then reads from cache.

    Why so little checking: constriction validates every row itself (NaN, negative or all-zero
    rows raise ValueError, which :class:`_coding_errors` turns into a UsageError), and a pass over
    ``n x alphabet`` values costs as much as coding. Integer tables must still be >= 1 everywhere
    (what :func:`quantize_pmf` makes): a zero would be floored by constriction, not refused, so it
    is checked while they are converted anyway (a chunk at a time: a bad row is refused after the
    rows before it were coded, so abandon the coder)."""
    n, width = freqs.shape
    if freqs.dtype == _F64 and freqs.flags.c_contiguous:
        yield 0, n, freqs
        return
    step = max(1, _TABLE_CHUNK // max(width, 1))
    buf = np.empty((min(step, n), width), dtype=np.float64)
    integer = freqs.dtype.kind in "iu"
    for i in range(0, n, step):
        j = min(n, i + step)
        rows = buf[:j - i]
        if integer:
            if not kernels.int_rows_to_f64(freqs[i:j], rows):
                raise UsageError("every frequency must be >= 1 (use quantize_pmf)")
        else:
            np.copyto(rows, freqs[i:j])
        yield i, j, rows


def _symbols32(symbols: np.ndarray) -> np.ndarray:
    """Flat int32 symbols, without a copy when they already are. Wider integers are range-checked
    before the cast (a silent wrap-around would code another symbol); int32 symbols outside their
    table are refused by constriction itself."""
    arr = np.asarray(symbols)
    if arr.dtype == np.int32:
        return arr.reshape(-1)
    flat = _flat_ints(arr)
    if flat.size:
        lo, hi = kernels.min_max(flat)
        if lo < 0 or hi > np.iinfo(np.int32).max:
            raise UsageError("symbol outside its table")
    return flat.astype(np.int32)


class _coding_errors:
    """Turn constriction's refusals of caller input into UsageErrors. After one, the coder's state
    is undefined: abandon it."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, KeyError):
            raise UsageError("symbol outside its table (zero probability)") from None
        if isinstance(exc, ValueError) and not isinstance(exc, UsageError):
            raise UsageError(f"invalid frequency table ({str(exc).splitlines()[0]})") from None
        return False


class SequentialEncoder:
    """Streams symbols whose tables are known one step at a time (autoregressive models).

    ``push(symbols, freqs)`` codes ``symbols[j]`` with table ``freqs[j]`` (integer frequencies, or
    float64 ones for speed: constriction normalises each row); the decoder must ``pull`` with the
    same tables in the same order.
    """

    def __init__(self) -> None:
        self._enc = _queue.RangeEncoder()
        self._model = _model.Categorical(perfect=False)

    def push(self, symbols: np.ndarray, freqs: np.ndarray) -> None:
        if (symbols.__class__ is np.ndarray and freqs.__class__ is np.ndarray and symbols.dtype is _I32
                and freqs.dtype is _F64 and symbols.ndim == 1 and freqs.ndim == 2
                and freqs.shape[0] == symbols.shape[0] and freqs.flags.c_contiguous):
            if symbols.shape[0]:  # the common case, as constriction takes it: no conversions
                with _coding_errors():
                    self._enc.encode(symbols, self._model, freqs)
            return
        flat = _symbols32(symbols)
        if flat.size == 0:
            return
        encode, model = self._enc.encode, self._model
        with _coding_errors():
            for i, j, rows in _f64_chunks(_check_tables(freqs, flat.size)):
                encode(flat[i:j], model, rows)

    def push_iid(self, symbols: np.ndarray, freqs: np.ndarray) -> None:
        """Code many symbols under one table (1-D positive frequencies)."""
        flat = _symbols32(symbols)
        if flat.size == 0:
            return
        model = _iid_model(freqs)
        with _coding_errors():
            self._enc.encode(flat, model)

    def finish(self) -> bytes:
        return _words_to_bytes(self._enc.get_compressed())


def _iid_model(freqs: np.ndarray):
    table = np.asarray(freqs)
    if table.ndim != 1 or table.dtype.kind not in "iuf" or table.size == 0 or (table <= 0).any():
        raise UsageError("freqs must be one row of positive numbers")
    return _model.Categorical(np.ascontiguousarray(table, dtype=np.float64), perfect=False)


class SequentialDecoder:
    """Counterpart of :class:`SequentialEncoder`."""

    def __init__(self, data: bytes) -> None:
        self._words = _bytes_to_words(data, "sequential stream")
        self._model = _model.Categorical(perfect=False)
        with _guard("sequential stream"):
            self._dec = _queue.RangeDecoder(self._words)

    def pull(self, freqs: np.ndarray) -> np.ndarray:
        """The symbols (int64) of the next ``len(freqs)`` rows (see :meth:`SequentialEncoder.push`).

        Called once per pixel position by the pc decoder, so float64 C-contiguous rows go to
        constriction with nothing in between; anything else is checked and converted first."""
        if freqs.__class__ is np.ndarray and freqs.dtype is _F64 and freqs.ndim == 2 and freqs.flags.c_contiguous:
            try:
                return self._dec.decode(self._model, freqs).astype(np.int64)
            except BaseException as exc:
                _decode_failed("sequential stream", exc)
        freqs = np.asarray(freqs)
        tables = _check_tables(freqs, freqs.shape[0] if freqs.ndim == 2 else -1)
        out = np.empty(tables.shape[0], dtype=np.int64)
        decode, model = self._dec.decode, self._model
        try:
            for i, j, rows in _f64_chunks(tables):
                out[i:j] = decode(model, rows)
        except UsageError:  # a table refused while converting it: the caller's, not the stream's
            raise
        except BaseException as exc:
            _decode_failed("sequential stream", exc)
        return out

    def bare_pull(self) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`pull` without its Python frame, for a compiled loop that calls it once per pixel:
        float64 C-contiguous rows (the caller guarantees it) -> int32 symbols. A decoding failure
        raises constriction's own exception: hand it to :meth:`failed`."""
        return functools.partial(self._dec.decode, self._model)

    @staticmethod
    def failed(exc: BaseException) -> NoReturn:
        """Raise what :meth:`pull` would have raised for ``exc`` (from :meth:`bare_pull`)."""
        _decode_failed("sequential stream", exc)
        raise exc  # unreachable: _decode_failed always raises

    def pull_iid(self, freqs: np.ndarray, count: int) -> np.ndarray:
        model = _iid_model(freqs)
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        with _guard("sequential stream"):  # a damaged count fails in np.empty: corrupt too
            out = np.empty(count, dtype=np.int64)
            ok = _decode_iid_into(self._dec, model, out, 0, np.asarray(freqs).size)
        if not ok:
            raise CorruptStreamError("sequential stream decoded out-of-range symbols")
        return out


def encode_with_tables(symbols: np.ndarray, freqs: np.ndarray) -> bytes:
    """Code ``symbols[j]`` under integer table ``freqs[j]`` (all tables known up front)."""
    enc = SequentialEncoder()
    enc.push(symbols, freqs)
    return enc.finish()


def decode_with_tables(data: bytes, freqs: np.ndarray) -> np.ndarray:
    return SequentialDecoder(data).pull(freqs)


__all__ = [
    "MIN_SCALE",
    "SequentialDecoder",
    "SequentialEncoder",
    "decode_quantized",
    "decode_symbols",
    "decode_with_tables",
    "empirical_table",
    "encode_quantized",
    "encode_symbols",
    "encode_with_tables",
]
