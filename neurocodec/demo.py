"""``make demo``: real encodes and decodes of the bundled sample data, with a table of sizes and quality.

Every row writes a real ``.ncx`` file, reads it back from disk and decodes it. Neural codecs appear
as soon as they (and their shipped weights) are available in this build.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import datasets
from .codec import decode, encode, list_codecs
from .container import unpack
from .io import read_bytes, write_bytes_atomic
from .metrics import bpd, bpp, psnr, video_psnr


def _cases(available: set[str]) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(label, codec, data, params) rows; neural rows only where the codec is in this build."""
    clip = datasets.load("carphone", max_frames=30)
    photo = datasets.load("astronaut")[::2, ::2]  # 256x256 keeps the demo quick
    (_, _), (mnist_test, mnist_labels) = datasets.mnist_5k_split()
    pick = np.random.default_rng(0).permutation(len(mnist_test))[:100]  # all ten classes
    digits, labels = mnist_test[pick], mnist_labels[pick]
    rows: list[tuple[str, str, Any, dict[str, Any]]] = [
        ("carphone 30f", "x264", clip, {"crf": 28, "preset": "veryslow"}),
        ("carphone 30f", "x265", clip, {"crf": 30, "preset": "slow"}),
        ("carphone 30f", "svtav1", clip, {"crf": 45, "preset": 6}),
        ("astronaut/2", "jpeg", photo, {"quality": 75}),
        ("astronaut/2", "webp", photo, {"quality": 75}),
        ("astronaut/2", "jpegxl", photo, {"quality": 75}),
        ("astronaut/2", "png", photo, {}),
        ("mnist x100", "png", digits, {}),
        ("mnist x100", "webp", digits, {}),
        ("mnist x100", "jpegxl", digits, {}),
    ]
    neural = [
        ("carphone 30f", "hnerv", clip, {"quality": 6, "time_budget": 40}),
        ("astronaut/2", "ldm", photo, {"quality": 3}),
        ("mnist x100", "pc", digits, {"model": "mnist"}),
        ("mnist x100", "kvb", (digits, labels), {"model": "mnist"}),
    ]
    rows += [row for row in neural if row[1] in available]
    return rows


def run(out_dir: Path, quiet: bool = False) -> list[dict[str, Any]]:
    available = set(list_codecs())
    table = []
    for label, codec, data, params in _cases(available):
        truth = None
        if isinstance(data, tuple):  # a representation codec: (inputs, class labels)
            data, truth = data
        path = out_dir / f"{label.replace(' ', '_').replace('/', '_')}.{codec}.ncx"
        t0 = time.perf_counter()
        write_bytes_atomic(path, encode(data, codec=codec, progress=not quiet, **params))
        t1 = time.perf_counter()
        blob = read_bytes(path)
        out = decode(blob)
        t2 = time.perf_counter()
        note = None
        if truth is not None:
            rate = f"{8 * len(blob) / len(data):.0f} bit/img"
            verdict = f"acc {np.mean(np.asarray(out.logits).argmax(1) == truth):.0%}"
            head = unpack(blob).header  # the footnote says what this file holds, read from the file
            note = (f"{codec} stores {head['shape'][1]} codebook indices (of {head['num_keys']} keys each) per digit "
                    f"with model '{params.get('model')}', decoded to class logits (acc = accuracy on these digits).")
        else:
            quality = video_psnr(data, out) if data.ndim == 4 and data.shape[-1] == 3 else psnr(data, out)
            rate = (f"{bpp(len(blob), data.shape):.3f} bpp" if data.ndim != 3 or data.shape[-1] == 3 else
                    f"{bpd(len(blob), data.shape):.3f} bpd")
            verdict = "lossless" if np.array_equal(out, data) else f"{quality:.2f} dB"
        table.append({"data": label, "codec": codec, "bytes": len(blob), "rate": rate, "psnr": verdict,
                      "encode_s": t1 - t0, "decode_s": t2 - t1, "note": note})
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurocodec.demo", description=__doc__)
    parser.add_argument("--out", type=Path, help="keep the .ncx files here (default: a temporary folder)")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = run(out_dir, args.quiet)
    header = f"{'data':<14}{'codec':<8}{'bytes':>9}  {'rate':<13}{'quality':<11}{'enc s':>7}{'dec s':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['data']:<14}{r['codec']:<8}{r['bytes']:>9}  {r['rate']:<13}{r['psnr']:<11}"
              f"{r['encode_s']:>7.2f}{r['decode_s']:>7.2f}")
    print("\nbytes = whole .ncx file (header included); PSNR on 8-bit RGB; video PSNR = mean over frames;\n"
          "hnerv trains a network on the clip for 40 s here (quality grows with training time: see the README).")
    for r in rows:
        if r.get("note"):
            print(r["note"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
