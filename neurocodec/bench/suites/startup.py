"""Start-up cost of the command line: wall time and modules loaded by a fresh process.

    neurocodec bench startup [--quick] [--out DIR]

Why: a shell loop over thousands of files pays the start-up of every call, so `--help`, `codecs`,
`info` and a png encode must not import torch or numba. Each command runs in a fresh interpreter
(``python -c`` calling ``neurocodec.cli.main``), best of the repeats; the JSON records wall seconds,
the import time of ``neurocodec.cli`` (``-X importtime``, cumulative) and whether torch/numba were
loaded. Writes <results>/startup/synthetic/cli.json.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..results import write_results
from ._shared import parser

COMMANDS = ("--help", "codecs", "info", "encode-png")
_PROBE = """
import sys, contextlib, io
from neurocodec.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print("MODULES", sum(m in sys.modules for m in ("torch",)), sum(m in sys.modules for m in ("numba",)), code)
"""


def argv_of(command: str, folder: Path) -> list[str]:
    if command == "info":
        return ["info", str(folder / "x.ncx")]
    if command == "encode-png":
        return ["encode", str(folder / "x.png"), "-c", "png", "-o", str(folder / "y.ncx"), "-q"]
    return [command]


def probe(argv: list[str]) -> dict:
    """One fresh process: wall seconds, cli import microseconds, torch/numba loaded."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", _PROBE, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - start
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("MODULES"))
    _, torch, numba, code = line.split()
    cli_us = next((int(ln.split("|")[1]) for ln in run.stderr.splitlines() if ln.rstrip().endswith("| neurocodec.cli")), 0)
    return {"wall_s": wall, "import_s": cli_us / 1e6, "torch": int(torch), "numba": int(numba), "exit": int(code)}


def main(argv: list[str] | None = None) -> int:
    ap = parser("startup", __doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--codecs", nargs="+", help="ignored")
    ap.add_argument("--data", nargs="+", help="ignored (a synthetic 64x64 image)")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else 5
    from ... import io as nio
    from ...codec import encode

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        img = (np.indices((64, 64)).sum(0)[..., None] * np.array([1, 2, 3]) % 256).astype(np.uint8)
        nio.write_image(folder / "x.png", img)
        nio.write_bytes_atomic(folder / "x.ncx", encode(img, codec="png"))
        res: dict[str, list] = {k: [] for k in ("command", "wall_s", "import_s", "torch", "numba")}
        for command in COMMANDS:
            runs = [probe(argv_of(command, folder)) for _ in range(repeats)]
            best = min(runs, key=lambda r: r["wall_s"])
            res["command"].append(command)
            for k in ("wall_s", "import_s", "torch", "numba"):
                res[k].append(best[k])
            print(f"{command:<12} {best['wall_s']:.3f} s wall, {best['import_s']:.3f} s import of neurocodec.cli, "
                  f"torch {'loaded' if best['torch'] else 'not loaded'}, numba {'loaded' if best['numba'] else 'not loaded'}")
    write_results("startup", "synthetic", "cli", res, quick=args.quick, out_dir=args.out,
                  description=f"fresh-process start-up of neurocodec commands, best of {repeats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
