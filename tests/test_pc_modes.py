"""pc's three modes per file (circuit, raw, lz): lz is chosen where exact repeats pay (a chessboard,
a screen), bit-exact and signalled in the header; photos keep the circuit and never run LZMA;
forged lz headers and sections are refused by the schema; old files decode as before."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import neurocodec
from neurocodec import container as ncx
from neurocodec import datasets
from neurocodec.codecs.pc import codec as pc_codec
from neurocodec.codecs.pc import lz
from neurocodec.errors import CorruptStreamError


def _chessboard() -> np.ndarray:
    return np.kron((np.indices((8, 8)).sum(0) % 2) * 255, np.ones((25, 25))).astype(np.uint8)


def _screen() -> np.ndarray:
    """The benchmark's screen-like image at half size (every other row and column: the same layout)."""
    from neurocodec.bench.suites.lossless import simple_images

    return np.ascontiguousarray(simple_images()["screen_240x320"][::2, ::2])


@pytest.mark.parametrize("make", [_chessboard, _screen])
def test_lz_is_chosen_on_repetitive_content_and_bit_exact(make):
    x = make()
    enc = neurocodec.encode_with_report(x, codec="pc")
    box = ncx.unpack(enc.blob)
    assert enc.report["mode"] == "lz" and enc.report["lz"] and "lz" in enc.report["note"]
    assert box.header["lz"] is True and list(box.sections) == ["lz"] and box.codec_version == 4
    assert enc.report["lz_bytes"] == len(box.sections["lz"]) < enc.report["coded_bytes"]
    back = neurocodec.decode(enc.blob)
    assert back.dtype == np.uint8 and back.shape == x.shape and np.array_equal(back, x)
    assert len(enc.blob) < len(neurocodec.encode(x, codec="png")) * 1.1


def test_lz_codes_a_batch_as_stacked_rows():
    x = np.stack([_chessboard()[:50, :60], _chessboard()[25:75, :60]])
    enc = neurocodec.encode_with_report(x, codec="pc", model="photo")
    assert enc.report["mode"] == "lz"
    assert np.array_equal(neurocodec.decode(enc.blob), x)


def test_photo_keeps_the_circuit_and_never_runs_lz(monkeypatch):
    crop = datasets.load("astronaut")[200:264, 100:164]

    def refuse(img):
        raise AssertionError("lz must not run above LZ_TRY_BPD")

    monkeypatch.setattr(lz, "compress", refuse)
    enc = neurocodec.encode_with_report(crop, codec="pc")
    assert enc.report["mode"] == "circuit" and not enc.report["lz"] and enc.report["lz_bytes"] is None
    assert enc.report["coded_bpd"] >= pc_codec.LZ_TRY_BPD and "lz is tried below" in enc.report["mode_reason"]
    assert "lz" not in ncx.unpack(enc.blob).header and np.array_equal(neurocodec.decode(enc.blob), crop)


def test_cheap_content_where_the_circuit_wins_keeps_it():
    flat = np.full((32, 32, 3), 200, np.uint8)
    enc = neurocodec.encode_with_report(flat, codec="pc")
    assert enc.report["mode"] == "circuit" and enc.report["lz_bytes"] is not None  # tried, lost
    assert enc.report["coded_bytes"] <= enc.report["lz_bytes"] + len(',"lz":true')
    assert list(ncx.unpack(enc.blob).sections) == ["px"]


def test_forged_lz_headers_and_sections_are_corrupt_stream_errors():
    box = ncx.unpack(neurocodec.encode(_chessboard(), codec="pc"))
    px = ncx.unpack(neurocodec.encode(np.full((20, 20), 3, np.uint8), codec="pc"))
    big = {"lz": lz.compress(np.random.default_rng(0).integers(0, 256, (200, 200), np.uint8))}
    forged = [
        (box.header | {"lz": "yes"}, box.sections),
        (box.header | {"raw": True}, box.sections),  # two modes at once
        ({k: v for k, v in box.header.items() if k != "lz"}, box.sections),  # lz section, no flag
        (px.header | {"lz": True}, px.sections),  # flag, px section
        (box.header, {**box.sections, "px": b"\0" * 4}),  # two sections
        (box.header, {"LZ": box.sections["lz"]}),
        (box.header, big),  # an lz section larger than the raw pixels
        (box.header, {"lz": box.sections["lz"][:-5]}),  # truncated lzma
        (box.header | {"shape": [200, 199]}, box.sections),  # decompresses to another size
    ]
    for header, sections in forged:
        with pytest.raises(CorruptStreamError):
            neurocodec.decode(ncx.pack(ncx.Container("pc", 4, header, sections)))
        with pytest.raises(CorruptStreamError):  # the same gate when decompress is called directly
            pc_codec.PCCodec().decompress(header, sections)


def test_info_reports_the_mode(tmp_path):
    path = tmp_path / "board.ncx"
    path.write_bytes(neurocodec.encode(_chessboard(), codec="pc"))
    proc = subprocess.run([sys.executable, "-m", "neurocodec.cli", "info", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["codec_version"] == 4 and info["header"]["lz"] is True and list(info["sections"]) == ["lz"]


def test_compact_header_for_shipped_models():
    """v4: a file coded with a shipped model by name has a compact header; one digit's is
    ``{"m":KEY}`` with a key that implies 28x28 (``digit`` for the first mnist model, ``digit2`` for the
    second); the pinned keys match shipped or retired files; forged compact headers are refused."""
    from neurocodec.codecs.pc.model import load_model, load_shipped

    for key, (name, digest, _) in pc_codec.COMPACT.items():
        assert load_shipped(name, digest).short_digest == digest, f"{key}: no shipped or retired {name} {digest}"
    current = load_model("mnist").short_digest
    digit = next(k for k, v in pc_codec.COMPACT.items() if v == ("mnist", current, (28, 28)))
    batch = next(k for k, v in pc_codec.COMPACT.items() if v == ("mnist", current, None))
    (_, _), (test, _) = datasets.mnist_5k_split()
    box = ncx.unpack(neurocodec.encode(test[0], codec="pc"))
    assert box.header == {"m": digit} and np.array_equal(neurocodec.decode(ncx.pack(box)), test[0])
    two = ncx.unpack(neurocodec.encode(test[:2], codec="pc"))
    assert two.header == {"m": batch, "shape": [2, 28, 28]} and np.array_equal(neurocodec.decode(ncx.pack(two)), test[:2])
    for header, sections in [({"m": digit, "shape": [28, 28]}, box.sections), ({"m": batch}, two.sections),
                             ({"m": "nope"}, box.sections), ({"m": digit, "model_hash": "0" * 16}, box.sections),
                             ({"m": digit, "lz": True}, box.sections)]:
        with pytest.raises(CorruptStreamError):
            neurocodec.decode(ncx.pack(ncx.Container("pc", 4, header, sections)))


def test_info_rates_a_compact_digit_file():
    """``info`` reads the shape a compact header implies, so one digit's file still gets its rate."""
    from neurocodec.cli import describe

    (_, _), (test, _) = datasets.mnist_5k_split()
    blob = neurocodec.encode(test[0], codec="pc")
    info = describe(blob)
    assert list(info["header"]) == ["m"] and pc_codec.COMPACT[info["header"]["m"]][2] == (28, 28)
    assert info["bpd"] == pytest.approx(len(blob) * 8 / (28 * 28))
    forged = ncx.pack(ncx.Container("pc", 4, {"m": "nope"}, ncx.unpack(blob).sections))
    assert "bpd" not in describe(forged)  # an unknown key implies nothing: no rate, no crash
    batch_key = next(k for k, v in pc_codec.COMPACT.items() if v[2] is None)
    no_shape = ncx.pack(ncx.Container("pc", 4, {"m": batch_key}, ncx.unpack(blob).sections))
    assert "bpd" not in describe(no_shape)  # a batch key without its shape: no rate, no crash


def test_retired_shipped_models_still_decode_their_files():
    """A retrained shipped model keeps its old file (model.RETIRED): a file that names the old
    ``model_hash`` decodes with the old parameters, full header or compact."""
    from neurocodec.codecs.pc.model import RETIRED, builtin_path, load_shipped

    (_, _), (test, _) = datasets.mnist_5k_split()
    assert RETIRED, "no retired model: this test would check nothing"
    for (name, digest), (file, _) in RETIRED.items():
        old = load_shipped(name, digest)
        assert old.short_digest == digest and old.short_digest != load_shipped(name, "0" * 16).short_digest
        box = ncx.unpack(neurocodec.encode(test[:3], codec="pc", model=str(builtin_path(name).with_name(file))))
        assert box.header["model_hash"] == digest
        named = ncx.Container("pc", box.codec_version, {**box.header, "model": name}, box.sections)
        assert np.array_equal(neurocodec.decode(ncx.pack(named)), test[:3])
        for key in [k for k, (n, d, shape) in pc_codec.COMPACT.items() if (n, d) == (name, digest) and shape is None]:
            compact = ncx.Container("pc", 4, pc_codec.compact_header(named.header, key), box.sections)
            assert np.array_equal(neurocodec.decode(ncx.pack(compact)), test[:3])
