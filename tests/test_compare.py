"""``neurocodec compare`` on a small image with jpeg, webp and jpegxl."""
from __future__ import annotations

import json

import numpy as np
import pytest

from neurocodec import compare, io
from neurocodec.cli import main


@pytest.fixture()
def image(photo_small):
    return np.ascontiguousarray(photo_small[:64, :96, :3])


def test_nearest_bpp_bisects_to_the_target(image):
    rows = compare.compare(image, ["jpeg", "webp", "jpegxl"], bpp=1.0)
    assert [r.codec for r in rows] == ["jpeg", "webp", "jpegxl"]
    for r in rows:
        assert abs(r.measured.bpp - 1.0) < 0.25, (r.codec, r.measured.bpp)
        assert r.measured.psnr is not None and 20 < r.measured.psnr < 60
        assert r.tries >= 3 and "quality" in r.setting
    low = compare.nearest("jpeg", image, bpp=0.4).measured
    assert low.bpp < rows[0].measured.bpp and low.psnr < rows[0].measured.psnr


def test_compare_cli_picture_and_json(tmp_path, image, capsys):
    src = tmp_path / "in.png"
    io.write_image(src, image)
    out = tmp_path / "cmp.png"
    assert main(["compare", str(src), "--codecs", "jpeg,webp,jpegxl", "--psnr", "35", "-o", str(out),
                 "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["codec"] for r in doc["rows"]] == ["jpeg", "webp", "jpegxl"]
    assert all(abs(r["psnr"] - 35) < 2.5 for r in doc["rows"])
    pic = io.read_image(out)
    assert pic.shape[1] > 4 * image.shape[1] and pic.shape[0] > image.shape[0]  # original + 3 tiles, labels underneath
    assert main(["compare", str(src), "--codecs", "jpeg,x264", "--bpp", "1", "-o", str(out)]) == 2
    assert main(["compare", str(src), "--codecs", "jpeg", "--bpp", "1", "-o", str(tmp_path / "c.jpg")]) == 2
