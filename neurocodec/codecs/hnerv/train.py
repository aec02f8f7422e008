"""Fitting an HNeRV / NeRV model to one clip, single process or under ``torchrun`` (DDP).

Recipe (HNeRV's official code): Adam (0.9, 0.999), lr 1e-3, batch 2, per-iteration schedule with a
linear warm-up from 0.1 x lr over the first 10 % of iterations then cosine to 0; L2 loss. Then
global magnitude pruning (``prune``, 10 %) and a short fine-tune with the masks held (the paper's
step, missing from the official code). A non-finite loss, or an epoch whose loss is more than
``SPIKE`` times the best epoch of its phase (a network knocked out by too large a step: it stops
learning without ever producing NaN), rolls the epoch back and halves the lr (HNeRV is known to
diverge on some clips at 1e-3, and short CPU budgets want larger steps).

Distributed: under ``torchrun --nproc_per_node N`` every rank trains the same model on its share of
the frames (DistributedDataParallel, gloo on CPU, nccl on CUDA); every rank takes the same number
of steps per epoch (shares are padded by wrapping), and the time-budget decisions are made by rank 0
and broadcast. Rank 0 writes checkpoints and the output file.

Module entry point (works under torchrun)::

    python -m neurocodec.codecs.hnerv.train IN.npy -o OUT.ncx [--codec hnerv|nerv] [--param k=v ...]
    torchrun --nproc_per_node 2 -m neurocodec.codecs.hnerv.train IN.mp4 -o OUT.ncx --param epochs=50
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ...errors import NeurocodecError, UsageError
from ...quant import global_magnitude_masks
from .model import Arch, Model, frame_times


#: an epoch loss this many times the phase's best so far counts as divergence (about -1.8 dB)
SPIKE = 1.5


@dataclass
class FitConfig:
    epochs: int = 300
    time_budget: float | None = None  # seconds for training + fine-tune (wall clock)
    lr: float = 1e-3
    batch: int = 2
    warmup: float = 0.1
    prune: float = 0.1
    finetune_epochs: int | None = None  # default: max(1, epochs // 10) when prune > 0
    seed: int = 0
    checkpoint: str | None = None
    progress: bool = False
    device: str = "auto"

    def validate(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise UsageError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise UsageError(f"time_budget must be > 0 seconds, got {self.time_budget!r}")
        if not self.lr > 0 or not isinstance(self.batch, int) or self.batch < 1:
            raise UsageError("lr must be > 0 and batch a positive integer")
        if not 0.0 <= self.prune < 1.0:
            raise UsageError(f"prune must be in [0, 1), got {self.prune}")
        if self.finetune_epochs is not None and self.finetune_epochs < 0:
            raise UsageError("finetune_epochs must be >= 0")


@dataclass
class FitResult:
    model: Model
    epochs: int  # training epochs run
    finetune_epochs: int
    seconds: float
    psnr_train: float  # float PSNR of the last epoch (before quantization)
    lr: float  # the lr actually used (after NaN roll-backs)
    history: list = field(default_factory=list)


# ------------------------------------------------------------------------------------- helpers
def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("device=cuda asked for but CUDA is not available")
    return torch.device(device)


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def lr_at(it: int, total: int, base: float, warmup: float) -> float:
    """Linear warm-up from 0.1 x lr over ``warmup`` of the iterations, then cosine to 0."""
    w = int(warmup * total)
    if it < w:
        return base * (0.1 + 0.9 * it / w)
    t = (it - w) / max(total - w, 1)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def _shares(n: int, epoch: int, seed: int, rank: int, world: int, batch: int) -> list[np.ndarray]:
    """This rank's batches for one epoch: one seeded permutation shared by all ranks, split
    round-robin, padded by wrapping so every rank takes the same number of steps."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    per = -(-n // world)
    mine = perm[rank::world]
    if len(mine) < per:
        mine = np.concatenate([mine, perm[: per - len(mine)]])
    return [mine[i : i + batch] for i in range(0, per, batch)]


def prunable(model: Model) -> list[tuple[str, torch.nn.Parameter]]:
    """Decoder weight matrices/kernels (biases and the untransmitted encoder are left alone)."""
    return [(n, p) for n, p in model.decoder.named_parameters() if p.ndim > 1]


def _save(path: str, state: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def _broadcast(value: float, device: torch.device) -> float:
    if _dist()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return float(t.item())


def _allreduce_sum(values: list[float], device: torch.device) -> list[float]:
    if _dist()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# ----------------------------------------------------------------------------------------- fit
def fit(
    frames: np.ndarray,
    arch: Arch,
    cfg: FitConfig,
    *,
    on_epoch: Callable[[int, str], None] | None = None,
) -> FitResult:
    """Train ``arch`` on ``frames`` (T,H,W,3 uint8), prune + fine-tune, and return the model.

    ``on_epoch(epoch, phase)`` is called after each epoch (tests use it to simulate interruption).
    """
    cfg.validate()
    rank, world = _dist()
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
    torch.manual_seed(cfg.seed)
    model = Model(arch).to(device)
    T = frames.shape[0]
    # frames stay uint8 on the device (4x less memory); each batch is converted when it is used
    target = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    steps = len(_shares(T, 0, cfg.seed, rank, world, cfg.batch))
    planned = cfg.epochs
    ft_planned = cfg.finetune_epochs if cfg.finetune_epochs is not None else (max(1, cfg.epochs // 10) if cfg.prune > 0 else 0)
    ft_default = ft_planned
    phase, done, lr_scale, elapsed, masks = "train", 0, 1.0, 0.0, None
    history: list = []

    # -- resume
    if cfg.checkpoint and os.path.exists(cfg.checkpoint):
        try:
            state = torch.load(cfg.checkpoint, map_location=device, weights_only=True)
        except Exception as exc:  # unreadable or not ours
            raise UsageError(f"cannot read checkpoint {cfg.checkpoint} ({type(exc).__name__}); delete it to start over") from None
        if state.get("arch") != arch.to_json() or state.get("recipe") != _recipe(cfg):
            raise UsageError(f"checkpoint {cfg.checkpoint} was made for another model or training recipe "
                             f"({state.get('recipe')}); delete it to start over")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        phase, done, lr_scale, elapsed = state["phase"], state["done"], state["lr_scale"], state["elapsed"]
        planned, ft_planned, history = state["planned"], state["ft_planned"], state["history"]
        if state.get("masks") is not None:
            masks = [m.to(device) for m in state["masks"]]
    start = time.monotonic() - elapsed

    def checkpoint() -> None:
        if cfg.checkpoint and rank == 0:
            _save(cfg.checkpoint, {
                "arch": arch.to_json(), "recipe": _recipe(cfg), "model": model.state_dict(), "opt": opt.state_dict(),
                "phase": phase, "done": done, "lr_scale": lr_scale, "elapsed": time.monotonic() - start,
                "planned": planned, "ft_planned": ft_planned, "history": history,
                "masks": None if masks is None else [m.cpu() for m in masks],
            })

    bar = None
    if cfg.progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=planned + ft_planned, initial=done + (planned if phase != "train" else 0),
                   desc=f"fit {arch.kind}", unit="epoch", file=sys.stderr, dynamic_ncols=True)
    # PSNR of the last finished epoch (also right after resuming a finished checkpoint)
    psnr_last = 10 * math.log10(1.0 / max(history[-1][2], 1e-12)) if history else 0.0
    snapshot = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
    previous: tuple | None = None  # the state one accepted epoch before ``snapshot``

    while phase != "done":
        if phase == "train" and done >= planned:
            phase, done = "finetune", 0
            if cfg.prune > 0 and ft_planned > 0:
                params = prunable(model)
                keep = global_magnitude_masks([p.detach().cpu().numpy() for _, p in params], cfg.prune)
                masks = [torch.from_numpy(k).to(device) for k in keep]
                _apply_masks(model, masks)
            else:
                ft_planned = 0
            checkpoint()
            continue
        if phase == "finetune" and done >= ft_planned:
            phase = "done"
            checkpoint()
            break
        t0 = time.monotonic()
        sq_sum, count = 0.0, 0
        net.train()
        total = (planned if phase == "train" else ft_planned) * steps
        base = cfg.lr * lr_scale * (1.0 if phase == "train" else 0.1)
        for i, idx in enumerate(_shares(T, done + (0 if phase == "train" else 10_000), cfg.seed, rank, world, cfg.batch)):
            it = done * steps + i
            for g in opt.param_groups:
                g["lr"] = lr_at(it, total, base, cfg.warmup if phase == "train" else 0.0)
            sel = torch.from_numpy(idx).to(device)
            y = target[sel].float().div_(255.0)
            inp = y if arch.kind == "hnerv" else frame_times(sel, T)
            out = net(inp)
            loss = F.mse_loss(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if masks is not None:
                _apply_masks(model, masks)
            sq_sum += float(loss.detach()) * len(idx)
            count += len(idx)
        sq_sum, count = _allreduce_sum([sq_sum, float(count)], device)
        mse = sq_sum / count
        best = min((h[2] for h in history if h[0] == phase), default=math.inf)
        if not math.isfinite(mse) or mse > SPIKE * best:
            # roll back and halve the learning rate (all ranks see the same sum). The blow-up may have
            # started inside the previous epoch (its mean loss looked fine, its final weights did
            # not), so that epoch is undone too when it belongs to this phase.
            if history and history[-1][0] == phase and previous is not None:
                snapshot, previous = previous, None
                history.pop()
                done -= 1
                if bar is not None:
                    bar.update(-1)
            model.load_state_dict(snapshot[0])
            opt.load_state_dict(snapshot[1])
            lr_scale *= 0.5
            if lr_scale < 1e-3:
                raise NeurocodecError("training diverged (non-finite or exploding loss) even at 1/1000 of the learning rate")
            continue
        previous, snapshot = snapshot, (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
        psnr_last = 10 * math.log10(1.0 / max(mse, 1e-12))
        done += 1
        history.append([phase, done, mse, time.monotonic() - t0])
        if phase == "train" and cfg.time_budget is not None:
            # re-plan from the measured epoch time so that training + fine-tune fit the budget
            per = (time.monotonic() - start) / sum(1 for h in history if h[0] == "train")
            fits = int(cfg.time_budget / per)
            ft_new = min(ft_default, max(1, fits // 11)) if ft_default else 0
            planned = int(_broadcast(float(max(done, min(cfg.epochs, fits - ft_new))), device))
            ft_planned = int(_broadcast(float(ft_new), device))
            if bar is not None:
                bar.total = planned + ft_planned
        if phase == "finetune" and cfg.time_budget is not None:
            if _broadcast(float(time.monotonic() - start > cfg.time_budget), device):
                ft_planned = done
        checkpoint()
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{phase} ep {done} loss {mse:.2e} psnr {psnr_last:.2f}")
        if on_epoch is not None:
            on_epoch(done, phase)
    if bar is not None:
        bar.close()
    model.eval()
    train_epochs = planned
    return FitResult(model, train_epochs, ft_planned, time.monotonic() - start, psnr_last, cfg.lr * lr_scale, history)


def _recipe(cfg: FitConfig) -> dict:
    """What a checkpoint must agree on to be resumed (the wall-clock budget may differ)."""
    return {"epochs": cfg.epochs, "seed": cfg.seed, "lr": cfg.lr, "batch": cfg.batch, "warmup": cfg.warmup,
            "prune": cfg.prune, "finetune_epochs": cfg.finetune_epochs}


def _apply_masks(model: Model, masks: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for (_, p), m in zip(prunable(model), masks):
            p.mul_(m)


@torch.no_grad()
def embeddings(model: Model, frames: np.ndarray, batch: int = 8) -> np.ndarray:
    """HNeRV embeddings of every frame (float32, T,C,h0,w0), computed on the model's device."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, frames.shape[0], batch):
        x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch])).to(device).permute(0, 3, 1, 2).float() / 255.0
        out.append(model.embed(x).float().cpu())
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------------- entry point
def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    """Encode a clip into ``.ncx``; under torchrun every rank trains and rank 0 writes the file."""
    ap = argparse.ArgumentParser(prog="python -m neurocodec.codecs.hnerv.train", description=__doc__.split("\n")[0])
    ap.add_argument("input", help="video file or .npy array T,H,W,3 uint8")
    ap.add_argument("-o", "--output", required=True, help="output .ncx")
    ap.add_argument("--codec", default="hnerv", choices=["hnerv", "nerv"])
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="codec parameter (repeatable)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--stats", help="write a JSON with the encoder's report (bpp, PSNR, times) here")
    args = ap.parse_args(argv)

    from ...io import read_any, write_bytes_atomic
    from .codec import HNeRVCodec, NeRVCodec

    params = {}
    for item in args.param:
        if "=" not in item:
            raise UsageError(f"--param needs KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        params[k.strip()] = _parse_value(v.strip())
    if "frames" in params and isinstance(params["frames"], list):
        params["frames"] = tuple(params["frames"])

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and params.get("device", "auto") != "cpu" else "gloo"
        dist.init_process_group(backend)
    rank = _dist()[0]
    try:
        frames = read_any(args.input)
        codec = HNeRVCodec() if args.codec == "hnerv" else NeRVCodec()
        blob = codec.encode(frames, progress=not args.quiet and rank == 0, **params)
        if rank == 0:
            write_bytes_atomic(args.output, blob)
            if args.stats:
                from ...container import unpack

                write_bytes_atomic(args.stats, json.dumps(unpack(blob).header.get("fit", {}), indent=2).encode())
            if not args.quiet:
                fit_info = codec.last_report or {}
                print(f"wrote {args.output}: {len(blob)} bytes, {fit_info.get('bpp', float('nan')):.4f} bpp, "
                      f"PSNR {fit_info.get('psnr', float('nan')):.2f} dB", file=sys.stderr)
    except NeurocodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        from ...errors import InputError

        return 2 if isinstance(exc, UsageError) else 3 if isinstance(exc, InputError) else 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
