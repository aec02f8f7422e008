"""The CLI as a user runs it: subprocesses, exit codes, one-line errors, atomic outputs."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from neurocodec import io

CLI = [sys.executable, "-m", "neurocodec.cli"]


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, needle: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurocodec: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle in lines[0], lines[0]


@pytest.fixture()
def image_file(tmp_path, photo_small):
    path = tmp_path / "img.png"
    io.write_image(path, photo_small)
    return path


def test_codecs_lists_baselines():
    proc = run("codecs")
    assert proc.returncode == 0
    names = {line.split()[0] for line in proc.stdout.splitlines()}
    assert {"png", "x264", "jpegxl"} <= names


def test_encode_decode_info_round_trip(tmp_path, image_file, photo_small):
    ncx_path = tmp_path / "img.ncx"
    proc = run("encode", image_file, "-o", ncx_path, "--codec", "webp")
    assert proc.returncode == 0, proc.stderr
    assert "bpp" in proc.stderr
    proc = run("decode", ncx_path, "-o", tmp_path / "out.png", "-q")
    assert proc.returncode == 0 and proc.stderr == ""
    assert np.array_equal(io.read_image(tmp_path / "out.png"), photo_small)
    info = json.loads(run("info", ncx_path).stdout)
    assert info["codec"] == "webp" and info["file_bytes"] == ncx_path.stat().st_size
    assert info["bpp"] == pytest.approx(8 * info["file_bytes"] / (64 * 80))
    assert info["header"]["shape"] == [64, 80, 3]
    assert sum(info["sections"].values()) + info["header_bytes"] == info["file_bytes"]


def test_params_and_video(tmp_path, carphone_small):
    src = tmp_path / "clip.npy"
    np.save(src, carphone_small)
    out = tmp_path / "clip.ncx"
    proc = run("encode", src, "-o", out, "--codec", "x264", "--param", "crf=35", "-p", "preset=fast")
    assert proc.returncode == 0, proc.stderr
    proc = run("decode", out, "-o", tmp_path / "clip.y4m")
    assert proc.returncode == 0, proc.stderr
    assert io.read_video(tmp_path / "clip.y4m").shape == carphone_small.shape


def test_usage_errors_exit_2(tmp_path, image_file):
    assert run().returncode == 2
    assert_one_line_error(run("encode", image_file, "--codec", "zip"), 2, "unknown codec")
    assert_one_line_error(run("encode", image_file, "--codec", "png", "--param", "crf"), 2, "KEY=VALUE")
    assert_one_line_error(run("encode", image_file, "--codec", "png", "--param", "crf=3"), 2, "no parameter 'crf'")
    assert_one_line_error(run("encode", image_file), 2, "--codec")
    assert_one_line_error(run("frobnicate"), 2, "invalid choice")


def test_threads_option(tmp_path, image_file):
    assert run("encode", image_file, "-o", tmp_path / "a.ncx", "--codec", "png", "--threads", "2").returncode == 0
    for bad in ("0", "lots", "-3"):
        proc = run("encode", image_file, "-o", tmp_path / "b.ncx", "--codec", "png", "--threads", bad)
        assert proc.returncode == 2 and "--threads" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "b.ncx").exists()


def test_bad_input_exit_3(tmp_path, image_file):
    assert_one_line_error(run("encode", tmp_path / "missing.png", "--codec", "png"), 3, "no such file")
    good = tmp_path / "good.ncx"
    assert run("encode", image_file, "-o", good, "--codec", "png").returncode == 0
    blob = good.read_bytes()
    bad = tmp_path / "bad.ncx"
    bad.write_bytes(blob[: len(blob) // 2])
    assert_one_line_error(run("decode", bad, "-o", tmp_path / "x.png"), 3, "truncated")
    flipped = bytearray(blob)
    flipped[-5] ^= 0x10
    bad.write_bytes(bytes(flipped))
    assert_one_line_error(run("decode", bad, "-o", tmp_path / "x.png"), 3, "checksum")
    bad.write_bytes(b"hello world, not ncx")
    assert_one_line_error(run("info", bad), 3, "not an .ncx")
    assert not (tmp_path / "x.png").exists()  # nothing half-written


def test_decode_to_unwritable_kind_leaves_no_file(tmp_path, image_file):
    good = tmp_path / "good.ncx"
    assert run("encode", image_file, "-o", good, "--codec", "png").returncode == 0
    proc = run("decode", good, "-o", tmp_path / "out.xyz")
    assert_one_line_error(proc, 2, "cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.ncx", "img.png"]


def test_decode_option_not_supported_is_usage_error(tmp_path, image_file):
    good = tmp_path / "good.ncx"
    assert run("encode", image_file, "-o", good, "--codec", "png").returncode == 0
    assert_one_line_error(run("decode", good, "-o", tmp_path / "o.png", "--scale", "2"), 2, "no decode option 'scale'")


def test_debug_shows_traceback(tmp_path):
    proc = run("info", tmp_path / "missing.ncx", "--debug")
    assert proc.returncode == 3 and "Traceback" in proc.stderr


@pytest.mark.parametrize("alias", ["same", "dot", "symlink", "hardlink"])
def test_output_onto_input_is_refused_before_any_work(tmp_path, image_file, alias):
    original = image_file.read_bytes()
    if alias == "same":
        out = image_file
    elif alias == "dot":
        out = tmp_path / "." / image_file.name
    elif alias == "symlink":
        out = tmp_path / "link.png"
        out.symlink_to(image_file)
    else:
        out = tmp_path / "hard.png"
        out.hardlink_to(image_file)
    proc = run("encode", image_file, "-o", out, "--codec", "png", cwd=tmp_path)
    assert_one_line_error(proc, 2, "is the input")
    assert image_file.read_bytes() == original


def test_decode_onto_its_own_input_is_refused(tmp_path, image_file):
    blob = tmp_path / "x.ncx"
    assert run("encode", image_file, "-o", blob, "--codec", "png").returncode == 0
    before = blob.read_bytes()
    proc = run("decode", blob, "-o", blob)
    assert_one_line_error(proc, 2, "is the input")
    assert blob.read_bytes() == before


def test_info_into_a_closed_pipe_ends_quietly(tmp_path, image_file):
    blob = tmp_path / "x.ncx"
    assert run("encode", image_file, "-o", blob, "--codec", "png").returncode == 0
    proc = subprocess.run(f"{sys.executable} -m neurocodec.cli info {blob} | head -c 5", shell=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout == "{\n  \""[:5]
    assert proc.stderr == "", proc.stderr


def test_encode_summary_measures_and_raw_outputs(tmp_path, image_file):
    proc = run("encode", image_file, "-c", "jpeg", "--quality", "60", "-o", tmp_path / "a.jpg", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["format"] == "jpg" and doc["lossless"] is False and 20 < doc["psnr"] < 50 and 0 < doc["ms_ssim"] < 1
    assert (tmp_path / "a.jpg").read_bytes()[:2] == b"\xff\xd8" and doc["bytes"] == (tmp_path / "a.jpg").stat().st_size
    proc = run("encode", image_file, "-c", "png", "-o", tmp_path / "a.ncx")
    assert proc.returncode == 0 and "lossless, verified" in proc.stderr, proc.stderr
    assert_one_line_error(run("encode", image_file, "-c", "jpeg", "-o", tmp_path / "a.webp"), 2, "writes .ncx")
    assert not (tmp_path / "a.webp").exists()


def test_frames_for_classical_video(tmp_path, carphone_small):
    src = tmp_path / "c.npy"
    np.save(src, carphone_small)
    proc = run("encode", src, "-c", "x264", "--frames", "1:5", "-o", tmp_path / "c.ncx", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["shape"][0] == 4 and doc["psnr_yuv"] > doc["psnr"] > 25
    assert run("decode", tmp_path / "c.ncx", "--frames", "1:3", "-o", tmp_path / "d.npy").returncode == 0
    assert np.load(tmp_path / "d.npy").shape == (2, *carphone_small.shape[1:])
