"""Check of the learning-rate protocol at the larger carphone sizes: both codecs at several learning
rates *at that size* and the full epoch count, instead of the one-size 20-epoch screen that
``run.py`` uses. Answers whether the narrower HNeRV-NeRV gap at those sizes is a tuning artefact.

``python benchmarks/video/lr_by_size.py [--bpp 0.16 0.25] [--epochs 40] [--quick]``
-> ``results/video/carphone/lr_by_size.json`` (points are shared with ``run.py``'s cache)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import load_clip, run_point  # noqa: E402

from neurocodec.bench.results import default_results_dir, environment  # noqa: E402

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
        a.bpp, a.epochs = a.bpp[:1], 2
    cache = Path(a.cache) / ("quick" if a.quick else "full") / "carphone"
    cache.mkdir(parents=True, exist_ok=True)
    clip_path = cache / "clip.npy"
    if not clip_path.exists():
        np.save(clip_path, load_clip("carphone", a.quick))
    common = {"epochs": a.epochs, "seed": 0, "device": "cpu"}
    rows = []
    for bpp in a.bpp:
        h_best = None
        for lr in lrs:
            h = run_point({"codec": "hnerv", "clip": str(clip_path), "params": {**common, "target_bpp": bpp, "lr": lr},
                           "decode": {"device": "cpu"}}, cache)
            if h is None:
                continue
            rows.append({"codec": "hnerv", "target_bpp": bpp, "lr": lr, "lr_used": h["fit"]["lr"],
                         "values": h["fit"]["model_values"], "psnr-rgb": h["psnr-rgb"]})
            print(f"hnerv bpp {bpp} lr {lr:<6g} {h['psnr-rgb']:.2f}", flush=True)
            h_best = h if h_best is None or h["psnr-rgb"] > h_best["psnr-rgb"] else h_best
        values = h_best["fit"]["model_values"]  # every lr gives the same architecture
        for lr in lrs:
            n = run_point({"codec": "nerv", "clip": str(clip_path), "params": {**common, "target_params": values, "lr": lr},
                           "decode": {"device": "cpu"}}, cache)
            if n is None:
                continue
            rows.append({"codec": "nerv", "target_bpp": bpp, "lr": lr, "lr_used": n["fit"]["lr"],
                         "values": n["fit"]["model_values"], "psnr-rgb": n["psnr-rgb"]})
            print(f"nerv  bpp {bpp} lr {lr:<6g} {n['psnr-rgb']:.2f}", flush=True)
    best = {}
    for bpp in a.bpp:
        for codec in ("hnerv", "nerv"):
            sel = [r for r in rows if r["codec"] == codec and r["target_bpp"] == bpp]
            if sel:
                best.setdefault(str(bpp), {})[codec] = max(sel, key=lambda r: r["psnr-rgb"])
        b = best.get(str(bpp), {})
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
