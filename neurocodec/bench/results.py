"""The one JSON schema every benchmark writes (CompressAI-like), and where it goes.

``<results>/<suite>/<dataset>/<codec>.json``, where ``<results>`` is ``--out`` or
:func:`default_results_dir`: ``benchmarks/results`` of a source checkout (quick runs:
``benchmarks/results-quick``), else ``./neurocodec-results`` (quick: ``./neurocodec-results-quick``)
in the current directory, so an installed wheel never writes into its own site-packages::

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


def source_checkout() -> Path | None:
    """The root of the source checkout this ``neurocodec`` package was imported from, or None.

    Why explicit: an installed wheel lives in site-packages, where "two folders up" is some
    unrelated directory; only a folder holding this project's ``pyproject.toml`` *and* a
    ``benchmarks/`` folder next to the package counts as a checkout (an editable install counts).
    Looked up on each call, never at import.
    """
    package = Path(__file__).resolve().parent.parent  # .../neurocodec (bench/ is inside it)
    root = package.parent
    project = root / "pyproject.toml"
    if not (project.is_file() and (root / "benchmarks").is_dir()):
        return None
    try:
        text = project.read_text()
    except OSError:
        return None
    return root if 'name = "neurocodec"' in text else None


def default_results_dir(quick: bool = False) -> Path:
    """Where a suite writes when no ``--out`` is given.

    In a source checkout: ``benchmarks/results`` (committed full runs) or, for quick runs,
    ``benchmarks/results-quick`` (git-ignored), so a CI-sized run never overwrites a committed
    result. Installed: ``neurocodec-results`` (quick: ``neurocodec-results-quick``) in the current
    directory."""
    root = source_checkout()
    if root is not None:
        return root / "benchmarks" / ("results-quick" if quick else "results")
    return Path.cwd() / ("neurocodec-results-quick" if quick else "neurocodec-results")


def _git_commit() -> str | None:
    """HEAD of the checkout (``-dirty`` when tracked files outside ``benchmarks/results`` changed:
    a suite rewrites its own committed results as it goes, which says nothing about the code that
    measured them); None when installed."""
    root = source_checkout()
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)benchmarks/results"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _command() -> str:
    """The command line that made a result; ``python -m neurocodec.cli`` reads as ``neurocodec``."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    name = "neurocodec" if argv0.name in ("cli.py", "__main__.py") and argv0.parent.name == "neurocodec" else argv0.name
    return " ".join([name] + sys.argv[1:])


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
        "command": _command(),
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
