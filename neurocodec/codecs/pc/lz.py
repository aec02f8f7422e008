"""The ``lz`` mode of ``pc``: PNG-style row prediction + LZMA, for content a circuit cannot model.

Why a second mode: the ``photo`` model is a context-mixing pixel predictor; on synthetic content that
repeats exactly (a chessboard, a screenshot of flat windows and text lines) what pays is *matching*
long runs of earlier bytes, which no per-pixel model does: ``photo`` spent 5.5x PNG's bytes on
scikit-image's chessboard and 1.7x on a synthetic screen. An LZ coder over predicted rows is the
classical answer (PNG is deflate over such rows); LZMA's larger window and optimal parsing beat
deflate on exactly that content. The encoder codes both modes and keeps the smaller file
(:mod:`.codec`), so a photo keeps its circuit and a screenshot gets its matches.

Stream: one filter byte per row (0 none, 1 sub, 2 up, 3 paeth; chosen per row by PNG's
minimum-sum-of-absolute-residuals heuristic), then the residual bytes ``(x - prediction) mod 256``,
rows top to bottom; all of it LZMA2-compressed in raw format (no container header: the filter
chain is fixed here). The decoder refuses a payload that decompresses to anything but exactly
``height x (1 + width x channels)`` bytes, or names a filter it does not know, so a corrupt or
hostile section is a :class:`CorruptStreamError`, never a bomb or a wrong image.
"""
from __future__ import annotations

import lzma

import numpy as np
from numba import njit

from ...errors import CorruptStreamError

#: LZMA2 in raw format, no header bytes (the chain is fixed by this module). Preset 6: its 8 MiB
#: dictionary is what the decoder allocates (preset 9 would take 64 MiB), and on the simple-content
#: set it was within 2 % of 9-extreme's size (chessboard 192 against 189 bytes) at a third of the time
FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6}]
_PRESET_DICT = 1 << 23  # preset 6's dictionary, the most an encoder may use for this decoder
NONE, SUB, UP, PAETH = 0, 1, 2, 3


def _rows(img: np.ndarray) -> tuple[np.ndarray, int]:
    """``H, W*C`` uint8 rows and the byte distance to the left neighbour (C)."""
    ch = 1 if img.ndim == 2 else img.shape[2]
    return np.ascontiguousarray(img).reshape(img.shape[0], -1), ch


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """PNG's Paeth predictor on int16 arrays: whichever of left, up, up-left is nearest a + b - c."""
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filter_image(img: np.ndarray) -> bytes:
    """The filtered rows (filter byte + residuals per row) of a ``H,W`` or ``H,W,C`` uint8 image.
    Every filter is computed for every row at once (the encoder sees the original neighbours)."""
    rows, ch = _rows(img)
    x = rows.astype(np.int16)
    left = np.zeros_like(x)
    left[:, ch:] = x[:, :-ch]
    up = np.zeros_like(x)
    up[1:] = x[:-1]
    upleft = np.zeros_like(x)
    upleft[1:, ch:] = x[:-1, :-ch]
    preds = np.stack([np.zeros_like(x), left, up, _paeth(left, up, upleft)])  # 4, H, W*C
    res = ((x[None] - preds) & 0xFF).astype(np.uint8)
    signed = res.astype(np.int8).astype(np.int32)
    cost = np.abs(signed).sum(axis=2)  # 4, H: PNG's heuristic
    choice = np.argmin(cost, axis=0).astype(np.uint8)
    chosen = res[choice, np.arange(rows.shape[0])]
    return np.concatenate([choice[:, None], chosen], axis=1).tobytes()


@njit(cache=True)
def _unfilter(data: np.ndarray, h: int, n: int, ch: int) -> np.ndarray:  # pragma: no cover - numba
    out = np.zeros((h, n), np.uint8)
    for r in range(h):
        f = data[r * (n + 1)]
        base = r * (n + 1) + 1
        for i in range(n):
            a = np.int32(out[r, i - ch]) if i >= ch else np.int32(0)
            b = np.int32(out[r - 1, i]) if r > 0 else np.int32(0)
            if f == 0:
                p = np.int32(0)
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            else:
                c = np.int32(out[r - 1, i - ch]) if (r > 0 and i >= ch) else np.int32(0)
                q = a + b - c
                pa, pb, pc = abs(q - a), abs(q - b), abs(q - c)
                p = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
            out[r, i] = np.uint8((np.int32(data[base + i]) + p) & 0xFF)
    return out


def unfilter_image(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`filter_image` for an image of ``shape`` (checked: size and filter bytes)."""
    h = shape[0]
    ch = 1 if len(shape) == 2 else shape[2]
    n = shape[1] * ch
    if len(data) != h * (n + 1):
        raise CorruptStreamError(f"lz stream holds {len(data)} bytes, expected {h * (n + 1)}")
    arr = np.frombuffer(data, np.uint8)
    if h and arr[:: n + 1].max() > PAETH:
        raise CorruptStreamError("lz stream names an unknown row filter")
    return _unfilter(arr, h, n, ch).reshape(shape)


def compress(img: np.ndarray) -> bytes:
    """The ``lz`` section of an image: its filtered rows, LZMA2-compressed (raw format)."""
    data = filter_image(img)
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_encoder_filters(len(data)))


def _encoder_filters(size: int) -> list[dict]:
    """FILTERS with the dictionary cut to the input's size (a power of two, 4 KiB at least). Why:
    the same bytes, since no match can reach back past the input's start (checked on 300 digits
    and the scikit-image pictures: identical), while the encoder no longer sets up 8 MiB of match
    tables for a 784-byte digit: 1.6 ms -> 0.5 ms. A decoder with the full dictionary reads it."""
    dict_size = min(_PRESET_DICT, 1 << max(12, (max(size, 1) - 1).bit_length()))
    return [{**FILTERS[0], "dict_size": dict_size}]


def decompress(payload: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The image of an ``lz`` section; never expands past the size ``shape`` implies."""
    ch = 1 if len(shape) == 2 else shape[2]
    expected = shape[0] * (1 + shape[1] * ch)
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=FILTERS)
    try:
        data = dec.decompress(payload, max_length=expected + 1)
    except lzma.LZMAError as exc:
        raise CorruptStreamError(f"lz stream is corrupt ({exc})") from None
    if len(data) != expected or not dec.eof:  # too long, too short, or cut before its end marker
        raise CorruptStreamError(f"lz stream decompresses to {len(data)}{'' if dec.eof else '+'} bytes, "
                                 f"expected {expected}")
    return unfilter_image(data, shape)
