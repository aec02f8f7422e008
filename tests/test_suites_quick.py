"""Every benchmark suite's --quick mode runs through `neurocodec bench` and writes schema JSON.

This is what keeps the full benchmark commands from rotting between full runs. Each suite runs in
its own `neurocodec bench <suite> --quick` process (the command runs the suite in-process), as
`make bench-quick` (`neurocodec bench all --quick`) does.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurocodec.bench.suites import SUITES

ROOT = Path(__file__).resolve().parents[1]


def _check_documents(folder: Path, suite: str) -> list[Path]:
    files = sorted(folder.rglob("*.json"))
    assert files, f"{suite} wrote no JSON under {folder}"
    for f in files:
        doc = json.loads(f.read_text())
        if "results" not in doc:  # a side document (e.g. video's lr_screen.json): described, not plotted
            assert doc["description"] and doc["environment"] and doc["quick"] is True, f
            continue
        assert doc["quick"] is True and doc["suite"] == suite and doc["results"], f
        lengths = {len(v) for v in doc["results"].values()}
        assert len(lengths) == 1 and lengths.pop() >= 1, f
    return files


@pytest.mark.parametrize("suite", [s for s in SUITES if s != "entropy"])  # entropy: tests/test_bench.py
def test_quick_suite(suite, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "neurocodec.cli", "bench", suite, "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_documents(tmp_path / suite, suite)


def test_user_data_suites_quick(tmp_path):
    """`--data` with the user's own files: a clip for the video suite, a folder of images for the
    lossless suite (cheap codecs only; the image suite's --data runs in the installed-wheel test)."""
    from neurocodec.bench import suites
    from neurocodec.io import write_image, write_video

    rng = np.random.default_rng(0)
    t, y, x = np.mgrid[0:8, 0:48, 0:64]
    clip = np.stack([(x * 4 + t * 3) % 256, (y * 5) % 256, ((x + y) * 2) % 256], -1)
    clip = np.clip(clip + rng.integers(-8, 9, clip.shape), 0, 255).astype(np.uint8)
    write_video(tmp_path / "my_clip.mp4", clip)
    (tmp_path / "shots").mkdir()
    for i in range(2):
        write_image(tmp_path / "shots" / f"s{i}.png", clip[3 * i])
    out = tmp_path / "out"
    assert suites.run("video", ["--quick", "--data", str(tmp_path / "my_clip.mp4"), "--codecs", "x264",
                                "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    (doc,) = [json.loads(f.read_text()) for f in _check_documents(out / "video", "video")]
    assert doc["dataset"] == "my_clip" and doc["name"] == "x264" and len(doc["results"]["bpp"]) == 2
    assert suites.run("lossless", ["--quick", "--data", str(tmp_path / "shots"), "--codecs", "png,webp",
                                   "--out", str(out)]) == 0
    docs = {f.stem: json.loads(f.read_text()) for f in _check_documents(out / "lossless", "lossless")}
    assert set(docs) == {"png", "webp"} and all(d["dataset"] == "shots" for d in docs.values())
    assert all(0 < d["results"]["bpd"][0] < 8 for d in docs.values())


def test_hyperparameter_screens_quick(tmp_path):
    """The two screens behind benchmark settings (video learning rates, diffusion strength) run and
    record the choice they make from their own rows."""
    runs = ([sys.executable, "-m", "neurocodec.cli", "bench", "video", "--quick", "--out", str(tmp_path), "--screen"],
            [sys.executable, str(ROOT / "benchmarks" / "sr" / "strength.py"), "--quick", "--out", str(tmp_path)],
            [sys.executable, str(ROOT / "benchmarks" / "video" / "lr_by_size.py"), "--quick", "--out", str(tmp_path)])
    for cmd in runs:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
    video = json.loads((tmp_path / "video" / "carphone" / "lr_screen.json").read_text())
    for codec in ("hnerv", "nerv"):
        rows = [r for r in video["runs"] if r["codec"] == codec]
        assert len(rows) == 2 and video["best_lr"][codec] == max(rows, key=lambda r: r["psnr-rgb"])["lr"]
    by_size = json.loads((tmp_path / "video" / "carphone" / "lr_by_size.json").read_text())
    (b,) = by_size["best"].values()
    assert b["delta_db"] == b["hnerv"]["psnr-rgb"] - b["nerv"]["psnr-rgb"] and len(by_size["runs"]) == 4
    sr = json.loads((tmp_path / "sr" / "strength_screen.json").read_text())
    diff = [r for r in sr["summary"] if r["method"] == "diffusion"]
    assert len(diff) == 2 and sr["pick"] in {r["strength"] for r in diff}
    assert all(0 < r["detail"] and r["psnr"] > 10 for r in sr["summary"])


def test_video_side_runs_quick(tmp_path):
    """The video suite's throughput and rate-control runs (``--throughput``, ``--rate``) in quick mode:
    side documents with the figures the README quotes, and a rate that lands or is refused."""
    from neurocodec.bench import suites

    assert suites.run("video", ["--quick", "--throughput", "--data", "carphone", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "video" / "carphone" / "throughput.json").read_text())
    runs = doc["runs"]
    assert len(runs) == 3 and all(r["epochs_per_cpu_min"] > 0 and r["curve"] for r in runs.values())
    assert (tmp_path / "video" / "carphone" / "psnr_vs_time.png").stat().st_size > 1000
    assert suites.run("video", ["--quick", "--rate", "--out", str(tmp_path)]) == 0
    rate = json.loads((tmp_path / "video" / "rate_control.json").read_text())
    landed = [r for r in rate["runs"] if "rate_error" in r]
    refused = [r for r in rate["runs"] if "refused" in r]
    assert landed and refused and all(abs(r["rate_error"]) <= 0.10 for r in landed)
    assert all("smallest reachable rate" in r["refused"] for r in refused)
