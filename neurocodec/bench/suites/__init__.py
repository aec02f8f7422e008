"""The benchmark suites, importable from an installed package.

``neurocodec bench <suite>`` imports ``neurocodec.bench.suites.<suite>`` and calls its
``main(argv)`` in this process; ``python -m neurocodec.bench.suites.<suite>`` does the same. Every
suite takes ``--quick`` (CI size), ``--out DIR`` (results root; default
:func:`neurocodec.bench.results.default_results_dir`), ``--data ...`` and ``--codecs ...`` (space-
or comma-separated), and writes the one JSON schema of :mod:`neurocodec.bench.results`.

Why here and not in ``benchmarks/``: a wheel carries no ``benchmarks/`` folder, and scripts run by
path need ``sys.path`` patching to find each other. The repo's ``benchmarks/`` keeps the committed
results, the README generator and the long-run helper scripts, which import from here.

Importing this package (or any suite module) does not import torch or any codec wing: the suites
import what they measure inside their functions.
"""
from __future__ import annotations

import importlib
from types import ModuleType

SUITES: tuple[str, ...] = ("video", "lossless", "image", "sr", "kvb", "entropy", "startup", "perf")


def load(suite: str) -> ModuleType:
    """The module of one suite (``neurocodec.bench.suites.<suite>``)."""
    from ...errors import UsageError

    if suite not in SUITES:
        raise UsageError(f"unknown benchmark suite '{suite}' (known: {', '.join(SUITES)})")
    return importlib.import_module(f"{__name__}.{suite}")


def run(suite: str, argv: list[str] | None = None) -> int:
    """Run one suite in this process with command-line style ``argv``; returns its exit status."""
    return int(load(suite).main(list(argv or [])) or 0)
