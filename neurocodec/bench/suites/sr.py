"""Arbitrary-scale super-resolution on the held-out photos: bicubic vs the ldm LIIF path vs the ldm
latent-diffusion path.

Protocol: HR = the photo cropped so that ``round(lr_size x s)`` is exactly its size, LR = PIL bicubic
(antialiased) down-sampling, metrics = RGB PSNR / SSIM with a border shave of ``ceil(s)`` pixels.
Datasets written through ``write_results('sr', ...)``:

* ``held_out``: full photos, bicubic and LIIF (mean over astronaut, coffee, chelsea; per photo in extra).
* ``held_out_crop<N>``: a centre ``N x N`` HR crop of each photo, bicubic, LIIF and diffusion
  (3 seeds: mean and std over seeds of the photo mean). The crop keeps the CPU cost of the
  diffusion path bounded; bicubic and LIIF are re-measured on the same crops for comparison.

    neurocodec bench sr [--quick] [--data NAME|FILE|DIR ...] [--out DIR] [--steps 10 --crop 192]

``--data`` with image files or folders names the datasets ``<folder name>`` and
``<folder name>_crop<N>`` instead of ``held_out`` (grey and RGBA images are compared as RGB).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from ... import metrics
from ..results import default_results_dir, write_results
from ._shared import centre_crop, load_photos, parser, split_names, to_rgb, torch_threads

SCALES = (2.0, 3.0, 4.0, 2.5, 3.7, 6.0, 8.0)


def make_pair(hr: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to round(lr x s), LR) for scale ``s``."""
    from neurocodec.codecs.ldm import api
    from neurocodec.codecs.ldm.image import resize

    h, w = hr.shape[:2]
    lh, lw = int(math.floor(h / s)), int(math.floor(w / s))
    oh, ow = api.output_size(lh, lw, s)
    crop = np.ascontiguousarray(hr[:oh, :ow])
    return crop, resize(crop, lh, lw)


def scores(out: np.ndarray, ref: np.ndarray, s: float) -> tuple[float, float, float]:
    """(PSNR, SSIM, detail ratio) with a border shave of ceil(s)."""
    k = int(math.ceil(s))
    a, b = out[k:-k, k:-k], ref[k:-k, k:-k]
    return metrics.psnr(a, b), metrics.ssim(a, b), metrics.detail_ratio(a, b)


def center(img: np.ndarray, n: int) -> np.ndarray:
    """The centre ``n x n`` crop (smaller sides kept whole)."""
    return centre_crop(img, n)


def main(argv: list[str] | None = None) -> int:
    ap = parser("sr", __doc__)
    ap.add_argument("--quick", action="store_true", help="CI mode: fewer scales, seeds and steps")
    ap.add_argument("--weights", type=Path, default=None, help="ldm weights folder (default: shipped)")
    ap.add_argument("--out-dir", "--out", dest="out_dir", type=Path, default=None,
                    help="results root (default: see neurocodec.bench.results.default_results_dir)")
    ap.add_argument("--codecs", nargs="+", help="methods; the suite always measures bicubic, liif and diffusion together")
    ap.add_argument("--data", nargs="+",
                    help="photo names, image files or folders of images (default: the held-out astronaut, coffee, chelsea)")
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps of the diffusion path")
    ap.add_argument("--strength", type=float, default=None,
                    help="SDEdit strength of the diffusion path (default: the api's default)")
    ap.add_argument("--crop", type=int, default=192, help="HR crop side for the diffusion comparison")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a shared CPU)")
    a = ap.parse_args(argv)
    if a.codecs and set(split_names(a.codecs)) != {"bicubic", "liif", "diffusion"}:
        ap.error("the sr suite measures bicubic, liif and diffusion together (each is the others' reference)")
    with torch_threads(a.threads):  # restored afterwards: the suite may run inside the caller's process
        return _run(a)


def _run(a: argparse.Namespace) -> int:
    from neurocodec import datasets
    from neurocodec.codecs.ldm import api
    from neurocodec.codecs.ldm.image import resize

    # quick (CI) mode: centre 256px crops, 3 scales, diffusion at x4 only on 96px crops, 2 seeds, 4 steps
    scales = (2.0, 3.7, 8.0) if a.quick else SCALES
    diff_scales = (4.0,) if a.quick else SCALES
    seeds = (0, 1) if a.quick else (0, 1, 2)
    steps = min(a.steps, 4) if a.quick else a.steps
    if a.quick:
        a.crop = min(a.crop, 96)
    label, loaded = load_photos(a.data or datasets.HELD_OUT_PHOTOS)
    dataset = label or "held_out"
    photos = {n: to_rgb(p) for n, p in loaded.items()}
    if a.quick:
        photos = {n: center(p, 256) for n, p in photos.items()}
    out_dir = a.out_dir or default_results_dir(a.quick)
    strength = a.strength if a.strength is not None else api.DEFAULT_STRENGTH
    env = {"quick": a.quick}

    # ---- full photos: bicubic vs LIIF
    full: dict[str, dict] = {m: {"scale": [], "psnr-rgb": [], "ssim-rgb": [], "time": []} for m in ("bicubic", "liif")}
    per_photo: dict[str, dict] = {m: {} for m in full}
    for s in scales:
        acc = {m: [] for m in full}
        for name, img in photos.items():
            hr, lr = make_pair(img, s)
            t0 = time.perf_counter()
            bic = resize(lr, hr.shape[0], hr.shape[1])
            t1 = time.perf_counter()
            sr = api.upsample(lr, s, weights_dir=a.weights)
            t2 = time.perf_counter()
            assert sr.shape == hr.shape, (sr.shape, hr.shape)
            for m, out, dt in (("bicubic", bic, t1 - t0), ("liif", sr, t2 - t1)):
                p, q, _ = scores(out, hr, s)
                acc[m].append((p, q, dt))
                per_photo[m].setdefault(name, []).append({"scale": s, "psnr": p, "ssim": q})
        for m in full:
            arr = np.array(acc[m])
            full[m]["scale"].append(s)
            full[m]["psnr-rgb"].append(arr[:, 0].mean())
            full[m]["ssim-rgb"].append(arr[:, 1].mean())
            full[m]["time"].append(arr[:, 2].mean())
    for m in full:
        write_results("sr", dataset, m, full[m], quick=a.quick, out_dir=out_dir,
                      description=f"{m} on the full {'held-out photos' if label is None else dataset + ' photos'}; "
                                  "RGB, shave ceil(scale)",
                      extra={"per_photo": per_photo[m], "photos": list(photos), **env})

    # ---- centre crops: bicubic vs LIIF vs diffusion (seeds)
    crops = {n: center(img, a.crop) for n, img in photos.items()}
    sample_name = "coffee" if "coffee" in crops else next(iter(crops))
    keys = ("scale", "psnr-rgb", "ssim-rgb", "detail-ratio", "psnr-rgb-std", "ssim-rgb-std", "detail-ratio-std", "time")
    cres: dict[str, dict] = {m: {k: [] for k in keys} for m in ("bicubic", "liif", "diffusion")}
    samples: dict[float, dict] = {}
    for s in diff_scales:
        runs: dict[str, list] = {"bicubic": [], "liif": []}
        seed_means = []
        times = []
        for name, img in crops.items():
            hr, lr = make_pair(img, s)
            bic = resize(lr, hr.shape[0], hr.shape[1])
            sr = api.upsample(lr, s, weights_dir=a.weights)
            runs["bicubic"].append(scores(bic, hr, s))
            runs["liif"].append(scores(sr, hr, s))
            if name == sample_name:
                samples[s] = {"hr": hr, "bicubic": bic, "liif": sr}
        for seed in seeds:
            vals = []
            for name, img in crops.items():
                hr, lr = make_pair(img, s)
                t0 = time.perf_counter()
                d = api.upsample(lr, s, method="diffusion", steps=steps, seed=seed, strength=strength,
                                 weights_dir=a.weights)
                times.append(time.perf_counter() - t0)
                vals.append(scores(d, hr, s))
                if name == sample_name and seed == 0:
                    samples[s]["diffusion"] = d
            seed_means.append(np.mean(vals, axis=0))
        for m in ("bicubic", "liif"):
            arr = np.array(runs[m])
            for k, v in zip(keys, (s, *arr.mean(axis=0), 0.0, 0.0, 0.0, 0.0)):
                cres[m][k].append(v)
        sm = np.array(seed_means)
        for k, v in zip(keys, (s, *sm.mean(axis=0), *sm.std(axis=0), np.mean(times))):
            cres["diffusion"][k].append(v)
    for m in cres:
        write_results("sr", f"{dataset}_crop{a.crop}", m, cres[m], quick=a.quick, out_dir=out_dir,
                      description=f"{m} on centre {a.crop}px crops of the {'held-out' if label is None else dataset} "
                                  "photos; diffusion: "
                                  f"{len(seeds)} seeds, {steps} DDIM steps, strength {strength:g}, std over seeds; "
                                  "detail-ratio = gradient energy relative to the original (1 = as sharp)",
                      extra={"seeds": list(seeds), "steps": steps, **env})

    # ---- table
    print(f"{'scale':>6} | {'bicubic':>8} {'liif':>8} {'gain':>6} | crop{a.crop}: {'bicubic':>8} {'liif':>8} {'diffusion':>14}")
    for s in list(scales) + [d for d in diff_scales if d not in scales]:
        if s in scales:
            i = scales.index(s)
            b, l = full["bicubic"]["psnr-rgb"][i], full["liif"]["psnr-rgb"][i]
            line = f"{s:>6.2f} | {b:8.2f} {l:8.2f} {l - b:+6.2f} |"
        else:
            line = f"{s:>6.2f} | {'':8} {'':8} {'':6} |"
        if s in cres["diffusion"]["scale"]:
            j = cres["diffusion"]["scale"].index(s)
            line += (f"         {cres['bicubic']['psnr-rgb'][j]:8.2f} {cres['liif']['psnr-rgb'][j]:8.2f} "
                     f"{cres['diffusion']['psnr-rgb'][j]:8.2f}+-{cres['diffusion']['psnr-rgb-std'][j]:.2f}")
        print(line)

    # ---- sample crops and a plot (full mode only: CI does not need pictures)
    print(f"results: {out_dir / 'sr'}")
    if not a.quick:
        from ..plot import rd_figure, save_figure, write_crop_strip

        pics = out_dir / "sr" / "crops"
        for s, d in samples.items():
            names = [k for k in ("hr", "bicubic", "liif", "diffusion") if k in d]
            n = min(d[k].shape[0] for k in names), min(d[k].shape[1] for k in names)
            tiles = [d[k][: n[0], : n[1]] for k in names]
            captions = [{"name": "original (HR)", "note": f"{n[1]}x{n[0]}"} if k == "hr" else
                        {"name": k, "setting": f"x{s:g}", "psnr": float(metrics.psnr(tiles[0], t)),
                         **({"note": f"seed 0, {steps} steps"} if k == "diffusion" else {})}
                        for k, t in zip(names, tiles)]
            write_crop_strip(pics, f"{sample_name}_x{s:g}_hr_bicubic_liif_diffusion", tiles, captions,
                             title=f"sr: {sample_name}, {a.crop}px centre crop down-scaled by {s:g} and upscaled back; "
                                   "PSNR of each tile against the HR tile (no shave)")
        # the same latent model, unconditional: what `neurocodec generate --size 128x128 --seed N` draws
        gens = [api.generate(128, 128, seed=seed, steps=20, weights_dir=a.weights) for seed in range(4)]
        write_crop_strip(pics, "generate_128x128_seeds0-3", gens,
                         [{"name": "generate", "setting": f"seed {seed}"} for seed in range(4)],
                         title="ldm generate 128x128, 20 DDIM steps (neurocodec generate --size 128x128 --seed N)")
        try:
            keys = ("scale", "psnr-rgb", "psnr-rgb-std")
            full_docs = {m: {"results": {k: v for k, v in full[m].items() if k in keys}} for m in full}
            crop_docs = {m: {"results": {k: v for k, v in cres[m].items() if k in keys}} for m in cres}
            fig = rd_figure([(full_docs, "scale", "psnr-rgb", "held-out photos" if label is None else dataset),
                             (crop_docs, "scale", "psnr-rgb", f"centre {a.crop}px crops (diffusion: mean, std over seeds)")],
                            title="arbitrary-scale super-resolution", yerr={"psnr-rgb": "psnr-rgb-std"})
            save_figure(fig, out_dir / "sr" / "psnr_vs_scale.png", dpi=100)
        except ImportError:
            print("matplotlib missing: no plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
