"""Check of the learning-rate protocol at the larger carphone sizes: both codecs at several learning
rates *at that size* and the full epoch count, instead of the one-size 20-epoch screen that
``neurocodec bench video`` uses (``neurocodec.bench.suites.video``). Answers whether the narrower
HNeRV-NeRV gap at those sizes is a tuning artefact.

``python benchmarks/video/lr_by_size.py [--bpp 0.16 0.25] [--epochs 40] [--quick]``
-> ``results/video/carphone/lr_by_size.json`` (points are shared with the video suite's cache)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from neurocodec.bench.results import default_results_dir, environment
from neurocodec.bench.suites.video import load_clip, lr_rows

LRS = (0.01, 0.015, 0.025, 0.04)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bpp", type=float, nargs="+", default=[0.16, 0.25], help="HNeRV target_bpp of the sizes")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--cache", default=None, help="point cache (default /tmp/neurocodec_video_bench; --quick: temporary)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="CI: 8 frames, 2 epochs, one size, two lrs")
    a = ap.parse_args(argv)
    if a.cache is None:
        import tempfile

        a.cache = tempfile.mkdtemp(prefix="neurocodec_lr_by_size_") if a.quick else "/tmp/neurocodec_video_bench"
    lrs = LRS[:2] if a.quick else LRS
    if a.quick:
        a.bpp, a.epochs = [0.3], 2  # 8 frames: the full sizes' targets are below the smallest model
    cache = Path(a.cache).resolve() / ("quick" if a.quick else "full") / "carphone"  # workers run elsewhere
    cache.mkdir(parents=True, exist_ok=True)
    clip_path = cache / "clip.npy"
    if not clip_path.exists():
        np.save(clip_path, load_clip("carphone", a.quick))
    common = {"epochs": a.epochs, "seed": 0, "device": "cpu"}
    rows, best = [], {}
    for bpp in a.bpp:
        hnerv = lr_rows("hnerv", {**common, "target_bpp": bpp}, lrs, clip_path, cache)
        if not hnerv:
            continue
        # every lr gives the same architecture: NeRV gets the HNeRV point's value count
        nerv = lr_rows("nerv", {**common, "target_params": hnerv[0]["values"]}, lrs, clip_path, cache)
        rows += [{**r, "target_bpp": bpp} for r in hnerv + nerv]
        b = {name: max(rs, key=lambda r: r["psnr-rgb"]) for name, rs in (("hnerv", hnerv), ("nerv", nerv)) if rs}
        best[str(bpp)] = b
        if len(b) == 2:
            b["delta_db"] = b["hnerv"]["psnr-rgb"] - b["nerv"]["psnr-rgb"]
            print(f"bpp {bpp}: best hnerv {b['hnerv']['psnr-rgb']:.2f} (lr {b['hnerv']['lr']}) vs best nerv "
                  f"{b['nerv']['psnr-rgb']:.2f} (lr {b['nerv']['lr']}): {b['delta_db']:+.2f} dB", flush=True)
    doc = {"description": f"carphone, {a.epochs} epochs: HNeRV and NeRV at lrs {list(lrs)} at each larger size "
                          "(NeRV at the HNeRV point's value count); best of each codec per size",
           "best": best, "runs": rows, "quick": a.quick, "environment": environment()}
    out = (a.out or default_results_dir(a.quick)) / "video" / "carphone" / "lr_by_size.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
