"""Image coding on the held-out photos: ldm vs JPEG, WebP and JPEG XL.

Every codec goes through ``neurocodec``'s container (``Codec.encode``), so bits count the same way.
Per RD point (mean over the photos): bpp, RGB PSNR, MS-SSIM, and ``psnr-2x-rgb``: the same file
decoded at 2x its size (ldm renders 2x directly; classical codecs are decoded then bicubic-upsampled)
against the bicubic-upsampled original. BD-rate (PSNR) of each codec against JPEG goes into ``extra``.

``python benchmarks/image/run.py [--quick]``
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import neurocodec
from neurocodec import datasets, metrics
from neurocodec.bench.results import default_results_dir, write_results
from neurocodec.codecs.ldm.codec import QUALITIES, LDMCodec
from neurocodec.codecs.ldm.train import resize

CLASSICAL_Q = {"jpeg": (5, 10, 20, 35, 50, 70, 85, 95), "webp": (5, 10, 20, 35, 50, 70, 85, 95),
               "jpegxl": (10, 25, 40, 55, 70, 80, 90, 95)}


def _measure(encode, decode, decode2x, img: np.ndarray) -> dict:
    t0 = time.perf_counter()
    blob = encode(img)
    t1 = time.perf_counter()
    rec = decode(blob)
    t2 = time.perf_counter()
    up = decode2x(blob, rec)
    ref2x = resize(img, 2 * img.shape[0], 2 * img.shape[1])
    return {
        "bpp": metrics.bpp(len(blob), img.shape),
        "psnr-rgb": metrics.psnr(rec, img),
        "ms-ssim-rgb": metrics.ms_ssim(rec, img),
        "psnr-2x-rgb": metrics.psnr(up, ref2x),
        "encoding_time": t1 - t0,
        "decoding_time": t2 - t1,
        "_rec": rec,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--weights", type=Path, default=None, help="ldm weights folder (default: shipped)")
    ap.add_argument("--out-dir", "--out", dest="out_dir", type=Path, default=None,
                    help="results root (default benchmarks/results; --quick: benchmarks/results-quick)")
    ap.add_argument("--codecs", nargs="+", help="only these codecs (ldm, jpeg, webp, jpegxl)")
    ap.add_argument("--data", nargs="+", help="photo names (default: the held-out astronaut, coffee, chelsea)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a shared CPU)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = tuple(a.data) if a.data else ("coffee",) if a.quick else datasets.HELD_OUT_PHOTOS
    photos = {n: datasets.load(n)[..., :3] for n in names}
    if a.quick:  # CI mode: a centre 256px crop, two ldm qualities, every other classical quality
        photos = {n: np.ascontiguousarray(p[p.shape[0] // 2 - 128 : p.shape[0] // 2 + 128,
                                            p.shape[1] // 2 - 128 : p.shape[1] // 2 + 128]) for n, p in photos.items()}
    out_dir = a.out_dir or default_results_dir(a.quick)
    ldm = LDMCodec(a.weights)

    points: dict[str, list] = {}
    recs: dict[str, dict] = {}
    plans = {"ldm": (1, 3) if a.quick else QUALITIES}
    plans.update({k: (v[::2] if a.quick else v) for k, v in CLASSICAL_Q.items()})
    if a.codecs:
        unknown = set(a.codecs) - set(plans)
        if unknown:
            ap.error(f"unknown codecs {sorted(unknown)}; known: {sorted(plans)}")
        plans = {k: v for k, v in plans.items() if k in a.codecs}
    for codec, qs in plans.items():
        points[codec] = []
        for q in qs:
            per = []
            for name, img in photos.items():
                if codec == "ldm":
                    m = _measure(lambda x: ldm.encode(x, quality=q), ldm.decode,
                                 lambda b, r: ldm.decode(b, scale=2.0), img)
                else:
                    m = _measure(lambda x: neurocodec.encode(x, codec=codec, quality=q), neurocodec.decode,
                                 lambda b, r: resize(r, 2 * r.shape[0], 2 * r.shape[1]), img)
                recs.setdefault(codec, {})[(name, q)] = (m.pop("_rec"), m["bpp"])
                per.append(m)
            points[codec].append({"quality": q, **{k: float(np.mean([p[k] for p in per])) for k in per[0]},
                                  "per_photo": {n: p for n, p in zip(photos, per)}})

    def curve(c: str, key: str = "psnr-rgb") -> tuple[np.ndarray, np.ndarray]:
        return np.array([p["bpp"] for p in points[c]]), np.array([p[key] for p in points[c]])

    def on_grid(rate: np.ndarray, dist: np.ndarray, grid: np.ndarray) -> np.ndarray:
        order = np.argsort(dist)
        return np.exp(np.interp(grid, dist[order], np.log(rate[order])))

    bd = {}
    for c in points:
        try:
            # bjontegaard wants equally many points: resample both curves (log-rate vs PSNR, piecewise
            # linear) at 6 PSNRs spanning their overlap, then take metrics.bd_rate of those
            (ra, da), (rt, dt) = curve("jpeg"), curve(c)
            lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
            if hi <= lo:
                raise ValueError(f"PSNR ranges do not overlap ({c}: {dt.min():.1f}-{dt.max():.1f} dB)")
            grid = np.linspace(lo, hi, 6)
            bd[c] = float(metrics.bd_rate(on_grid(ra, da, grid), grid, on_grid(rt, dt, grid), grid))
        except Exception as exc:  # curves that do not overlap have no BD-rate
            bd[c] = None
            print(f"no BD-rate for {c}: {exc}")
    for c, pts in points.items():
        keys = ("quality", "bpp", "psnr-rgb", "ms-ssim-rgb", "psnr-2x-rgb", "encoding_time", "decoding_time")
        write_results("image", "held_out", c, {k: [p[k] for p in pts] for k in keys}, quick=a.quick, out_dir=out_dir,
                      description=f"{c} on {', '.join(photos)}; psnr-2x-rgb: decoded at 2x vs bicubic-upsampled original",
                      extra={"bd_rate_vs_jpeg_psnr_percent": bd[c], "photos": list(photos),
                             "per_photo": [p["per_photo"] for p in pts]})

    print(f"{'codec':>7} {'q':>4} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'PSNR@2x':>8} {'enc s':>6} {'dec s':>6}")
    for c, pts in points.items():
        for p in pts:
            print(f"{c:>7} {p['quality']:>4} {p['bpp']:7.3f} {p['psnr-rgb']:7.2f} {p['ms-ssim-rgb']:8.4f} "
                  f"{p['psnr-2x-rgb']:8.2f} {p['encoding_time']:6.2f} {p['decoding_time']:6.2f}")
    print("BD-rate vs JPEG (PSNR): " + ", ".join(f"{c} {v:+.1f}%" if v is not None else f"{c} n/a" for c, v in bd.items()))

    if not a.quick:
        from neurocodec.io import write_image

        pics = out_dir / "image" / "crops"
        pics.mkdir(parents=True, exist_ok=True)
        name = "coffee" if "coffee" in photos else next(iter(photos))
        img = photos[name]
        y, x = img.shape[0] // 2 - 64, img.shape[1] // 2 - 64
        for q in QUALITIES:
            rec, bpp_ldm = recs["ldm"][(name, q)]
            row, label = [img, rec], [f"ldm q{q} {bpp_ldm:.2f}bpp"]
            for c in ("jpeg", "webp", "jpegxl"):  # the classical point nearest in bpp
                best = min(((k, v) for k, v in recs[c].items() if k[0] == name), key=lambda kv: abs(kv[1][1] - bpp_ldm))
                row.append(best[1][0])
                label.append(f"{c} q{best[0][1]} {best[1][1]:.2f}bpp")
            strip = np.concatenate([r[y : y + 128, x : x + 128] for r in row], axis=1)
            write_image(pics / f"{name}_ldm_q{q}_orig_ldm_jpeg_webp_jpegxl.png", strip)
            print(f"crop q{q}: original | " + " | ".join(label))
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(1, 2, figsize=(10, 4))
            for c in points:
                ax[0].plot(*curve(c), "o-", label=c)
                ax[1].plot(*curve(c, "psnr-2x-rgb"), "o-", label=c)
            ax[0].set(title="held-out photos", xlabel="bpp", ylabel="RGB PSNR (dB)")
            ax[1].set(title="decoded at 2x vs bicubic-2x original", xlabel="bpp")
            for x_ in ax:
                x_.legend()
                x_.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(out_dir / "image" / "rd_held_out.png", dpi=90)
        except ImportError:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
