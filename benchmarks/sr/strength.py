"""Choose the diffusion upsampler's default SDEdit strength on *training* photos (never the held-out
astronaut, coffee, chelsea): for each strength, PSNR and detail ratio (gradient energy relative to
the original, 1 = as sharp) of x2 and x4 upsamplings of centre crops, 2 seeds. The pick is the
strength whose mean detail ratio is closest to 1 (samples as detailed as real photos); PSNR is
reported beside it so the price is visible.

``python benchmarks/sr/strength.py [--weights DIR] [--quick]`` -> ``results/sr/strength_screen.json``
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from neurocodec import datasets
from neurocodec.bench.results import default_results_dir, environment
from neurocodec.bench.suites.sr import center, make_pair, scores
from neurocodec.codecs.ldm import api
from neurocodec.codecs.ldm.image import resize

PHOTOS = ("rocket", "motorcycle_left", "camera")  # in the ldm training set, not held out
STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None, help="ldm weights folder (default: shipped)")
    ap.add_argument("--quick", action="store_true", help="CI mode: 2 strengths, one scale, one seed, 64px crops")
    ap.add_argument("--out-dir", "--out", dest="out_dir", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    assert not set(PHOTOS) & set(datasets.HELD_OUT_PHOTOS)
    strengths, scales, seeds, crop = ((0.3, 1.0), (4.0,), (0,), 64) if a.quick else (STRENGTHS, (2.0, 4.0), (0, 1), 192)
    crops = {}
    for n in PHOTOS:
        img = datasets.load(n)
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        crops[n] = center(img, crop)
    rows = []
    base = {}
    for s in scales:
        for n, img in crops.items():
            hr, lr = make_pair(img, s)
            base[(s, n)] = (hr, lr)
            for m, out in (("bicubic", resize(lr, *hr.shape[:2])), ("liif", api.upsample(lr, s, weights_dir=a.weights))):
                p, q, d = scores(out, hr, s)
                rows.append({"method": m, "scale": s, "photo": n, "psnr": p, "ssim": q, "detail": d})
    for st in strengths:
        for s in scales:
            for n in crops:
                hr, lr = base[(s, n)]
                for seed in seeds:
                    out = api.upsample(lr, s, method="diffusion", steps=a.steps, seed=seed, strength=st, weights_dir=a.weights)
                    p, q, d = scores(out, hr, s)
                    rows.append({"method": "diffusion", "strength": st, "scale": s, "photo": n, "seed": seed,
                                 "psnr": p, "ssim": q, "detail": d})
    summary = []
    for key in [("bicubic", None), ("liif", None)] + [("diffusion", st) for st in strengths]:
        sel = [r for r in rows if r["method"] == key[0] and r.get("strength") == key[1]]
        summary.append({"method": key[0], "strength": key[1], "psnr": float(np.mean([r["psnr"] for r in sel])),
                        "detail": float(np.mean([r["detail"] for r in sel]))})
    diff = [r for r in summary if r["method"] == "diffusion"]
    pick = min(diff, key=lambda r: abs(np.log(r["detail"])))["strength"]
    print(f"{'method':10s} {'strength':>8s} {'PSNR':>7s} {'detail':>7s}")
    for r in summary:
        print(f"{r['method']:10s} {r['strength'] if r['strength'] is not None else '':>8} {r['psnr']:7.2f} {r['detail']:7.3f}")
    print(f"pick: strength {pick} (detail ratio closest to 1)")
    doc = {"description": "diffusion upsampler strength screen on training photos " + ", ".join(PHOTOS)
                          + f"; centre {crop}px crops, scales {list(scales)}, seeds {list(seeds)}, {a.steps} DDIM steps",
           "pick": pick, "summary": summary, "rows": rows, "environment": environment(), "quick": a.quick}
    out = (a.out_dir or default_results_dir(a.quick)) / "sr" / "strength_screen.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
