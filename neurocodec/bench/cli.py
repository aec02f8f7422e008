"""``neurocodec bench``, ``neurocodec plot``: run suites, draw RD curves, regenerate the README table."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ..errors import InputError, UsageError
from .results import repo_root

SUITES = ("video", "lossless", "image", "sr", "kvb", "entropy")


def _script_path(suite: str) -> Path:
    return repo_root() / "benchmarks" / suite / "run.py"


def suite_script(suite: str) -> Path:
    script = _script_path(suite)
    if not script.exists():
        raise InputError(f"benchmark suite '{suite}' needs a source checkout: {script} not found")
    return script


def cmd_bench(args: argparse.Namespace) -> int:
    if args.suite == "report":
        from .report import update_readme

        path = update_readme()
        print(f"results section of {path} regenerated", file=sys.stderr)
        return 0
    suites = [s for s in SUITES if suite_script_exists(s)] if args.suite == "all" else [args.suite]
    for suite in suites:
        cmd = [sys.executable, str(suite_script(suite))]
        if args.quick:
            cmd.append("--quick")
        if args.codecs:
            cmd += ["--codecs", *args.codecs]
        if args.data:
            cmd += ["--data", *args.data]
        if args.out:
            cmd += ["--out", str(args.out)]
        if not args.quiet:
            print("+ " + " ".join(cmd), file=sys.stderr)
        code = subprocess.run(cmd, cwd=repo_root()).returncode
        if code:
            raise UsageError(f"benchmark suite '{suite}' failed with exit code {code}") if code == 2 else \
                InputError(f"benchmark suite '{suite}' failed with exit code {code}")
    return 0


def suite_script_exists(suite: str) -> bool:
    return _script_path(suite).exists()


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import DEFAULT_AXES, bd_table, format_table, load_suite, plot_suite

    results_dir = Path(args.results) if args.results else None
    ys = tuple(args.y) if args.y else None
    paths = plot_suite(args.suite, args.dataset, x=args.x, ys=ys, results_dir=results_dir)
    if not paths:
        raise InputError(f"no results to plot for suite '{args.suite}'")
    for p in paths:
        print(p)
    x_default, y_default, anchor_default = DEFAULT_AXES.get(args.suite, ("bpp", ("psnr-rgb",), None))
    anchor = args.anchor or anchor_default
    if anchor:
        for dataset, docs in load_suite(args.suite, args.dataset, results_dir).items():
            if anchor not in docs:
                continue
            y = (ys or y_default or ("psnr-rgb",))[0]
            table = bd_table(docs, anchor, x=args.x or x_default, y=y)
            rows = [{"codec": k, "BD-rate %": v["bd_rate"], f"BD-{y}": v["bd_quality"]} for k, v in table.items()]
            print(f"\n{args.suite}/{dataset}: BD against {anchor} ({y}, pchip)")
            print(format_table(rows, ["codec", "BD-rate %", f"BD-{y}"]))
    return 0


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common], help="run a benchmark suite (writes benchmarks/results/...)")
    p.add_argument("suite", choices=(*SUITES, "all", "report"),
                   help="suite to run; 'all' runs every suite; 'report' regenerates the README results section")
    p.add_argument("--quick", action="store_true", help="small, fast run (what CI runs)")
    p.add_argument("--codecs", nargs="+", help="only these codecs/methods")
    p.add_argument("--data", nargs="+", help="only these datasets")
    p.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("plot", parents=[common], help="draw RD curves and print a BD-rate table")
    p.add_argument("suite", choices=SUITES)
    p.add_argument("--dataset")
    p.add_argument("--x", help="x axis key (default per suite, e.g. bpp)")
    p.add_argument("--y", nargs="+", help="y axis keys (default per suite, e.g. psnr-rgb ms-ssim-rgb)")
    p.add_argument("--anchor", help="codec the BD-rates are measured against")
    p.add_argument("--results", help="results folder (default benchmarks/results)")
    p.set_defaults(func=cmd_plot)
