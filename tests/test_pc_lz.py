"""The ``lz`` mode of ``pc`` (row prediction + LZMA): exact on every shape, strict on bad payloads."""
from __future__ import annotations

import lzma

import numpy as np
import pytest

from neurocodec.codecs.pc import lz
from neurocodec.errors import CorruptStreamError


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:37, 0:53]
    return {
        "1x1": np.array([[7]], np.uint8), "1x1x3": np.array([[[1, 2, 3]]], np.uint8),
        "row": (np.arange(300) % 256).astype(np.uint8)[None], "column": rng.integers(0, 256, (200, 1), np.uint8),
        "noise_rgb": rng.integers(0, 256, (37, 53, 3), np.uint8), "noise_rgba": rng.integers(0, 256, (9, 11, 4), np.uint8),
        "ramp": ((xx * 5 + yy * 3) % 256).astype(np.uint8), "extremes": np.where((xx + yy) % 2, 255, 0).astype(np.uint8),
    }


@pytest.mark.parametrize("name", list(_images()))
def test_round_trip_is_exact(name):
    img = _images()[name]
    assert np.array_equal(lz.decompress(lz.compress(img), img.shape), img)


@pytest.mark.parametrize("name", ["row", "noise_rgb", "ramp", "extremes"])
def test_the_cut_dictionary_gives_the_full_dictionarys_bytes(name):
    # the encoder sizes LZMA's dictionary to the input; the stream must be the preset's own
    data = lz.filter_image(_images()[name])
    assert lz._encoder_filters(len(data))[0]["dict_size"] < 1 << 23
    assert lz.compress(_images()[name]) == lzma.compress(data, format=lzma.FORMAT_RAW, filters=lz.FILTERS)
    assert lz._encoder_filters(1 << 30)[0]["dict_size"] == 1 << 23  # never more than the decoder holds


def test_every_filter_is_exercised_and_inverted():
    # a picture whose rows favour different filters: flat (none/up), horizontal ramp (sub), diagonal (paeth)
    img = np.zeros((4, 64), np.uint8)
    img[1] = np.arange(64) * 3
    img[2] = img[1]
    img[3] = (np.arange(64) + 9) * 3 % 256
    filtered = np.frombuffer(lz.filter_image(img), np.uint8).reshape(4, 65)
    assert len(set(filtered[:, 0].tolist())) >= 2
    assert np.array_equal(lz.unfilter_image(filtered.tobytes(), img.shape), img)


def test_repetitive_content_compresses_far_below_its_size():
    tile = np.kron((np.indices((8, 8)).sum(0) % 2) * 255, np.ones((25, 25))).astype(np.uint8)  # a chessboard
    assert len(lz.compress(tile)) < tile.size / 100


def test_bad_payloads_are_corrupt_stream_errors():
    img = _images()["ramp"]
    good = lz.compress(img)
    with pytest.raises(CorruptStreamError):
        lz.decompress(good[: len(good) // 2], img.shape)  # truncated
    with pytest.raises(CorruptStreamError):
        lz.decompress(b"\x00garbage" * 4, img.shape)
    with pytest.raises(CorruptStreamError):
        lz.decompress(good, (img.shape[0] - 1, img.shape[1]))  # decompresses to more than the shape holds
    bomb = lzma.compress(bytes(10_000_000), format=lzma.FORMAT_RAW, filters=lz.FILTERS)
    with pytest.raises(CorruptStreamError):
        lz.decompress(bomb, (2, 2))  # stops at the expected size, never inflates 10 MB
    rows = bytearray(lz.filter_image(img))
    rows[0] = 9  # an unknown row filter
    with pytest.raises(CorruptStreamError):
        lz.unfilter_image(bytes(rows), img.shape)
