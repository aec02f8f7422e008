"""Lossless image coding on MNIST-5k: pc against PNG, WebP, JPEG-XL and lzma/bz2.

    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 neurocodec bench lossless [--quick]
    neurocodec bench lossless --data DIR [--codecs png,webp,jpegxl,pc] [--out DIR]   # your images

Test set: the 1,000 test images of ``datasets.mnist_5k_split()`` (``--quick``: the first 50).
pc uses the shipped ``model="mnist"`` (trained on the 4,000 train images only). Every number is
the size of an actual file: ``.ncx`` files through ``neurocodec.encode`` (header included) for pc
and the classical codecs, one file per image, plus one pc file holding the whole test batch; lzma
and bz2 compress the raw bytes of the whole test set. Also: the model's theoretical rate
(-log2 p(x) / pixels), encode/decode images per second, and the speed-up of the cached-message
conditionals over full re-evaluation per pixel at D = 784 (their tables must be identical).
Writes <results>/lossless/mnist_5k/<codec>.json and prints a table.

Held-out photos (``datasets.HELD_OUT_PHOTOS``, never trained on): pc with ``model="natural"`` (row
``pc``) and ``model="photo"`` (row ``pc-photo``, the shipped default for photos) against PNG, WebP
and JPEG-XL, one file per image; per photo: bpd of the file, encode/decode megapixels per second
(wall clock and process CPU time, one thread), in ``<results>/lossless/photos_heldout/<row>.json``.
``--no-mnist`` runs only this part.

``--simple``: simple content (flat, ramps, gradients, synthetic and screen-like images, noise) with
pc-photo against PNG and WebP, one file per image, the ratio to PNG per image, in
``<results>/lossless/simple/<row>.json``; runs instead of MNIST and the photos.

``--data`` (image files or folders of images) replaces MNIST and the held-out photos by those
images: the same rows, one file per image, written to ``<results>/lossless/<folder name>/<row>.json``
(``--quick``: 128x128 centre crops).
"""
from __future__ import annotations

import bz2
import lzma
import math
import sys
import time

import numpy as np

from ... import codec as api
from ... import container as ncx
from ... import datasets
from ...errors import NeurocodecError
from ..results import default_results_dir, write_results
from ._shared import centre_crop, load_photos, parser, split_names

CODECS = ("pc", "pc-photo", "png", "webp", "jpegxl", "lzma", "bz2")
#: rows of the photo comparison: (row name, codec, params)
PHOTO_ROWS = (("pc", "pc", {"model": "natural"}), ("pc-photo", "pc", {"model": "photo"}), ("png", "png", {}),
              ("webp", "webp", {}), ("jpegxl", "jpegxl", {}))

PAPER = {"pc_paper_coded_bpd": 1.24, "hclt_paper_theoretical_bpd": 1.20,
         "note": "Liu et al. ICLR 2022 (MNIST, 60k train images, M=32); ours trains on 4,000"}


def _bpd(nbytes: int, pixels: int) -> float:
    return nbytes * 8 / pixels


def per_image(codec: str, x: np.ndarray, **params) -> tuple[float, float, float, float]:
    """(bpd of the files, bpd of their payload sections only, encode s, decode s) over one file per
    image, checking every round trip. The payload figure leaves out the .ncx framing (magic, JSON
    header, CRCs: ~60-100 bytes, a lot next to a ~120-byte digit), as a bare PNG/WebP file would."""
    total, payload, t_enc, t_dec = 0, 0, 0.0, 0.0
    for img in x:
        t = time.perf_counter()
        blob = api.encode(img, codec=codec, **params)
        t_enc += time.perf_counter() - t
        t = time.perf_counter()
        back = api.decode(blob)
        t_dec += time.perf_counter() - t
        if not np.array_equal(back, img):
            raise NeurocodecError(f"{codec}: round trip failed")
        total += len(blob)
        payload += sum(len(v) for v in ncx.unpack(blob).sections.values())
    return _bpd(total, x.size), _bpd(payload, x.size), t_enc, t_dec


def speedup(x: np.ndarray, count: int) -> dict:
    from neurocodec.codecs.pc import coding
    from neurocodec.codecs.pc.model import load_model
    from neurocodec.codecs.pc.codec import PRECISION

    circ = load_model("mnist").circuits[1]
    p = x[:count].reshape(count, -1)
    coding.efficient_tables(circ, p[:1], PRECISION)  # warm-up (compile / cache load)
    coding.naive_tables(circ, p[:1, :], PRECISION)
    t = time.perf_counter()
    eff = coding.efficient_tables(circ, p, PRECISION)
    t_eff = time.perf_counter() - t
    t = time.perf_counter()
    naive = coding.naive_tables(circ, p, PRECISION)
    t_naive = time.perf_counter() - t
    return {"images": count, "D": int(p.shape[1]), "states": circ.num_states, "tree_height": circ.tree.height,
            "efficient_s_per_image": t_eff / count, "naive_s_per_image": t_naive / count,
            "speedup": t_naive / t_eff, "identical_tables": bool(np.array_equal(eff, naive))}


def main(argv: list[str] | None = None) -> int:
    ap = parser("lossless", __doc__)
    ap.add_argument("--quick", action="store_true", help="50 test images (CI, < 3 min)")
    ap.add_argument("--out", help="results folder (default: see neurocodec.bench.results.default_results_dir)")
    ap.add_argument("--codecs", nargs="+", help=f"only these (space- or comma-separated; default {','.join(CODECS)})")
    ap.add_argument("--data", nargs="+", help="image files or folders of images (default: MNIST-5k and the held-out photos)")
    ap.add_argument("--no-photos", action="store_true", help="skip the held-out photo comparison")
    ap.add_argument("--no-mnist", action="store_true", help="only the held-out photo comparison")
    ap.add_argument("--simple", action="store_true", help="only simple content: pc-photo against PNG and WebP")
    args = ap.parse_args(argv)
    args.codecs = split_names(args.codecs) or list(CODECS)
    if set(args.codecs) - set(CODECS):
        ap.error(f"unknown codecs {sorted(set(args.codecs) - set(CODECS))}; known: {', '.join(CODECS)}")
    args.out = args.out or str(default_results_dir(args.quick))
    if args.data:
        label, imgs = load_photos(args.data)
        rows = photos(args.quick, args.codecs, {"quick": args.quick, "out_dir": args.out}, imgs, label or "photos")
        _print_photos(rows, f"{', '.join(imgs)} ({'128x128 centre crops' if args.quick else 'full'}), one file per image")
        print(f"results: {args.out}/lossless/{label or 'photos'}", file=sys.stderr)
        return 0
    if args.simple:
        simple(args.codecs, {"quick": args.quick, "out_dir": args.out})
        return 0
    if args.no_mnist:
        what = "128x128 centre crops" if args.quick else "full"
        rows_p = photos(args.quick, args.codecs, {"quick": args.quick, "out_dir": args.out})
        _print_photos(rows_p, f"held-out photos {', '.join(datasets.HELD_OUT_PHOTOS)} ({what}), one file per image")
        return 0
    _, (x_test, _) = datasets.mnist_5k_split()
    x = x_test[:50] if args.quick else x_test
    n, px = len(x), x.size
    rows: list[tuple[str, str, float, float, float, float]] = []
    common = {"quick": args.quick, "out_dir": args.out}

    if "pc" in args.codecs:
        from neurocodec.codecs.pc.model import load_model
        from neurocodec.weights import thaw

        model = load_model("mnist")
        circ = model.circuits[1]
        theo = float(-circ.log_likelihood(x.reshape(n, -1).astype(np.int16)).sum() / (px * math.log(2)))
        api.decode(api.encode(x[:2], codec="pc", model="mnist"))  # warm-up
        t = time.perf_counter()
        blob = api.encode(x, codec="pc", model="mnist")
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        back = api.decode(blob)
        t_dec = time.perf_counter() - t
        if not np.array_equal(back, x):
            raise NeurocodecError("pc: batch round trip failed")
        batch_bpd = _bpd(len(blob), px)
        img_bpd, img_payload, e1, d1 = per_image("pc", x, model="mnist")
        sp = speedup(x, 2 if args.quick else 5)
        rows.append(("pc (one file)", "batch", batch_bpd, math.nan, n / t_enc, n / t_dec))
        rows.append(("pc (per image)", "image", img_bpd, img_payload, n / e1, n / d1))
        write_results("lossless", "mnist_5k", "pc", {
            "bpd": [batch_bpd], "bpd_per_image_files": [img_bpd], "bpd_per_image_payload": [img_payload],
            "bpd_theoretical": [theo],
            "encoding_time": [t_enc / n], "decoding_time": [t_dec / n],
            "encode_images_per_s": [n / t_enc], "decode_images_per_s": [n / t_dec],
            "encode_images_per_s_per_image_files": [n / e1], "decode_images_per_s_per_image_files": [n / d1],
        }, description=f"pc model=mnist (HCLT M={circ.num_states}, hash {model.short_digest}) on {n} test images; "
                       "bpd = one .ncx holding the batch, bpd_per_image_files = one .ncx per image; times per image", extra={
            "paper": PAPER, "conditional_speedup": sp, "file_bytes": len(blob), "images": n,
            "model_info": {k: thaw(v) for k, v in model.info.items() if k != "history"}}, **common)
        print(f"pc: theoretical {theo:.4f} bpd; conditionals: "
              f"efficient {sp['efficient_s_per_image'] * 1e3:.1f} ms/img, "
              f"naive {sp['naive_s_per_image'] * 1e3:.0f} ms/img, speed-up {sp['speedup']:.1f}x, "
              f"identical tables: {sp['identical_tables']}", file=sys.stderr)

    for codec, params in (("png", {}), ("webp", {}), ("jpegxl", {})):
        if codec not in args.codecs:
            continue
        bpd, pay, e, d = per_image(codec, x, **params)
        rows.append((codec, "image", bpd, pay, n / e, n / d))
        write_results("lossless", "mnist_5k", codec, {
            "bpd": [bpd], "bpd_payload": [pay], "encoding_time": [e / n], "decoding_time": [d / n],
            "encode_images_per_s": [n / e], "decode_images_per_s": [n / d]},
            description=f"{codec} lossless via neurocodec.encode, one .ncx per image, {n} test images",
            extra={"images": n}, **common)

    raw = np.ascontiguousarray(x).tobytes()
    for name, fn, dec in (("lzma", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
                          ("bz2", lambda b: bz2.compress(b, 9), bz2.decompress)):
        if name not in args.codecs:
            continue
        t = time.perf_counter()
        comp = fn(raw)
        e = time.perf_counter() - t
        t = time.perf_counter()
        if dec(comp) != raw:
            raise NeurocodecError(f"{name}: round trip failed")
        d = time.perf_counter() - t
        bpd = _bpd(len(comp), px)
        rows.append((name, "whole set", bpd, bpd, n / e, n / d))
        write_results("lossless", "mnist_5k", name, {
            "bpd": [bpd], "encoding_time": [e / n], "decoding_time": [d / n],
            "encode_images_per_s": [n / e], "decode_images_per_s": [n / d]},
            description=f"{name} over the raw bytes of all {n} test images (no container)",
            extra={"images": n}, **common)

    if not args.no_photos:
        photo_rows = photos(args.quick, args.codecs, common)

    print(f"\nMNIST-5k test, {n} images ({'quick' if args.quick else 'full'}); paper: pc {PAPER['pc_paper_coded_bpd']} "
          f"bpd coded, HCLT {PAPER['hclt_paper_theoretical_bpd']} theoretical (60k train)")
    print(f"{'codec':<16} {'files':<10} {'bpd':>7} {'payload':>8} {'enc img/s':>10} {'dec img/s':>10}")
    for name, unit, bpd, pay, e, d in rows:
        print(f"{name:<16} {unit:<10} {bpd:>7.3f} {pay:>8.3f} {e:>10.1f} {d:>10.1f}")
    if not args.no_photos:
        what = "128x128 centre crops" if args.quick else "full"
        _print_photos(photo_rows, f"held-out photos {', '.join(datasets.HELD_OUT_PHOTOS)} ({what}), one file per image")
    return 0


def _print_photos(rows: list[tuple], title: str) -> None:
    print(f"\n{title}")
    print(f"{'codec':<10} {'bpd':>7} {'payload':>8} {'enc s':>8} {'dec s':>8}   per image: bpd, enc/dec Mpx/s (wall)")
    for name, bpd, pay, e, d, per in rows:
        each = ", ".join(f"{n} {b:.3f} {pe:.2f}/{pd:.2f}" for n, b, pe, pd in per)
        print(f"{name:<10} {bpd:>7.3f} {pay:>8.3f} {e:>8.2f} {d:>8.2f}   {each}")


def photos(quick: bool, codecs: list[str], common: dict, images: dict[str, np.ndarray] | None = None,
           dataset: str = "photos_heldout") -> list[tuple]:
    """The photos no model trained on (or the user's ``images``): the rows of :data:`PHOTO_ROWS`,
    one file per image; per image its bpd and encode/decode megapixels per second."""
    if images is None:
        images = {name: datasets.load(name) for name in datasets.HELD_OUT_PHOTOS}
    # quick: the 128x128 centre crop (the held-out photos are all larger, so this is their old crop)
    imgs = [centre_crop(im, 128) if quick else np.ascontiguousarray(im) for im in images.values()]
    names = list(images)
    px = sum(im.size for im in imgs)
    rows = []
    for row, codec, params in PHOTO_ROWS:
        if row not in codecs:
            continue
        api.decode(api.encode(imgs[0][:8, :8], codec=codec, **params))  # warm-up: JIT caches, model load
        total, payload, e, d = 0, 0, 0.0, 0.0
        per: dict[str, list] = {k: [] for k in ("bpd", "encode_mpx_per_s", "decode_mpx_per_s",
                                                 "encode_mpx_per_cpu_s", "decode_mpx_per_cpu_s")}
        for im in imgs:
            mpx = im.shape[0] * im.shape[1] / 1e6
            t, c = time.perf_counter(), time.process_time()
            blob = api.encode(im, codec=codec, **params)
            te, ce = time.perf_counter() - t, time.process_time() - c
            t, c = time.perf_counter(), time.process_time()
            back = api.decode(blob)
            td, cd = time.perf_counter() - t, time.process_time() - c
            if not np.array_equal(back, im):
                raise NeurocodecError(f"{codec}: photo round trip failed")
            e, d = e + te, d + td
            total += len(blob)
            payload += sum(len(v) for v in ncx.unpack(blob).sections.values())
            per["bpd"].append(_bpd(len(blob), im.size))
            for key, sec in (("encode_mpx_per_s", te), ("decode_mpx_per_s", td), ("encode_mpx_per_cpu_s", ce),
                             ("decode_mpx_per_cpu_s", cd)):
                per[key].append(mpx / max(sec, 1e-9))
        rows.append((row, _bpd(total, px), _bpd(payload, px), e, d,
                     list(zip(names, per["bpd"], per["encode_mpx_per_s"], per["decode_mpx_per_s"]))))
        write_results("lossless", dataset, row, {
            "bpd": [_bpd(total, px)], "bpd_payload": [_bpd(payload, px)], "encoding_time": [e / len(imgs)],
            "decoding_time": [d / len(imgs)]},
            description=f"{codec} {params or ''} on {', '.join(names)}"
                        f"{' (128x128 centre crops)' if quick else ''}, one .ncx per image; bpd over all subpixels",
            extra={"params": params, "images": names, "per_image": per}, **common)
    return rows


def simple_images() -> dict[str, np.ndarray]:
    """Flat, ramp, gradient, synthetic and screen-like images (deterministic), and noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    screen = np.full((240, 320, 3), 240, np.uint8)
    screen[20:60, 10:300] = (30, 60, 200)
    screen[80:200, 40:140] = 255
    for r in range(90, 190, 12):
        screen[r:r + 2, 50:130] = 0  # "text lines"
    screen[100:220, 170:310] = (200, 120, 40)
    return {
        "flat_64x64_rgb": np.full((64, 64, 3), 200, np.uint8), "flat_64x64_grey": np.full((64, 64), 17, np.uint8),
        "ramp_1x1000": (np.arange(1000) % 256).astype(np.uint8)[None],
        "hramp_256_rgb": np.repeat(xx[..., None], 3, -1).astype(np.uint8),
        "gradient_256": ((xx + yy) // 2).astype(np.uint8),
        "chessboard": datasets.load("chessboard_GRAY"), "text": datasets.load("text"),
        "page": datasets.load("page"), "logo_rgb": np.ascontiguousarray(datasets.load("logo")[..., :3]),
        "screen_240x320": screen,
        "noise_64x64_rgb": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
    }


def simple(codecs: list[str], common: dict) -> list[tuple]:
    """pc-photo against PNG and WebP on :func:`simple_images`, one file per image (the goal: at most
    10 % above PNG)."""
    imgs = simple_images()
    rows = [r for r in (("pc-photo", "pc", {"model": "photo"}), ("png", "png", {}), ("webp", "webp", {}))
            if r[0] in codecs]
    sizes: dict[str, dict[str, int]] = {}
    for row, codec, params in rows:
        sizes[row] = {}
        for name, im in imgs.items():
            blob = api.encode(im, codec=codec, **params)
            if not np.array_equal(api.decode(blob), im):
                raise NeurocodecError(f"{codec}: round trip failed on {name}")
            sizes[row][name] = len(blob)
    print(f"\nsimple content, one file per image: bpd ({', '.join(sizes)}) and file size / PNG")
    for name, im in imgs.items():
        each = "  ".join(f"{row} {_bpd(sizes[row][name], im.size):7.3f}" for row in sizes)
        ratio = f"{sizes['pc-photo'][name] / sizes['png'][name]:.2f}" if {"pc-photo", "png"} <= set(sizes) else ""
        print(f"{name:<18} {str(im.shape):<14} {each}  {ratio}")
    for row, codec, params in rows:
        per = {n: _bpd(b, imgs[n].size) for n, b in sizes[row].items()}
        extra = {"params": params, "images": {n: list(im.shape) for n, im in imgs.items()}, "bpd_per_image": per,
                 "bytes_per_image": sizes[row]}
        if row != "png" and "png" in sizes:
            extra["size_over_png"] = {n: sizes[row][n] / sizes["png"][n] for n in imgs}
        write_results("lossless", "simple", row, {"bpd": [float(np.mean(list(per.values())))]},
                      description=f"{codec} {params or ''} on simple content (mean bpd over the images; "
                                  "per image in bpd_per_image), one .ncx per image", extra=extra, **common)
    return rows


if __name__ == "__main__":
    sys.exit(main())
