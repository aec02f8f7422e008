"""Small measurements behind the video codec's v2 defaults (see ``benchmarks/video/README.md``),
each in this process at one torch thread, written to ``results/video/carphone/v2_checks.json``
(a side document: no ``results`` key):

* ``step``: seconds of one HNeRV training step (batch 2) through the ConvNeXt encoder against one
  decoder-only step on free latents, for carphone's 0.1 bpp model: why the latent phase pays;
* ``qat``: a 24-frame 96x128 carphone crop at ``target_bpp`` 0.3, 40 epochs, fixed 8/6 and 6/5
  bit depths, with and without the quantization-aware fine-tune (PSNR after quantization);
* ``demo``: ``make demo``'s hnerv call (carphone 30 frames, ``quality`` 6, ``time_budget`` 40):
  PSNR, epochs and wall-clock seconds against the budget.

    python benchmarks/video/v2_checks.py [step] [qat] [demo]      # default: all three
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "results" / "video" / "carphone" / "v2_checks.json"


def step_cost() -> dict:
    import torch
    import torch.nn.functional as F

    from neurocodec import datasets
    from neurocodec.codecs.hnerv.codec import plan
    from neurocodec.codecs.hnerv.model import Model, model_values

    clip = datasets.load("carphone")
    arch = plan("hnerv", clip.shape, target_bpp=0.1, bits=(8, 6))
    model = Model(arch, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    frames = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2)
    model.fill_latents(frames)
    idx = torch.tensor([0, 1])
    y = frames[idx].float() / 255

    def timed(forward, n: int = 20) -> float:
        for _ in range(3):
            loss = F.mse_loss(forward(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        t0 = time.perf_counter()
        for _ in range(n):
            loss = F.mse_loss(forward(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return (time.perf_counter() - t0) / n

    through = timed(lambda: model(y))
    latent = timed(lambda: model.decode_latents(idx))
    return {"model_values": model_values(arch), "encoder_step_s": round(through, 4), "latent_step_s": round(latent, 4),
            "ratio": round(latent / through, 3)}


def qat() -> list[dict]:
    import neurocodec
    from neurocodec import datasets

    clip = datasets.load("carphone")[:24, :96, :128]
    rows = []
    for wb, eb in ((8, 6), (6, 5)):
        for on in (False, True):
            r = neurocodec.encode_with_report(clip, "hnerv", target_bpp=0.3, epochs=40, weight_bits=wb, embed_bits=eb,
                                              qat=on, threads=1).report
            rows.append({"bits": [wb, eb], "qat": on, "bytes": r["bytes"], "psnr": r["psnr"],
                         "model_values": r["model_values"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def demo() -> dict:
    import neurocodec
    from neurocodec import datasets

    clip = datasets.load("carphone")[:30]
    t0 = time.monotonic()
    r = neurocodec.encode_with_report(clip, "hnerv", quality=6, time_budget=40, threads=1).report
    return {"bpp": r["bpp"], "psnr": r["psnr"], "epochs": r["epochs"], "finetune_epochs": r["finetune_epochs"],
            "encoder_epochs": r["encoder_epochs"], "bits": [r["weight_bits"], r["embed_bits"]], "lr": r["lr"],
            "wall_s": round(time.monotonic() - t0, 1), "budget_s": 40}


def main(argv: list[str]) -> int:
    import torch

    from neurocodec.bench.results import environment

    torch.set_num_threads(1)
    which = argv or ["step", "qat", "demo"]
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc.update({"description": __doc__.split("\n\n")[0].replace("\n", " ")})
    for name in which:
        doc[name] = {"step": step_cost, "qat": qat, "demo": demo}[name]()
        print(name, json.dumps(doc[name]), flush=True)
    doc["environment"] = environment()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
