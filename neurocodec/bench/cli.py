"""``neurocodec bench``, ``neurocodec plot``: run suites in this process, draw RD curves.

The suites are modules of the package (:mod:`neurocodec.bench.suites`), so both commands work
from an installed wheel; results go to ``--out`` or
:func:`neurocodec.bench.results.default_results_dir`. The README's results section is generated
by ``python benchmarks/report.py`` in a source checkout (it edits the checkout, not the package).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from .suites import SUITES


_COMMON_FLAGS = ("-q", "--quiet", "--debug")  # neurocodec's own flags: read here, not passed on


def suite_argv(args: argparse.Namespace) -> list[str]:
    """The suite's own command line: ``neurocodec bench``'s options given before the suite name,
    then everything after it as it is (``--`` separators and neurocodec's -q/--debug dropped)."""
    argv: list[str] = []
    if args.quick:
        argv.append("--quick")
    if args.codecs:
        argv += ["--codecs", *args.codecs]
    if args.data:
        argv += ["--data", *args.data]
    if args.out:
        argv += ["--out", str(args.out)]
    return argv + [a for a in args.suite_args or [] if a != "--" and a not in _COMMON_FLAGS]


def _results_root(argv: list[str]) -> Path:
    """Where the suites write, for the closing message: ``--out`` or the default."""
    from .results import default_results_dir

    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", "--out-dir", dest="out")
    known, _ = ap.parse_known_args(argv)
    return Path(known.out) if known.out else default_results_dir(known.quick)


def cmd_bench(args: argparse.Namespace) -> int:
    from . import suites

    names = list(SUITES) if args.suite == "all" else [args.suite]
    argv = suite_argv(args)
    quiet = args.quiet or any(a in ("-q", "--quiet") for a in args.suite_args or [])
    for suite in names:
        if not quiet:
            print(f"== neurocodec bench {suite} {' '.join(argv)}".rstrip(), file=sys.stderr, flush=True)
        code = suites.run(suite, argv)
        if code:
            raise InputError(f"benchmark suite '{suite}' failed with exit code {code}")
    if not quiet:
        print(f"results under {_results_root(argv)}", file=sys.stderr)
    return 0


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
    p = sub.add_parser("bench", parents=[common], help="run a benchmark suite (writes <results>/<suite>/...)",
                       description="Run a benchmark suite in this process. Everything after the suite name goes "
                                   "to the suite, which also takes its own options "
                                   "(`neurocodec bench video --quick --screen`; `neurocodec bench SUITE --help` "
                                   "lists them).")
    p.add_argument("--quick", action="store_true", help="small, fast run (what CI runs)")
    p.add_argument("--codecs", nargs="+", help="only these codecs/methods (space- or comma-separated)")
    p.add_argument("--data", nargs="+",
                   help="datasets: sample names, or your own data (image: image files/folders, "
                        "video: video files, lossless: image files/folders)")
    p.add_argument("--out", type=Path,
                   help="results folder (default: benchmarks/results[-quick] in a source checkout, "
                        "else ./neurocodec-results[-quick])")
    p.add_argument("suite", choices=(*SUITES, "all"), help="suite to run; 'all' runs every suite")
    p.add_argument("suite_args", nargs=argparse.REMAINDER, metavar="SUITE-OPTION",
                   help="the suite's options (--quick, --codecs, --data, --out and its own)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("plot", parents=[common], help="draw RD curves and print a BD-rate table")
    p.add_argument("suite", choices=SUITES)
    p.add_argument("--dataset")
    p.add_argument("--x", help="x axis key (default per suite, e.g. bpp)")
    p.add_argument("--y", nargs="+", help="y axis keys (default per suite, e.g. psnr-rgb ms-ssim-rgb)")
    p.add_argument("--anchor", help="codec the BD-rates are measured against")
    p.add_argument("--results", help="results folder (default: as for `neurocodec bench`, full runs)")
    p.set_defaults(func=cmd_plot)
