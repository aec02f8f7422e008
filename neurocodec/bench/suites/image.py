"""Image coding on the held-out photos: ldm (factorized ae and hyperprior) vs JPEG, WebP, JPEG XL
and AVIF, at 1x and at 2x.

Every codec goes through ``neurocodec``'s container (``Codec.encode``), so bits count the same way.

* **1x** (results ``image/<dataset>``): per RD point (mean over the photos) bpp, RGB PSNR, MS-SSIM,
  encode and decode time (also per megapixel); BD-rate (PSNR) of each codec against JPEG and
  against WebP in ``extra``.
* **2x** (results ``image/<dataset>_x2``): what a user who needs a 2x picture would otherwise do.
  Each photo is the high-resolution reference; its bicubic 1/2 down-scale is what gets coded. The
  classical codecs' decodes are up-scaled by bicubic (``jpeg+bicubic``) and by our LIIF upsampler
  (``jpeg+liif``); ldm decodes its file at 2x directly. PSNR (border of 2 shaved) against the real
  high-resolution photo, never against an up-scaled copy; bpp per *high-resolution* pixel (the
  same bytes, counted over the picture the user gets). BD-rate against ``jpeg+bicubic``.
* **4x** (results ``image/<dataset>_x4_crop<N>``): the same on centre ``N x N`` crops (``--x4-crop``,
  384; the diffusion decode's CPU cost stays bounded), coded at 1/4, with one more row:
  ``ldm-hp+diffusion``, the same ldm-hp file decoded with ``refine="diffusion"`` (the generative
  decode: latent diffusion over the any-size decode; 10 DDIM steps, seed 0). Every row also gets
  the detail ratio (gradient energy against the photo's: 1 = as sharp, below 1 = blurrier), the
  figure a generative decode is for: it trades PSNR for detail.

Codecs: ``ldm`` (factorized ae, 4 qualities), ``ldm-hp`` (mean-scale hyperprior, 8 qualities;
the shipped model, or ``--hp-weights FILE``), ``ldm-hp-refine`` (the same with
``effort=--effort`` steps of encoder-side latent refinement: slow, so only when asked for),
``jpeg``, ``webp``, ``jpegxl``, ``avif``.

    neurocodec bench image [--quick] [--codecs ldm-hp,jpeg,webp] [--out DIR] [--no-1x] [--no-x2] [--no-x4]
    neurocodec bench image --data DIR [--codecs jpeg,webp]      # your photos (a folder, or files)

``--data`` takes sample photo names (results: ``image/held_out``), or image files / folders of
images (results: ``image/<folder name>``; grey and RGBA images are compared as RGB).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from ... import codec as api
from ... import datasets, metrics
from ..results import default_results_dir, write_results
from ._shared import centre_crop, load_photos, parser, split_names, to_rgb, torch_threads

CODECS = ("ldm", "ldm-hp", "ldm-hp-refine", "jpeg", "webp", "jpegxl", "avif")
DEFAULT_CODECS = ("ldm", "ldm-hp", "jpeg", "webp", "jpegxl", "avif")  # refinement is opt-in (minutes)
NEURAL = ("ldm", "ldm-hp", "ldm-hp-refine")
CLASSICAL_Q = {"jpeg": (5, 10, 20, 35, 50, 70, 85, 95), "webp": (5, 10, 20, 35, 50, 70, 85, 95),
               "jpegxl": (10, 25, 40, 55, 70, 80, 90, 95), "avif": (10, 25, 40, 55, 65, 75, 85, 92)}
X2_CLASSICAL = ("jpeg", "webp")  # the 2x comparison: what a user would otherwise reach for
KEYS = ("quality", "bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time", "encode_s_per_mpx",
        "decode_s_per_mpx")


class _Plan:
    """How one codec of the suite encodes and decodes (at 1x and at 2x) at one quality."""

    def __init__(self, name: str, qualities: tuple, encode: Callable[[np.ndarray, Any], bytes],
                 decode: Callable[..., np.ndarray]) -> None:
        self.name, self.qualities, self.encode, self.decode = name, qualities, encode, decode


def _plans(a: argparse.Namespace, wanted: list[str]) -> dict[str, _Plan]:
    plans: dict[str, _Plan] = {}
    neural = [c for c in wanted if c in NEURAL]
    if neural:
        from neurocodec.codecs.ldm.codec import QUALITIES, LDMCodec, shipped_hyperprior

        ldm = LDMCodec(a.weights)
        hp = str(a.hp_weights) if a.hp_weights else None
        has_hp = hp is not None or shipped_hyperprior() is not None
        if "ldm" in neural:
            plans["ldm"] = _Plan("ldm", (1, 3) if a.quick else QUALITIES,
                                 lambda x, q: ldm.encode(x, model="ae", quality=q),
                                 lambda b, **o: ldm.decode(b, **o))
        for name, effort in (("ldm-hp", 0), ("ldm-hp-refine", a.effort)):
            if name not in neural:
                continue
            if not has_hp:
                print(f"{name}: skipped (no hyperprior model is shipped; pass --hp-weights FILE)")
                continue
            plans[name] = _Plan(name, (2, 5) if a.quick else tuple(range(1, 9)),
                                lambda x, q, e=effort: ldm.encode(x, model="hyperprior", weights=hp, quality=q, effort=e),
                                lambda b, **o: ldm.decode(b, weights=hp, **o))
    for c in wanted:
        if c in CLASSICAL_Q:
            try:
                api.get_codec(c)
            except Exception:  # noqa: BLE001 - a codec this build lacks is reported, not fatal
                print(f"{c}: skipped (not available in this build)")
                continue
            qs = CLASSICAL_Q[c][::2] if a.quick else CLASSICAL_Q[c]
            plans[c] = _Plan(c, qs, lambda x, q, c=c: api.encode(x, codec=c, quality=q), lambda b, **o: api.decode(b))
    return plans


def _bd_rates(points: dict[str, list[dict]], anchor: str, key: str = "psnr-rgb") -> dict[str, float | None]:
    """BD-rate (PSNR) of every curve against ``anchor``: both curves resampled (log-rate vs PSNR,
    piecewise linear) at 6 PSNRs spanning their overlap, then :func:`metrics.bd_rate`."""
    def curve(c: str) -> tuple[np.ndarray, np.ndarray]:
        return np.array([p["bpp"] for p in points[c]]), np.array([p[key] for p in points[c]])

    def on_grid(rate: np.ndarray, dist: np.ndarray, grid: np.ndarray) -> np.ndarray:
        order = np.argsort(dist)
        return np.exp(np.interp(grid, dist[order], np.log(rate[order])))

    out: dict[str, float | None] = {}
    for c in points:
        if anchor not in points:
            out[c] = None
            continue
        try:
            (ra, da), (rt, dt) = curve(anchor), curve(c)
            lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
            if hi <= lo:
                raise ValueError(f"PSNR ranges do not overlap ({c}: {dt.min():.1f}-{dt.max():.1f} dB)")
            grid = np.linspace(lo, hi, 6)
            out[c] = float(metrics.bd_rate(on_grid(ra, da, grid), grid, on_grid(rt, dt, grid), grid))
        except Exception as exc:  # noqa: BLE001 - curves that do not overlap have no BD-rate
            out[c] = None
            print(f"no BD-rate for {c} against {anchor}: {exc}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser("image", __doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--weights", type=Path, default=None, help="ldm weights folder (default: shipped)")
    ap.add_argument("--hp-weights", type=Path, default=None,
                    help="hyperprior model file for ldm-hp (default: the shipped one)")
    ap.add_argument("--effort", type=int, default=20, help="latent refinement steps of ldm-hp-refine")
    ap.add_argument("--out-dir", "--out", dest="out_dir", type=Path, default=None,
                    help="results root (default: see neurocodec.bench.results.default_results_dir)")
    ap.add_argument("--codecs", nargs="+", help=f"only these codecs ({', '.join(CODECS)}; space- or comma-separated)")
    ap.add_argument("--data", nargs="+",
                    help="photo names, image files or folders of images (default: the held-out astronaut, coffee, chelsea)")
    ap.add_argument("--no-1x", action="store_true", help="skip the 1x comparison (and the figures)")
    ap.add_argument("--no-x2", action="store_true", help="skip the 2x comparison")
    ap.add_argument("--no-x4", action="store_true", help="skip the 4x comparison (with the generative decode)")
    ap.add_argument("--x4-crop", type=int, default=None,
                    help="side of the centre crops the 4x comparison uses (default 384; --quick 128)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a shared CPU)")
    a = ap.parse_args(argv)
    if a.x4_crop is None:
        a.x4_crop = 128 if a.quick else 384
    codecs = split_names(a.codecs)
    if codecs and set(codecs) - set(CODECS):
        ap.error(f"unknown codecs {sorted(set(codecs) - set(CODECS))}; known: {sorted(CODECS)}")
    with torch_threads(a.threads):  # restored afterwards: the suite may run inside the caller's process
        return _run(a, list(codecs or DEFAULT_CODECS))


def _run(a: argparse.Namespace, codecs: list[str]) -> int:
    names = tuple(a.data) if a.data else ("coffee",) if a.quick else datasets.HELD_OUT_PHOTOS
    label, loaded = load_photos(names)
    dataset = label or "held_out"
    photos = {n: to_rgb(p) for n, p in loaded.items()}
    if a.quick:  # CI mode: a centre 256px crop, two qualities per neural codec, every other classical one
        photos = {n: centre_crop(p, 256) for n, p in photos.items()}
    out_dir = a.out_dir or default_results_dir(a.quick)
    plans = _plans(a, codecs)
    points, recs = ({}, {}) if a.no_1x else _run_1x(a, plans, photos, dataset, out_dir)
    x2_points = {} if a.no_x2 else _run_x2(a, plans, photos, dataset, out_dir)
    if not a.no_x4:
        _run_x4(a, plans, photos, dataset, out_dir)
    if not a.quick and points:
        _figures(points, x2_points, recs, photos, dataset, out_dir)
    return 0


def _run_1x(a: argparse.Namespace, plans: dict[str, _Plan], photos: dict[str, np.ndarray], dataset: str,
            out_dir: Path) -> tuple[dict[str, list], dict[str, dict]]:
    """The 1x comparison (see the module docstring): (points per codec, decodes for the figures)."""
    points: dict[str, list] = {}
    recs: dict[str, dict] = {}
    for codec, plan in plans.items():
        points[codec] = []
        for q in plan.qualities:
            per = []
            for name, img in photos.items():
                t0 = time.perf_counter()
                blob = plan.encode(img, q)
                t1 = time.perf_counter()
                rec = plan.decode(blob)
                t2 = time.perf_counter()
                mpx = img.shape[0] * img.shape[1] / 1e6
                per.append({"bpp": metrics.bpp(len(blob), img.shape), "psnr-rgb": metrics.psnr(rec, img),
                            "ms-ssim-rgb": metrics.ms_ssim(rec, img), "encoding_time": t1 - t0,
                            "decoding_time": t2 - t1, "encode_s_per_mpx": (t1 - t0) / mpx,
                            "decode_s_per_mpx": (t2 - t1) / mpx})
                recs.setdefault(codec, {})[(name, q)] = (rec, per[-1]["bpp"])
            points[codec].append({"quality": q, **{k: float(np.mean([p[k] for p in per])) for k in per[0]},
                                  "per_photo": {n: p for n, p in zip(photos, per)}})

    bd_jpeg, bd_webp = _bd_rates(points, "jpeg"), _bd_rates(points, "webp")
    for c, pts in points.items():
        write_results("image", dataset, c, {k: [p[k] for p in pts] for k in KEYS}, quick=a.quick, out_dir=out_dir,
                      description=f"{c} on {', '.join(photos)} at 1x",
                      extra={"bd_rate_vs_jpeg_psnr_percent": bd_jpeg[c], "bd_rate_vs_webp_psnr_percent": bd_webp[c],
                             "photos": list(photos), "per_photo": [p["per_photo"] for p in pts]})

    print(f"{'codec':>14} {'q':>4} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'enc s/Mpx':>9} {'dec s/Mpx':>9}")
    for c, pts in points.items():
        for p in pts:
            print(f"{c:>14} {p['quality']:>4} {p['bpp']:7.3f} {p['psnr-rgb']:7.2f} {p['ms-ssim-rgb']:8.4f} "
                  f"{p['encode_s_per_mpx']:9.2f} {p['decode_s_per_mpx']:9.2f}")
    print(f"results: {out_dir / 'image' / dataset}")
    for anchor, bd in (("JPEG", bd_jpeg), ("WebP", bd_webp)):
        print(f"BD-rate vs {anchor} (PSNR): "
              + ", ".join(f"{c} {v:+.1f}%" if v is not None else f"{c} n/a" for c, v in bd.items()))
    return points, recs


def _run_x2(a: argparse.Namespace, plans: dict[str, _Plan], photos: dict[str, np.ndarray], dataset: str,
            out_dir: Path) -> dict[str, list]:
    """The 2x comparison (see the module docstring)."""
    return _run_scaled(a, plans, photos, f"{dataset}_x2", 2.0, out_dir)


def _run_x4(a: argparse.Namespace, plans: dict[str, _Plan], photos: dict[str, np.ndarray], dataset: str,
            out_dir: Path) -> dict[str, list]:
    """The 4x comparison with the generative decode (see the module docstring), on centre crops."""
    crops = {n: centre_crop(p, a.x4_crop) for n, p in photos.items()}
    return _run_scaled(a, plans, crops, f"{dataset}_x4_crop{a.x4_crop}", 4.0, out_dir, generative=True)


def _run_scaled(a: argparse.Namespace, plans: dict[str, _Plan], photos: dict[str, np.ndarray], ds: str, scale: float,
                out_dir: Path, *, generative: bool = False) -> dict[str, list]:
    """Each photo is the reference; its bicubic 1/scale down-scale is coded; every row is shown at the
    photo's size and scored against it. ``generative``: ldm-hp also decodes with ``refine=diffusion``
    (row ``ldm-hp+diffusion``, seed 0), and every row gets the detail ratio."""
    from neurocodec.codecs.ldm import api as ldm_api
    from neurocodec.codecs.ldm.image import resize

    from .sr import make_pair, scores

    pairs = {n: make_pair(p, scale) for n, p in photos.items()}
    rows: dict[str, list[dict]] = {}
    order = [c for c in plans if c in NEURAL] + [c for c in X2_CLASSICAL if c in plans]
    steps = 4 if a.quick else 10
    for codec in tqdm(order, desc=f"{scale:g}x", unit="codec", disable=not sys.stderr.isatty()):
        plan = plans[codec]
        if codec in NEURAL:
            variants = (codec, f"{codec}+diffusion") if generative and codec == "ldm-hp" else (codec,)
        else:
            variants = (f"{codec}+bicubic", f"{codec}+liif")
        for q in plan.qualities:
            per: dict[str, list[dict]] = {v: [] for v in variants}
            for name, (hr, lr) in pairs.items():
                blob = plan.encode(lr, q)
                bpp = 8.0 * len(blob) / (hr.shape[0] * hr.shape[1])
                if codec in NEURAL:
                    outs = {codec: plan.decode(blob, scale=scale)}
                    if len(variants) > 1:
                        outs[variants[1]] = plan.decode(blob, scale=scale, refine="diffusion", steps=steps, seed=0)
                else:
                    rec = plan.decode(blob)
                    outs = {f"{codec}+bicubic": resize(rec, hr.shape[0], hr.shape[1]),
                            f"{codec}+liif": ldm_api.upsample(rec, size=(hr.shape[1], hr.shape[0]), method="liif",
                                                              device="cpu")}
                for v, up in outs.items():
                    psnr, ssim, detail = scores(up, hr, scale)
                    per[v].append({"bpp": bpp, "psnr-rgb": psnr, "ssim-rgb": ssim,
                                   **({"detail-ratio": detail} if generative else {})})
            for v, ps in per.items():
                rows.setdefault(v, []).append({"quality": q, **{k: float(np.mean([p[k] for p in ps])) for k in ps[0]},
                                               "per_photo": dict(zip(pairs, ps))})
    bd = _bd_rates(rows, "jpeg+bicubic")
    keys = ("quality", "bpp", "psnr-rgb", "ssim-rgb") + (("detail-ratio",) if generative else ())
    what = (f"the bicubic 1/{scale:g} down-scale of {', '.join(photos)} coded, shown at {scale:g}x, scored against "
            f"the real photo (PSNR with a {int(np.ceil(scale))}-pixel border shaved); bpp per high-resolution pixel")
    if generative:
        what += (f"; +diffusion: decode --refine diffusion ({steps} DDIM steps, seed 0); detail-ratio = gradient "
                 "energy relative to the photo (1 = as sharp)")
    for v, pts in rows.items():
        write_results("image", ds, v, {k: [p[k] for p in pts] for k in keys}, quick=a.quick, out_dir=out_dir, description=f"{v}: {what}",
                      extra={"bd_rate_vs_jpeg_bicubic_psnr_percent": bd[v], "photos": list(photos),
                             "per_photo": [p["per_photo"] for p in pts]})
    tag = f"{scale:g}x"
    print(f"{tag}: {'row':>16} {'q':>4} {'bpp(HR)':>8} {'PSNR':>7}" + (f" {'detail':>7}" if generative else ""))
    for v, pts in rows.items():
        for p in pts:
            print(f"{tag}: {v:>16} {p['quality']:>4} {p['bpp']:8.3f} {p['psnr-rgb']:7.2f}"
                  + (f" {p['detail-ratio']:7.3f}" if generative else ""))
    print(f"{tag} BD-rate vs jpeg+bicubic (PSNR): "
          + ", ".join(f"{c} {v:+.1f}%" if v is not None else f"{c} n/a" for c, v in bd.items()))
    return rows


def _figures(points: dict[str, list], x2_points: dict[str, list], recs: dict, photos: dict[str, np.ndarray],
             dataset: str, out_dir: Path) -> None:
    name = "coffee" if "coffee" in photos else next(iter(photos))
    img = photos[name]
    neural = next((c for c in ("ldm-hp", "ldm") if c in recs), None)
    if neural and min(img.shape[:2]) >= 128:  # 128px crops: the neural codec beside its nearest classical points
        from ..plot import write_crop_strip

        y, x = img.shape[0] // 2 - 64, img.shape[1] // 2 - 64
        psnr_of = {(c, n, p["quality"]): p["per_photo"][n]["psnr-rgb"] for c, pts in points.items()
                   for p in pts for n in p["per_photo"]}
        for q in sorted({k[1] for k in recs[neural] if k[0] == name}):
            rec, bpp_n = recs[neural][(name, q)]
            row = [img, rec]
            captions = [{"name": "original", "note": f"{name}, 128x128 crop"},
                        {"name": neural, "setting": f"q{q}", "bpp": bpp_n, "psnr": psnr_of[(neural, name, q)]}]
            for c in [c for c in ("jpeg", "webp", "jpegxl", "avif") if c in recs]:  # the point nearest in bpp
                best = min(((k, v) for k, v in recs[c].items() if k[0] == name), key=lambda kv: abs(kv[1][1] - bpp_n))
                row.append(best[1][0])
                captions.append({"name": c, "setting": f"q{best[0][1]}", "bpp": best[1][1],
                                 "psnr": psnr_of[(c, name, best[0][1])]})
            path = write_crop_strip(out_dir / "image" / "crops", f"{name}_{neural}_q{q}_vs_classical",
                                    [r[y : y + 128, x : x + 128] for r in row], captions,
                                    title=f"image {dataset}: {name}, centre crop; bpp and PSNR of the whole photo; "
                                          f"each classical codec at its setting nearest {neural}'s bpp")
            print(f"crop q{q}: {path}")
    try:
        from ..plot import rd_figure, save_figure

        docs = {c: {"results": {k: [p[k] for p in pts] for k in ("bpp", "psnr-rgb", "ms-ssim-rgb")}}
                for c, pts in points.items()}
        panels = [(docs, "bpp", y, None) for y in ("psnr-rgb", "ms-ssim-rgb")]
        if x2_points:
            x2 = {c: {"results": {k: [p[k] for p in pts] for k in ("bpp", "psnr-rgb")}} for c, pts in x2_points.items()}
            panels.append((x2, "bpp", "psnr-rgb", "2x: coded at 1/2, scored against the photo (bpp per 2x pixel)"))
        fig = rd_figure(panels, title="image: held-out photos" if dataset == "held_out" else f"image: {dataset}")
        save_figure(fig, out_dir / "image" / f"rd_{dataset}.png", dpi=100)
    except ImportError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
