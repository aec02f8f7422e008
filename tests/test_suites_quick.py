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
        assert doc["quick"] is True and doc["suite"] == suite and doc["results"], f
        lengths = {len(v) for v in doc["results"].values()}
        assert len(lengths) == 1 and lengths.pop() >= 1, f
