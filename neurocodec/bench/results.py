"""The one JSON schema every benchmark writes (CompressAI-like), and where it goes.

``benchmarks/results/<suite>/<dataset>/<codec>.json``::

    {
      "name": "hnerv",                      # codec name as registered
      "description": "...",                 # how the points were made (params, epochs, ...)
      "suite": "video", "dataset": "carphone", "quick": false,
      "environment": {...},                 # CPU/GPU, package versions, git commit, command line
      "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                  "encoding_time": [...], "decoding_time": [...], "peak_memory_mb": [...], ...},
      "extra": {...}                        # suite-specific (params per point, per-class accuracy, ...)
    }

Every list in ``results`` has one entry per RD point, in the same order.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
_PACKAGES = ("neurocodec", "numpy", "torch", "numba", "constriction", "av", "pillow", "imagecodecs", "imageio-ffmpeg")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_results_dir(quick: bool = False) -> Path:
    """``benchmarks/results`` (committed full runs) or, for quick runs, ``benchmarks/results-quick``
    (git-ignored), so a CI-sized run never overwrites a committed result."""
    return repo_root() / "benchmarks" / ("results-quick" if quick else "results")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root(),
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Where a result was measured: machine, accelerator, package versions, commit, command."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": None,
        "packages": {},
        "git_commit": _git_commit(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
    }
    for pkg in _PACKAGES:
        try:
            env["packages"][pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _jsonable(value: Any) -> Any:
    """Numbers (numpy included) as floats/ints, bools as bools, dicts/lists/strings as they are."""
    import numpy as np

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    return str(value)


def result_path(suite: str, dataset: str, codec: str, out_dir: str | os.PathLike | None = None,
                quick: bool = False) -> Path:
    base = Path(out_dir) if out_dir is not None else default_results_dir(quick)
    return base / suite / dataset / f"{codec}.json"


def write_results(
    suite: str,
    dataset: str,
    codec: str,
    results: dict[str, list],
    *,
    description: str = "",
    quick: bool = False,
    extra: dict[str, Any] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> Path:
    """Write one codec's results in the schema above (atomically) and return the path."""
    from ..io import write_bytes_atomic

    lengths = {k: len(v) for k, v in results.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"result lists differ in length: {lengths}")
    doc = {
        "schema": SCHEMA_VERSION,
        "name": codec,
        "description": description,
        "suite": suite,
        "dataset": dataset,
        "quick": quick,
        "environment": environment(),
        "results": {k: [_jsonable(v) for v in vals] for k, vals in results.items()},
        "extra": extra or {},
    }
    path = result_path(suite, dataset, codec, out_dir, quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(doc, indent=2, allow_nan=True) + "\n").encode())
    return path


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
