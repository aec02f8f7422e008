"""The benchmark harness: one measurement path, one schema, plots, the README report, notebooks."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from neurocodec.bench import plot, report, results, runner


def test_measure_counts_whole_file_and_quality(carphone_small):
    point = runner.measure("x264", carphone_small, crf=30)
    assert point["bytes"] > 0 and not point["lossless"]
    assert point["bpp"] == pytest.approx(8 * point["bytes"] / (6 * 48 * 64))
    assert 20 < point["psnr-rgb"] < 60 and 0 < point["ms-ssim-rgb"] < 1
    assert point["decode_fps"] > 0 and point["peak_memory_mb"] > 10


def test_lossless_point(mnist_small):
    point = runner.measure("png", mnist_small)
    assert point["lossless"] and point["psnr-rgb"] == float("inf")


def test_peak_memory_sees_an_allocation():
    with runner.PeakMemory() as small:
        pass
    with runner.PeakMemory() as big:
        block = np.ones(60_000_000, np.uint8)  # 60 MB touched
        block[::4096] = 2
    assert big.peak_mb > small.peak_mb + 30


def test_sweep_schema_file_and_plot(tmp_path, carphone_small):
    cols = runner.sweep("x265", carphone_small, [{"crf": c} for c in (24, 30, 36, 42)], preset="fast")
    assert len(cols["bpp"]) == 4 and cols["params"][0] == {"crf": 24}
    assert cols["bpp"] == sorted(cols["bpp"], reverse=True)
    path = results.write_results("video", "tiny", "x265", cols, description="test", out_dir=tmp_path)
    doc = json.loads(path.read_text())
    assert path == tmp_path / "video" / "tiny" / "x265.json"
    assert doc["name"] == "x265" and doc["schema"] == results.SCHEMA_VERSION
    assert {"cpu", "packages", "git_commit", "command"} <= set(doc["environment"])
    assert doc["results"]["lossless"] == [False] * 4
    other = runner.sweep("x264", carphone_small, [{"crf": c} for c in (24, 30, 36, 42)], preset="fast")
    results.write_results("video", "tiny", "x264", other, out_dir=tmp_path)
    written = plot.plot_suite("video", "tiny", results_dir=tmp_path)
    assert {p.suffix for p in written} == {".png", ".svg"} and all(p.stat().st_size > 1000 for p in written)
    table = plot.bd_table(plot.load_suite("video", "tiny", tmp_path)["tiny"], "x265")
    assert table["x264"]["bd_rate"] is not None and np.isfinite(table["x264"]["bd_rate"])


def test_write_results_rejects_ragged_lists(tmp_path):
    with pytest.raises(ValueError, match="differ in length"):
        results.write_results("video", "x", "y", {"bpp": [1, 2], "psnr-rgb": [1]}, out_dir=tmp_path)


def test_report_renders_full_runs_only(tmp_path):
    results.write_results("image", "photos", "jpeg", {"bpp": [0.5, 1.0], "psnr-rgb": [30.0, 33.0]}, out_dir=tmp_path)
    results.write_results("image", "photos", "webp", {"bpp": [0.4], "psnr-rgb": [31.0]}, out_dir=tmp_path, quick=True)
    text = report.render(tmp_path)
    assert "| jpeg | 0.5, 1 | 30, 33 |" in text
    assert "webp" not in text  # quick runs stay out of the README
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nOLD-CONTENT\n{report.END}\noutro\n")
    report.update_readme(readme, tmp_path)
    updated = readme.read_text()
    assert "OLD-CONTENT" not in updated and "| jpeg |" in updated and updated.endswith("outro\n")


def test_bench_cli_runs_a_quick_suite(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "neurocodec.cli", "bench", "entropy", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "entropy" / "synthetic" / "iid.json").read_text())
    assert doc["quick"] and doc["results"]["rate_over_entropy"][0] < 1.01
    proc = subprocess.run([sys.executable, "-m", "neurocodec.cli", "plot", "entropy", "--results", str(tmp_path),
                           "--x", "symbols", "--y", "encode_msym_per_s"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
