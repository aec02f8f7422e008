"""pc's photo model: bit-exact round trips on adversarial shapes and contents, the automatic choice,
coded size against the model's own code length, the mode signalled per image, refusals of damaged
streams and model files, and the kernels' integer invariants."""
from __future__ import annotations

import numpy as np
import pytest

import neurocodec
from neurocodec import container as ncx
from neurocodec import datasets, weights
from neurocodec.codecs.pc import photo
from neurocodec.codecs.pc.codec import expand_header
from neurocodec.codecs.pc import photo_kernels as K
from neurocodec.codecs.pc.model import SHIPPED, builtin_path, load_model
from neurocodec.errors import CorruptStreamError, InputError, NeurocodecError, UsageError

RNG = np.random.default_rng(0)
_YY, _XX = np.mgrid[0:23, 0:37]
CASES = {
    "1x1": np.array([[7]], np.uint8),
    "1x1rgb": np.array([[[0, 255, 3]]], np.uint8),
    "1xN": RNG.integers(0, 256, (1, 50), dtype=np.uint8),
    "Nx1rgb": RNG.integers(0, 256, (31, 1, 3), dtype=np.uint8),
    "2x2": RNG.integers(0, 256, (2, 2, 3), dtype=np.uint8),
    "odd_rgb": RNG.integers(0, 256, (7, 13, 3), dtype=np.uint8),
    "rgba": RNG.integers(0, 256, (9, 6, 4), dtype=np.uint8),
    "grey_alpha": RNG.integers(0, 256, (5, 8, 2), dtype=np.uint8),
    "constant": np.full((17, 19, 3), 200, np.uint8),
    "black": np.zeros((16, 16), np.uint8),
    "white": np.full((9, 33, 3), 255, np.uint8),
    "ramp": ((_XX * 7 + _YY * 3) % 256).astype(np.uint8),
    "ramp_rgb": np.stack([_XX * 7 % 256, _YY * 11 % 256, (_XX + _YY) * 5 % 256], -1).astype(np.uint8),
    "extremes": (RNG.integers(0, 2, (20, 21, 3)) * 255).astype(np.uint8),  # residuals near +-255 wrap
    "noise": RNG.integers(0, 256, (12, 40, 3), dtype=np.uint8),
}


@pytest.fixture(scope="module")
def model() -> photo.PhotoModel:
    return load_model("photo")


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_adversarial(model, name):
    x = CASES[name]
    enc = neurocodec.encode_with_report(x, codec="pc", model="photo")
    back = neurocodec.decode(enc.blob)
    assert back.dtype == np.uint8 and back.shape == x.shape and np.array_equal(back, x)
    assert enc.report["model"] == "photo"
    if enc.report["mode"] == "circuit":  # the words are the photo stream, not stored pixels or lz
        assert enc.report["coded_bytes"] == len(ncx.unpack(enc.blob).sections["px"])


def test_batch_of_images_in_one_stream_and_deterministic(model):
    x = np.stack([CASES["ramp_rgb"][:9, :10], CASES["noise"][:9, :10], CASES["constant"][:9, :10]])
    a = neurocodec.encode(x, codec="pc", model="photo")
    assert a == neurocodec.encode(x, codec="pc", model="photo")
    assert np.array_equal(neurocodec.decode(a), x)


def test_photo_is_the_automatic_model_and_beats_png_on_a_held_out_crop():
    crop = datasets.load("astronaut")[200:264, 100:164]
    enc = neurocodec.encode_with_report(crop, codec="pc")
    assert enc.report["model"] == "photo" and enc.report["model_choice"] == "auto"
    assert np.array_equal(neurocodec.decode(enc.blob), crop)
    png = neurocodec.encode(crop, codec="png")
    nat = neurocodec.encode(crop, codec="pc", model="natural")
    assert len(enc.blob) < len(png) and len(enc.blob) < len(nat)


def test_coded_size_matches_the_models_code_length(model):
    crop = datasets.load("coffee")[100:164, 200:296]
    words = len(photo.encode_images(model, crop[None])[0])
    ideal = model.ideal_bits(crop, model.choose_mode(crop)) / 8
    assert ideal < words < ideal * 1.01 + 16


def test_mode_is_chosen_by_measured_length_and_signalled(model):
    ramp = (np.arange(1000) % 256).astype(np.uint8)[None]
    assert model.ideal_bits(ramp, 1) < model.ideal_bits(ramp, 0)  # synthetic: mode 1 shorter
    photo_crop = datasets.load("chelsea")[:40, :40]
    enc = neurocodec.encode_with_report(np.stack([ramp[:, :40].repeat(40, 0)[..., None].repeat(3, -1),
                                                  photo_crop]), codec="pc", model="photo")
    assert enc.report["photo_modes"] == [model.choose_mode(ramp[:, :40].repeat(40, 0)[..., None].repeat(3, -1)), 0]
    enc = neurocodec.encode_with_report(ramp, codec="pc", model="photo")
    assert enc.report["photo_modes"] == [1] and np.array_equal(neurocodec.decode(enc.blob), ramp)


def test_damaged_streams_are_errors_not_crashes(model):
    x = datasets.load("chelsea")[50:80, 60:100]
    box = ncx.unpack(neurocodec.encode(x, codec="pc", model="photo"))
    words = bytearray(box.sections["px"])
    for pos in (0, len(words) // 2, len(words) - 4):
        bad = bytearray(words)
        bad[pos] ^= 0xA5
        try:
            out = neurocodec.decode(ncx.pack(ncx.Container("pc", box.codec_version, box.header, {"px": bytes(bad)})))
        except NeurocodecError:
            continue
        assert out.shape == x.shape and out.dtype == np.uint8  # garbage pixels, but the right array
    with pytest.raises(CorruptStreamError):
        neurocodec.decode(ncx.pack(ncx.Container("pc", box.codec_version, box.header, {"px": bytes(words[:-1])})))
    full = expand_header(box.header)  # v4 writes a compact header for the shipped model: forge the full form
    with pytest.raises(UsageError, match="hash"):  # another model's stream
        neurocodec.decode(ncx.pack(ncx.Container("pc", box.codec_version, {**full, "model_hash": "0" * 16},
                                                 box.sections)))


def test_shipped_photo_model_is_pinned_and_validated(tmp_path, model):
    path = builtin_path("photo")
    assert weights.file_digest(path) == SHIPPED["photo"] == model.digest
    assert load_model("photo") is model and model.name == "photo"
    assert load_model(str(path)) is model  # a path to a pc-photo file gives the same model
    with pytest.raises(ValueError):
        model.wts[0, 0, 0] = 1  # shared: read-only
    prior = np.array(model.prior)
    prior[0, 0] = 0  # a zero count would make a symbol uncodable
    with pytest.raises(CorruptStreamError):
        photo.PhotoModel(model.wts, prior, model.inc, model.limit, model.leaves, model.prior_a, model.prior_b,
                         model.kappa, model.every)
    other = photo.PhotoModel(model.wts, model.prior, model.inc * 2, model.limit, model.leaves, model.prior_a,
                             model.prior_b, model.kappa, model.every, name="faster")
    other.save(tmp_path / "faster.ncx")
    x = datasets.load("chelsea")[50:70, 60:90]  # a photo crop: coded by the circuit (a ramp would get lz)
    blob = neurocodec.encode(x, codec="pc", model=str(tmp_path / "faster.ncx"))
    assert list(ncx.unpack(blob).sections) == ["px"]
    with pytest.raises(UsageError, match="model=PATH"):
        neurocodec.decode(blob)
    assert np.array_equal(neurocodec.decode(blob, model=str(tmp_path / "faster.ncx")), x)
    with pytest.raises(InputError):
        photo.load_file(builtin_path("mnist"))  # a circuit model is not a photo model


def test_token_mapping_and_offset_tables_cover_every_residual():
    u = np.arange(256)
    back = K.TOK_BASE[K.TOK_OF_U] + K.OFF_OF_U
    assert np.array_equal(back, u)
    assert np.all(K.OFF_OF_U < (1 << K.TOK_BITS[K.TOK_OF_U]))
    tables = K.offset_tables()
    assert tables.shape == (7, K.OFFW) and np.all(tables > 0)
