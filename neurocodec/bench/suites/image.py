"""Image coding on the held-out photos: ldm vs JPEG, WebP and JPEG XL.

Every codec goes through ``neurocodec``'s container (``Codec.encode``), so bits count the same way.
Per RD point (mean over the photos): bpp, RGB PSNR, MS-SSIM, and ``psnr-2x-rgb``: the same file
decoded at 2x its size (ldm renders 2x directly; classical codecs are decoded then bicubic-upsampled)
against the bicubic-upsampled original. BD-rate (PSNR) of each codec against JPEG goes into ``extra``.

    neurocodec bench image [--quick] [--codecs ldm,jpeg,webp,jpegxl] [--out DIR]
    neurocodec bench image --data DIR [--codecs jpeg,webp]      # your photos (a folder, or files)

``--data`` takes sample photo names (results: ``image/held_out``), or image files / folders of
images (results: ``image/<folder name>``; grey and RGBA images are compared as RGB).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ... import codec as api
from ... import datasets, metrics
from ..results import default_results_dir, write_results
from ._shared import centre_crop, load_photos, parser, split_names, to_rgb, torch_threads

CODECS = ("ldm", "jpeg", "webp", "jpegxl")
CLASSICAL_Q = {"jpeg": (5, 10, 20, 35, 50, 70, 85, 95), "webp": (5, 10, 20, 35, 50, 70, 85, 95),
               "jpegxl": (10, 25, 40, 55, 70, 80, 90, 95)}


def _measure(encode, decode, decode2x, img: np.ndarray) -> dict:
    from neurocodec.codecs.ldm.image import resize

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
    ap = parser("image", __doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--weights", type=Path, default=None, help="ldm weights folder (default: shipped)")
    ap.add_argument("--out-dir", "--out", dest="out_dir", type=Path, default=None,
                    help="results root (default: see neurocodec.bench.results.default_results_dir)")
    ap.add_argument("--codecs", nargs="+", help="only these codecs (ldm, jpeg, webp, jpegxl; space- or comma-separated)")
    ap.add_argument("--data", nargs="+",
                    help="photo names, image files or folders of images (default: the held-out astronaut, coffee, chelsea)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a shared CPU)")
    a = ap.parse_args(argv)
    codecs = split_names(a.codecs)
    if codecs and set(codecs) - set(CODECS):
        ap.error(f"unknown codecs {sorted(set(codecs) - set(CODECS))}; known: {sorted(CODECS)}")
    with torch_threads(a.threads):  # restored afterwards: the suite may run inside the caller's process
        return _run(a, codecs)


def _run(a: argparse.Namespace, codecs: list[str] | None) -> int:
    names = tuple(a.data) if a.data else ("coffee",) if a.quick else datasets.HELD_OUT_PHOTOS
    label, loaded = load_photos(names)
    dataset = label or "held_out"
    photos = {n: to_rgb(p) for n, p in loaded.items()}
    if a.quick:  # CI mode: a centre 256px crop, two ldm qualities, every other classical quality
        photos = {n: centre_crop(p, 256) for n, p in photos.items()}
    out_dir = a.out_dir or default_results_dir(a.quick)
    from neurocodec.codecs.ldm.image import resize

    points: dict[str, list] = {}
    recs: dict[str, dict] = {}
    plans: dict[str, tuple] = {}
    if not codecs or "ldm" in codecs:
        from neurocodec.codecs.ldm.codec import QUALITIES, LDMCodec

        ldm = LDMCodec(a.weights)
        plans["ldm"] = (1, 3) if a.quick else QUALITIES
    plans.update({k: (v[::2] if a.quick else v) for k, v in CLASSICAL_Q.items()})
    if codecs:
        plans = {k: v for k, v in plans.items() if k in codecs}
    for codec, qs in plans.items():
        points[codec] = []
        for q in qs:
            per = []
            for name, img in photos.items():
                if codec == "ldm":
                    m = _measure(lambda x: ldm.encode(x, quality=q), ldm.decode,
                                 lambda b, r: ldm.decode(b, scale=2.0), img)
                else:
                    m = _measure(lambda x: api.encode(x, codec=codec, quality=q), api.decode,
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
        if "jpeg" not in points:
            bd[c] = None  # the anchor was not run
            continue
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
        write_results("image", dataset, c, {k: [p[k] for p in pts] for k in keys}, quick=a.quick, out_dir=out_dir,
                      description=f"{c} on {', '.join(photos)}; psnr-2x-rgb: decoded at 2x vs bicubic-upsampled original",
                      extra={"bd_rate_vs_jpeg_psnr_percent": bd[c], "photos": list(photos),
                             "per_photo": [p["per_photo"] for p in pts]})

    print(f"{'codec':>7} {'q':>4} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'PSNR@2x':>8} {'enc s':>6} {'dec s':>6}")
    for c, pts in points.items():
        for p in pts:
            print(f"{c:>7} {p['quality']:>4} {p['bpp']:7.3f} {p['psnr-rgb']:7.2f} {p['ms-ssim-rgb']:8.4f} "
                  f"{p['psnr-2x-rgb']:8.2f} {p['encoding_time']:6.2f} {p['decoding_time']:6.2f}")
    print(f"results: {out_dir / 'image' / dataset}")
    print("BD-rate vs JPEG (PSNR): " + ", ".join(f"{c} {v:+.1f}%" if v is not None else f"{c} n/a" for c, v in bd.items()))

    if a.quick:
        return 0
    name = "coffee" if "coffee" in photos else next(iter(photos))
    img = photos[name]
    if "ldm" in recs and min(img.shape[:2]) >= 128:  # 128px crops: ldm beside its nearest classical points
        from neurocodec.io import write_image

        pics = out_dir / "image" / "crops"
        pics.mkdir(parents=True, exist_ok=True)
        y, x = img.shape[0] // 2 - 64, img.shape[1] // 2 - 64
        for q in QUALITIES:
            rec, bpp_ldm = recs["ldm"][(name, q)]
            row, label = [img, rec], [f"ldm q{q} {bpp_ldm:.2f}bpp"]
            for c in [c for c in ("jpeg", "webp", "jpegxl") if c in recs]:  # the classical point nearest in bpp
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
        ax[0].set(title="held-out photos" if dataset == "held_out" else dataset, xlabel="bpp", ylabel="RGB PSNR (dB)")
        ax[1].set(title="decoded at 2x vs bicubic-2x original", xlabel="bpp")
        for x_ in ax:
            x_.legend()
            x_.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / "image" / f"rd_{dataset}.png", dpi=90)
        plt.close(fig)
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
