"""Every benchmark suite's --quick mode runs through `neurocodec bench` and writes schema JSON.

This is what keeps the full benchmark commands from rotting between full runs.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from neurocodec.bench.cli import SUITES, suite_script_exists


@pytest.mark.parametrize("suite", [s for s in SUITES if s != "entropy"])  # entropy: tests/test_bench.py
def test_quick_suite(suite, tmp_path):
    if not suite_script_exists(suite):
        pytest.fail(f"benchmarks/{suite}/run.py is missing")
    proc = subprocess.run([sys.executable, "-m", "neurocodec.cli", "bench", suite, "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted((tmp_path / suite).rglob("*.json"))
    assert files, f"{suite} wrote no JSON"
    for f in files:
        doc = json.loads(f.read_text())
        if "results" not in doc:  # a side document (e.g. video's lr_screen.json): described, not plotted
            assert doc["description"] and doc["environment"] and doc["quick"] is True, f
            continue
        assert doc["quick"] is True and doc["suite"] == suite and doc["results"], f
        lengths = {len(v) for v in doc["results"].values()}
        assert len(lengths) == 1 and lengths.pop() >= 1, f


def test_hyperparameter_screens_quick(tmp_path):
    """The two screens behind benchmark settings (video learning rates, diffusion strength) run and
    record the choice they make from their own rows."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for script, extra in (("benchmarks/video/run.py", ["--screen"]), ("benchmarks/sr/strength.py", []),
                          ("benchmarks/video/lr_by_size.py", [])):
        proc = subprocess.run([sys.executable, str(root / script), "--quick", "--out", str(tmp_path), *extra],
                              capture_output=True, text=True, timeout=600, cwd=root)
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
