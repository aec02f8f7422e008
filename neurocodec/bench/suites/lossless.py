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

``--data`` (image files or folders of images) replaces MNIST and the held-out photos by those
images: pc (``model="natural"``), PNG, WebP and JPEG-XL, one file per image, written to
``<results>/lossless/<folder name>/<codec>.json`` (``--quick``: 128x128 centre crops).
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

CODECS = ("pc", "png", "webp", "jpegxl", "lzma", "bz2")

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
                       "bpd = one .ncx holding the batch; times per image", extra={
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


def _print_photos(rows: list[tuple[str, float, float, float, float]], title: str) -> None:
    print(f"\n{title}")
    print(f"{'codec':<16} {'bpd':>7} {'payload':>8} {'enc s':>8} {'dec s':>8}")
    for name, bpd, pay, e, d in rows:
        print(f"{name:<16} {bpd:>7.3f} {pay:>8.3f} {e:>8.2f} {d:>8.2f}")


def photos(quick: bool, codecs: list[str], common: dict, images: dict[str, np.ndarray] | None = None,
           dataset: str = "photos_heldout") -> list[tuple[str, float, float, float, float]]:
    """The photos no model trained on (or the user's ``images``): pc (model="natural", 8x8
    patches) against the classical codecs, one file per image."""
    if images is None:
        images = {name: datasets.load(name) for name in datasets.HELD_OUT_PHOTOS}
    # quick: the 128x128 centre crop (the held-out photos are all larger, so this is their old crop)
    imgs = [centre_crop(im, 128) if quick else np.ascontiguousarray(im) for im in images.values()]
    names = list(images)
    px = sum(im.size for im in imgs)
    rows = []
    for codec, params in (("pc", {"model": "natural"}), ("png", {}), ("webp", {}), ("jpegxl", {})):
        if codec not in codecs:
            continue
        total, payload, e, d = 0, 0, 0.0, 0.0
        for im in imgs:
            t = time.perf_counter()
            blob = api.encode(im, codec=codec, **params)
            e += time.perf_counter() - t
            t = time.perf_counter()
            if not np.array_equal(api.decode(blob), im):
                raise NeurocodecError(f"{codec}: photo round trip failed")
            d += time.perf_counter() - t
            total += len(blob)
            payload += sum(len(v) for v in ncx.unpack(blob).sections.values())
        rows.append((codec, _bpd(total, px), _bpd(payload, px), e, d))
        write_results("lossless", dataset, codec, {
            "bpd": [_bpd(total, px)], "bpd_payload": [_bpd(payload, px)], "encoding_time": [e / len(imgs)],
            "decoding_time": [d / len(imgs)]},
            description=f"{codec} on {', '.join(names)}"
                        f"{' (128x128 centre crops)' if quick else ''}, one .ncx per image; bpd over all subpixels",
            extra={"params": params}, **common)
    return rows


if __name__ == "__main__":
    sys.exit(main())
