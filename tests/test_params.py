"""Parameter declarations: conversion, validation before any work, and the messages users read."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import neurocodec
from neurocodec import io
from neurocodec.errors import UsageError
from neurocodec.params import Param, bind, table

CLI = [sys.executable, "-m", "neurocodec.cli"]


def test_conversion_from_strings_and_python_values():
    q = Param("quality", "int", 75, "quality", lo=1, hi=100)
    assert q.convert("80", "x") == 80 and q.convert(80.0, "x") == 80 and q.convert(np.int64(5), "x") == 5
    for bad in ("abc", "80.5", True, [1, 2], None, 0, 101, float("nan")):
        with pytest.raises(UsageError, match=r"quality=.*expected an integer 1\.\.100"):
            q.convert(bad, "codec 'jpeg'")
    f = Param("quality", "float", None, "q", lo=0, hi=100, nullable=True)
    assert f.convert("none", "x") is None and f.convert("12.5", "x") == 12.5
    b = Param("batch", "bool", None, "b", nullable=True)
    assert b.convert("true", "x") is True and b.convert("0", "x") is False
    with pytest.raises(UsageError, match="batch=abc"):
        b.convert("abc", "codec 'pc'")  # was silently taken as batch=True
    s = Param("preset", "str", "medium", "p", choices=("fast", "medium"))
    with pytest.raises(UsageError, match="one of fast, medium"):
        s.convert("fastest", "x")
    ints = Param("strides", "ints", None, "s", lo=1, hi=8, nullable=True)
    assert ints.convert("2,2,4", "x") == [2, 2, 4] and ints.convert("[5,2]", "x") == [5, 2]
    with pytest.raises(UsageError):
        ints.convert("2,9", "x")


def test_bind_fills_defaults_and_names_unknown_parameters():
    decl = (Param("a", "int", 1, "a"), Param("b", "str", "x", "b"))
    assert bind(decl, {"a": "3"}, "codec 'z'") == {"a": 3, "b": "x"}
    with pytest.raises(UsageError, match="no parameter 'c'; accepted: a, b"):
        bind(decl, {"c": 1}, "codec 'z'")
    assert "a" in table(decl) and "default" in table(decl)


def test_library_calls_validate_like_the_cli():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(UsageError, match="quality=abc"):
        neurocodec.encode(img, codec="webp", quality="abc")
    with pytest.raises(UsageError, match="quality=150"):
        neurocodec.get_codec("jpeg")().compress(img, quality=150)
    header, _ = neurocodec.get_codec("jpeg")().compress(img)  # defaults come from the declaration
    assert header["shape"] == [8, 8, 3]


@pytest.mark.parametrize("codec,param", [
    ("webp", "quality=abc"), ("jpeg", "quality=abc"), ("jpegxl", "quality=abc"), ("webp", "quality=[1,2]"),
    ("x265", "crf=abc"), ("x265", "preset=fastest"), ("x264", "preset=slowest"), ("svtav1", "preset=14"),
])
def test_bad_values_are_usage_errors_naming_the_parameter(tmp_path, codec, param):
    image = tmp_path / "i.png"
    io.write_image(image, np.zeros((16, 16, 3), np.uint8))
    out = tmp_path / "o.ncx"
    proc = subprocess.run([*CLI, "encode", str(image), "-o", str(out), "--codec", codec, "--param", param],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert param.split("=")[0] in proc.stderr and "expected" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_flags_a_codec_lacks_are_named_as_typed(tmp_path):
    image = tmp_path / "i.png"
    io.write_image(image, np.zeros((16, 16, 3), np.uint8))
    proc = subprocess.run([*CLI, "encode", str(image), "--codec", "x265", "--bpp", "0.1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--bpp" in proc.stderr, proc.stderr


def test_codecs_name_and_encode_help_show_the_parameter_table():
    proc = subprocess.run([*CLI, "codecs", "x265"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "crf" in proc.stdout and "0..51" in proc.stdout and "veryslow" in proc.stdout
    proc = subprocess.run([*CLI, "encode", "--codec", "webp", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--param" in proc.stdout and "method" in proc.stdout and "0..6" in proc.stdout
