from __future__ import annotations

import numpy as np
import pytest

import neurocodec
from neurocodec import container as ncx
from neurocodec import metrics
from neurocodec.errors import CorruptStreamError, InputError, UnknownCodecError, UnsupportedVersionError, UsageError


@pytest.mark.parametrize("codec", ["png", "webp", "jpegxl"])
@pytest.mark.parametrize("shape", [(28, 28), (17, 23, 3), (5, 28, 28), (3, 9, 11, 3), (8, 8, 1)])
def test_lossless_images_round_trip_exactly(codec, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(0, 256, shape).astype(np.uint8)
    back = neurocodec.decode(neurocodec.encode(x, codec=codec))
    assert back.shape == x.shape and back.dtype == np.uint8
    assert np.array_equal(back, x)


@pytest.mark.parametrize("codec", ["jpeg", "webp", "jpegxl"])
def test_lossy_quality_orders_rate_and_distortion(codec, photo_small):
    lo = neurocodec.encode(photo_small, codec=codec, quality=30)
    hi = neurocodec.encode(photo_small, codec=codec, quality=90)
    assert len(lo) < len(hi)
    assert metrics.psnr(photo_small, neurocodec.decode(lo)) < metrics.psnr(photo_small, neurocodec.decode(hi))


@pytest.mark.parametrize("codec", ["x264", "x265", "svtav1"])
def test_video_baselines(codec, carphone_small):
    clip = carphone_small[:, :47, :63]  # odd size: padded and cropped
    blob = neurocodec.encode(clip, codec=codec, crf=30)
    back = neurocodec.decode(blob)
    assert back.shape == clip.shape
    assert metrics.video_psnr(clip, back) > 25
    assert ncx.unpack(blob).header["fps"] == 25.0


def test_crf_orders_rate(carphone_small):
    a = neurocodec.encode(carphone_small, codec="x264", crf=20)
    b = neurocodec.encode(carphone_small, codec="x264", crf=40)
    assert len(b) < len(a)


def test_registry_is_by_name():
    names = neurocodec.list_codecs()
    assert {"png", "webp", "jpeg", "jpegxl", "x264", "x265", "svtav1"} <= set(names)
    for name, cls in names.items():
        assert cls.name == name
    with pytest.raises(UnknownCodecError, match="unknown codec"):
        neurocodec.get_codec("zip")


def test_codec_name_and_version_checks():
    x = np.zeros((8, 8), np.uint8)
    blob = neurocodec.encode(x, codec="png")
    with pytest.raises(UsageError, match="'png' stream"):
        neurocodec.get_codec("webp")().decode(blob)
    box = ncx.unpack(blob)
    future = ncx.pack(ncx.Container("png", 99, box.header, box.sections))
    with pytest.raises(UnsupportedVersionError, match="version 99"):
        neurocodec.decode(future)
    unknown = ncx.pack(ncx.Container("zip", 1, {}, {}))
    with pytest.raises(UnknownCodecError):
        neurocodec.decode(unknown)


def test_unknown_params_and_bad_data():
    with pytest.raises(UsageError, match="no parameter 'crf'"):
        neurocodec.encode(np.zeros((8, 8), np.uint8), codec="png", crf=3)
    with pytest.raises(InputError):
        neurocodec.encode(np.zeros((8, 8), np.float32), codec="png")
    with pytest.raises(InputError):
        neurocodec.encode(np.zeros((8, 8, 3), np.uint8), codec="x264")
    with pytest.raises(UsageError):
        neurocodec.encode(np.zeros((8, 8), np.uint8), codec="jpeg", quality=0)


def test_damaged_payload_with_forged_crc_is_reported():
    x = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    box = ncx.unpack(neurocodec.encode(x, codec="png"))
    forged = ncx.pack(ncx.Container("png", 1, box.header, {"0": box.sections["0"][:20]}))
    with pytest.raises(CorruptStreamError, match="does not decode"):
        neurocodec.decode(forged)


def test_avif_round_trip_rate_follows_quality_and_size_is_read_from_the_payload():
    from neurocodec import datasets
    from neurocodec.codecs.classical import avif_size

    photo = datasets.load("astronaut")[100:196, 180:276]
    sizes, psnrs = [], []
    for q in (20, 50, 80):
        blob = neurocodec.encode(photo, codec="avif", quality=q)
        out = neurocodec.decode(blob)
        assert out.shape == photo.shape and out.dtype == np.uint8
        sizes.append(len(blob))
        psnrs.append(metrics.psnr(out, photo))
    assert sizes[0] < sizes[1] < sizes[2] and psnrs[0] < psnrs[1] < psnrs[2] and psnrs[1] > 28
    grey = photo[..., 1]
    assert neurocodec.decode(neurocodec.encode(grey, codec="avif", quality=60)).shape == grey.shape
    box = ncx.unpack(neurocodec.encode(photo, codec="avif"))
    assert avif_size(box.sections["0"]) == (96, 96)
    with pytest.raises(CorruptStreamError):
        avif_size(b"\x00" * 40)
    with pytest.raises(UsageError):
        neurocodec.encode(photo, codec="avif", quality=101)
