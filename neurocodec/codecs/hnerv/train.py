"""Fitting an HNeRV / NeRV model to one clip, single process or under ``torchrun`` (DDP).

Why a file of its own: encoding *is* training for these codecs, but decoding never is, so the
training code lives here and only :mod:`.codec`'s encode imports it (lazily); decoding needs
:mod:`.model` alone. This module imports the model, never the codec.

Recipe (HNeRV's official code): Adam (0.9, 0.999), lr 1e-3, batch 2, per-iteration schedule with a
linear warm-up from 0.1 x lr over the first 10 % of iterations then cosine to 0; L2 loss. Then
global magnitude pruning (``prune``, 10 %) and a short fine-tune with the masks held (the paper's
step, missing from the official code). A non-finite loss, or an epoch whose loss is more than
``SPIKE`` times the best epoch of its phase (a network knocked out by too large a step: it stops
learning without ever producing NaN), rolls the epoch back and halves the lr (HNeRV is known to
diverge on some clips at 1e-3, and short CPU budgets want larger steps).

Defaults that follow the budget: ``lr=None`` (the default) takes :func:`default_lr` of the planned
iterations and the model size, fitted to a screen on clips the benchmark never reports
(``benchmarks/results/video/bikes/lr_budget_screen.json``); under ``time_budget`` the plan (and so
the step) is re-made after every epoch from the measured epoch time, keeping back time for the
fine-tune and for what the encode does after the fit (quantization, rendering).

Never silently degenerate: after the warm-up, and again at the end of training, the fit's PSNR is
compared with the PSNR of painting every pixel the clip's mean colour (:func:`baseline_psnr`); a fit
within ``COLLAPSE_DB`` of it has collapsed (a knocked-out network that the loss-spike guard cannot
see) and is restarted from fresh weights at a quarter of the step, up to ``MAX_RESTARTS`` times;
every restart is recorded (:attr:`FitResult.restarts`) and a fit that stays degenerate raises.

Threads: ``threads`` (default: ``NEUROCODEC_THREADS`` or ``OMP_NUM_THREADS`` when set, else 1; on a loaded 2-core machine one
training step took 0.32 s at 1 thread against 2.33 s at 2) is applied through
:func:`torch_threads`, the one place this wing touches torch's thread count, which puts the previous
count back when the fit (or the encode) ends.

The pieces, one concern each: :class:`Schedule` (epochs per phase, re-planned under a wall-clock
budget), :class:`RollbackGuard` (divergence detection and roll-back), :func:`start_finetune` (the
pruning phase), :func:`save_checkpoint` / :func:`load_checkpoint` (resumable training through
:mod:`neurocodec.weights`, kind ``"hnerv-checkpoint"``), the DDP helpers, and :func:`fit`, which
only strings them together.

Randomness: the initial weights come from a ``torch.Generator`` seeded with ``seed`` and the batch
order of epoch ``e`` is ``numpy.random.default_rng([seed, e])`` (offset for the fine-tune), so
torch's and numpy's global generators are never touched, every rank agrees on the permutation
without communicating, and a checkpoint needs no generator state: ``seed`` (in the recipe) and
the epoch counter determine everything that is drawn after it.

Distributed: under ``torchrun --nproc_per_node N`` every rank trains the same model on its share of
the frames (DistributedDataParallel, gloo on CPU, nccl on CUDA); every rank takes the same number
of steps per epoch (shares are padded by wrapping), and the time-budget decisions are made by rank 0
and broadcast. Rank 0 writes checkpoints. The process group is set up by the caller (the
``neurocodec hnerv encode`` command, :mod:`.cli`); :func:`fit` only uses it when it exists.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ... import weights
from ...errors import InputError, NeurocodecError, UsageError
from ...quant import global_magnitude_masks
from ...runtime import asked_threads, resolve_device
from ...runtime import threads as house_threads
from .model import Arch, Model, frame_times

#: an epoch loss this many times the phase's best so far counts as divergence (about -1.8 dB)
SPIKE = 1.5
#: model-file kind and format version of a training checkpoint
CHECKPOINT_KIND = "hnerv-checkpoint"
CHECKPOINT_VERSION = 2  # 2: the model holds HNeRV's free latents; the recipe has encoder_share
#: the fine-tune's batch orders are drawn with epoch numbers offset by this (distinct from training's)
_FINETUNE_EPOCH_OFFSET = 10_000
#: a fit whose PSNR is within this many dB of the mean-colour baseline after the warm-up has collapsed
COLLAPSE_DB = 1.0
#: fits shorter than this many training epochs or iterations are too short to judge (a warning, not
#: a restart): on the bikes screen no step learned anything in 80 iterations, good ones did in 240;
#: carphone's healthy 30-frame fits sit at the mean colour for their first 3-4 epochs (60 iterations)
MIN_JUDGE_EPOCHS = 6
MIN_JUDGE_ITERS = 200
#: the first check comes after this fraction of training (and at least CHECK_MIN_ITERS iterations)
CHECK_AT = 0.3
CHECK_MIN_ITERS = 100
#: restarts of a collapsed fit (each at RESTART_LR_FACTOR of the previous step) before giving up
MAX_RESTARTS = 2
RESTART_LR_FACTOR = 0.25
#: time kept back under a time budget for the work after the fit, in encoder epochs (quantization,
#: the precision search and the final render: 0.6 let a 40 s carphone demo encode take 43.9 s)
RESERVE_EPOCHS = 1.0
#: initial weights of restart k come from seed + k * _RESTART_SEED_STRIDE
_RESTART_SEED_STRIDE = 7919
#: HNeRV: fraction of the training epochs that run the encoder; after them the embeddings become
#: free parameters (decoder-only steps). From the carphone screen (benchmarks/video/latent_screen.py)
ENCODER_SHARE = 0.1
#: ...but never fewer encoder iterations than this: latents taken from a barely trained encoder start
#: the decoder-only phase badly (an 8-frame 32x32 fit of 120 iterations lost 4 dB switching at 12;
#: the bikes screen switched well after 144)
MIN_ENCODER_ITERS = 100
#: planning guess, under a time budget and before the switch, of a latent epoch's cost relative to an
#: encoder epoch (one carphone step: 0.019 s decoder-only against 0.059 s through the encoder)
LATENT_COST = 0.35
#: the fine-tune (after pruning) is quantization-aware at these (weight, embedding) bit depths: the
#: codec's defaults, which the precision search then starts from
QAT_BITS: tuple[int, int] | None = (8, 6)
#: weight of the rate term (off by default: see :func:`rate_estimate` and the video README's ablation)
RATE_WEIGHT = 0.0
#: the last fraction of the training epochs that are quantization-aware as well (0: the fine-tune only)
QAT_SHARE = 0.0
#: HNeRV: epochs over which the step rises from the encoder-safe step to the latent phase's larger one
#: after the switch. Without it the step doubled at once, and 7 of 8 committed 100-epoch fits tripped
#: the spike guard right there, which halved their step for good (carphone 0.25 bpp: 32.9 dB at the
#: halved step against 34.1 dB for the seed that did not trip it)
LATENT_RAMP = 5


# ------------------------------------------------------------------------- defaults that fit
def default_lr(kind: str, iterations: int, values: int, latent: bool = False) -> float:
    """Adam step for a fit of ``iterations`` steps of a model with ``values`` transmitted values
    (``latent``: HNeRV with a latent phase, see below).

    From ``benchmarks/results/video/bikes/lr_budget_screen.json`` (a 16-frame bikes crop, never a
    reported clip; 80-720 iterations): HNeRV's best step was 5e-3..1e-2 at 44k values and 5e-3 at
    126k, and 2e-2 or more collapsed the fit (17-18 dB, or the mean colour); NeRV's best was
    5e-3..1e-2 at 41k values and 4e-2 failed. Beyond the screen (more than ``LR_FLAT_ITERS``
    iterations) the step falls as ``iterations ** -0.5`` toward the official 300-epoch recipe's
    1e-3. So ``lr = LR_REF * (values / 50000) ** -size_exp * min(1, (iterations / LR_FLAT_ITERS) ** -0.5)``,
    clamped to ``[LR_MIN, LR_MAX]``. The committed carphone screen preferred larger steps (4e-2
    at 1200 iterations, 1.3 dB over 1e-2): a safe default costs that on easy clips, and
    ``lr`` stays a parameter; a fit that collapses anyway is restarted (see :func:`fit`).

    HNeRV with a latent phase (the default, ``encoder_share`` < 1) takes larger steps, and they do
    not shrink with the length of the fit: ``benchmarks/results/video/bikes/latent_screen.json``
    (48 bikes frames, 1440 iterations) had 2e-2 best at 46k values (28.0 dB against 26.9 at 1e-2) and
    1e-2 at 81k (29.2; 2e-2 was knocked out and halved by the spike guard: 26.1), and a 120-frame
    carphone fit of 6840 iterations at 37k values gained 0.7 dB from 8e-3 to 2e-2. So
    ``lr = 1.84e-2 * (values / 50000) ** -1`` there, clamped like the others."""
    ref, size_exp, decay = _LR_RULE["hnerv-latent" if latent and kind == "hnerv" else kind]
    lr = ref * (max(values, 1) / 50000.0) ** -size_exp
    if decay:
        lr *= min(1.0, (max(iterations, 1) / LR_FLAT_ITERS) ** -0.5)
    return float(min(LR_MAX, max(LR_MIN, lr)))


#: per codec: (lr at 50k values within the screened range, exponent on the model size, whether it
#: falls with the iterations past LR_FLAT_ITERS)
_LR_RULE: dict[str, tuple[float, float, bool]] = {"hnerv": (0.01, 0.5, True), "nerv": (0.01, 0.0, True),
                                                   "hnerv-latent": (0.0184, 1.0, False)}
LR_FLAT_ITERS = 1000
LR_MIN, LR_MAX = 1e-3, 0.04


def resolve_threads(threads: int | None) -> int:
    """``threads``, or ``NEUROCODEC_THREADS`` (the CLI's ``--threads``) or ``OMP_NUM_THREADS`` when
    set (:func:`neurocodec.runtime.asked_threads`: a non-number is a UsageError), or 1: never the house's load-dependent default, since the fit's
    bytes depend on the count (and small convolutions on a shared CPU run fastest single-threaded;
    see the module docstring)."""
    if threads is not None:
        return int(threads)
    asked = asked_threads()
    return 1 if asked is None else asked


def torch_threads(n: int) -> contextlib.AbstractContextManager[int]:
    """Run a block with torch's intra-op thread count at ``n``, then put the previous count back:
    the house's :func:`neurocodec.runtime.threads` at a fixed count. The fit passes its count
    explicitly, never the house's load-dependent default: a fit's float sums, and so an encode's
    bytes, depend on the thread count (8x between 1 and 2 threads on a loaded 2-core machine, too)."""
    return house_threads(n)


def baseline_psnr(frames: np.ndarray) -> float:
    """PSNR of painting every pixel of the clip its mean colour (per channel): a network that does
    no better has learned nothing. Computed in chunks of frames (float64 sums, no full copy)."""
    T = frames.shape[0]
    s1 = np.zeros(3)
    s2 = np.zeros(3)
    for i in range(0, T, 16):
        x = frames[i : i + 16].reshape(-1, 3).astype(np.float64)
        s1 += x.sum(0)
        s2 += np.einsum("ij,ij->j", x, x)
    n = frames[..., 0].size
    var = np.maximum(s2 / n - (s1 / n) ** 2, 0.0).mean()
    return 10 * math.log10(255.0**2 / max(var, 1e-10))


@dataclass
class FitConfig:
    epochs: int = 300
    time_budget: float | None = None  # seconds for training + fine-tune (wall clock)
    lr: float | None = None  # None: default_lr of the planned iterations and the model size
    batch: int = 2
    warmup: float = 0.1
    prune: float = 0.1
    finetune_epochs: int | None = None  # default: max(1, epochs // 10) when prune > 0
    seed: int = 0
    checkpoint: str | None = None
    progress: bool = False
    device: str = "auto"
    threads: int | None = None  # torch threads during the fit (None: OMP_NUM_THREADS or 1)
    time_reserve: float = 0.0  # seconds of the budget already spent by the caller (the encode's set-up)
    encoder_share: float = ENCODER_SHARE  # HNeRV: training epochs through the encoder (the rest: free latents)
    qat_bits: tuple[int, int] | None = QAT_BITS  # (weight, embedding) bits of a quantization-aware fine-tune
    rate_weight: float = RATE_WEIGHT  # the rate term's weight (0: MSE only; see rate_estimate)
    qat_share: float = QAT_SHARE  # last fraction of the training epochs that are quantization-aware too
    latent_ramp: int = LATENT_RAMP  # HNeRV: epochs of the step's rise after the switch to free latents

    def validate(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise UsageError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise UsageError(f"time_budget must be > 0 seconds, got {self.time_budget!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or not 1 <= self.threads <= 256):
            raise UsageError(f"threads must be an integer 1..256, got {self.threads!r}")
        if (self.lr is not None and not self.lr > 0) or not isinstance(self.batch, int) or self.batch < 1:
            raise UsageError("lr must be > 0 and batch a positive integer")
        if not 0.0 <= self.prune < 1.0:
            raise UsageError(f"prune must be in [0, 1), got {self.prune}")
        if self.finetune_epochs is not None and self.finetune_epochs < 0:
            raise UsageError("finetune_epochs must be >= 0")
        if not isinstance(self.seed, int):
            raise UsageError(f"seed must be an integer, got {self.seed!r}")
        if not 0.0 < self.encoder_share <= 1.0:
            raise UsageError(f"encoder_share must be in (0, 1], got {self.encoder_share!r}")
        if not 0.0 <= self.rate_weight <= 100.0:
            raise UsageError(f"rate_weight must be in [0, 100], got {self.rate_weight!r}")
        if not 0.0 <= self.qat_share <= 1.0:
            raise UsageError(f"qat_share must be in [0, 1], got {self.qat_share!r}")
        if not isinstance(self.latent_ramp, int) or not 0 <= self.latent_ramp <= 10_000:
            raise UsageError(f"latent_ramp must be an integer in [0, 10000], got {self.latent_ramp!r}")

    def recipe(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed (the wall-clock budget may differ)."""
        return {"epochs": self.epochs, "seed": self.seed, "lr": self.lr, "batch": self.batch, "warmup": self.warmup,
                "prune": self.prune, "finetune_epochs": self.finetune_epochs, "encoder_share": self.encoder_share,
                "qat_bits": list(self.qat_bits) if self.qat_bits else None,
                # only when set, so checkpoints written before the rate term still resume
                **({"rate_weight": self.rate_weight} if self.rate_weight else {}),
                **({"qat_share": self.qat_share} if self.qat_share else {}),
                **({"latent_ramp": self.latent_ramp} if self.latent_ramp else {})}


@dataclass
class FitResult:
    """The fitted model (in eval mode, on the training device) and how the fit went."""

    model: Model
    epochs: int  # training epochs run
    finetune_epochs: int
    seconds: float
    psnr_train: float  # float PSNR of the last epoch (before quantization)
    lr: float  # the lr actually used (after roll-backs and restarts)
    history: list = field(default_factory=list)  # [phase, epoch, mse, seconds] per accepted epoch
    restarts: list = field(default_factory=list)  # one dict per collapsed attempt that was restarted
    warnings: list = field(default_factory=list)  # what the caller must tell the user
    baseline_psnr: float = 0.0  # the mean-colour PSNR of the clip
    lr_auto: bool = True  # whether the step came from default_lr
    threads: int = 1
    latents: np.ndarray | None = None  # HNeRV: the optimised embeddings (T,C,h0,w0) after a latent phase
    encoder_epochs: int = 0  # training epochs that ran the encoder (all of them without a latent phase)

    def stats(self) -> dict[str, Any]:
        """The fit's statistics as JSON-able values (what an encode's report carries)."""
        return {"epochs": self.epochs, "finetune_epochs": self.finetune_epochs, "encoder_epochs": self.encoder_epochs,
                "lr": self.lr,
                "lr_auto": self.lr_auto, "threads": self.threads,
                "seconds": round(self.seconds, 2), "psnr_float": round(self.psnr_train, 4),
                "baseline_psnr": round(self.baseline_psnr, 3), "restarts": list(self.restarts),
                "warnings": list(self.warnings), "history": [list(h) for h in self.history]}


# ------------------------------------------------------------------------------- schedule
def lr_at(it: int, total: int, base: float, warmup: float) -> float:
    """Linear warm-up from 0.1 x lr over ``warmup`` of the iterations, then cosine to 0."""
    w = int(warmup * total)
    if it < w:
        return base * (0.1 + 0.9 * it / w)
    t = (it - w) / max(total - w, 1)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def epoch_batches(n: int, epoch: int, seed: int, rank: int, world: int, batch: int) -> list[np.ndarray]:
    """This rank's batches for one epoch: one seeded permutation shared by all ranks, split
    round-robin, padded by wrapping so every rank takes the same number of steps."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    per = -(-n // world)
    mine = perm[rank::world]
    if len(mine) < per:
        mine = np.concatenate([mine, perm[: per - len(mine)]])
    return [mine[i : i + batch] for i in range(0, per, batch)]


@dataclass
class Schedule:
    """Epochs per phase. Under a wall-clock budget the plan follows the measured epoch time:
    after every training epoch, training + fine-tune are re-planned to fit the budget (the
    fine-tune keeps about 1/11 of it), and the fine-tune stops once the budget is spent. The
    decisions are rank 0's, broadcast so every rank takes the same number of epochs."""

    train: int
    finetune: int
    finetune_default: int  # from the config: the most the fine-tune may get

    @classmethod
    def from_config(cls, cfg: FitConfig) -> "Schedule":
        if cfg.finetune_epochs is not None:
            ft = cfg.finetune_epochs
        else:
            ft = max(1, cfg.epochs // 10) if cfg.prune > 0 else 0
        return cls(cfg.epochs, ft, ft)

    def epochs(self, phase: str) -> int:
        return self.train if phase == "train" else self.finetune

    def total(self) -> int:
        return self.train + self.finetune

    per_epoch: float = 0.0  # measured seconds per epoch of the current kind (time budget only)
    per_encoder_epoch: float = 0.0  # measured seconds per epoch through the encoder

    def after_epoch(self, phase: str, done: int, elapsed: float, cfg: FitConfig, device: torch.device, *,
                    per_epoch: float, encoder_left: int = 0, latent_cost: float = 1.0, latent: bool = False) -> None:
        """Re-plan after an accepted epoch (``elapsed``: seconds since the fit began; ``per_epoch``:
        the measured seconds of an epoch of the kind now running; ``encoder_left``: HNeRV epochs
        still to run through the encoder before the latent phase, each latent epoch costing
        ``latent_cost`` of ``per_epoch``; ``latent``: the epoch just run was a latent one).

        The budget left (``time_budget`` minus what the caller spent before the fit, minus
        ``RESERVE_EPOCHS`` encoder epochs for the work after it) is divided by the epoch times;
        the fine-tune stops before an epoch that would not fit."""
        if cfg.time_budget is None:
            return
        self.per_epoch = per = max(per_epoch, 1e-6)
        if not latent or not self.per_encoder_epoch:
            self.per_encoder_epoch = per
        cheap = per * latent_cost  # seconds of an epoch after the switch
        budget = cfg.time_budget - cfg.time_reserve - RESERVE_EPOCHS * self.per_encoder_epoch
        if phase == "train":
            left = budget - elapsed
            encoder = min(encoder_left, max(int(left / per), 0))
            more = encoder + max(int((left - encoder * per) / cheap), 0)  # epochs that still fit
            ft_new = min(self.finetune_default, max(1, (done + more) // 11)) if self.finetune_default else 0
            self.train = int(_broadcast(float(max(done, min(cfg.epochs, done + more - ft_new))), device))
            self.finetune = int(_broadcast(float(ft_new), device))
        elif _broadcast(float(elapsed + cheap > budget), device):
            self.finetune = done


# ---------------------------------------------------------------------------- the fit's state
@dataclass
class TrainState:
    """Where a fit stands: what a checkpoint saves besides the weights and the optimizer."""

    phase: str = "train"  # "train" -> "finetune" -> "done"
    done: int = 0  # epochs accepted in this phase
    lr_scale: float = 1.0  # halved by every roll-back
    elapsed: float = 0.0  # wall-clock seconds before this process took over (resume)
    history: list = field(default_factory=list)  # [phase, epoch, mse, seconds] per accepted epoch
    masks: list[torch.Tensor] | None = None  # pruning keep-masks, held during the fine-tune
    restarts: list = field(default_factory=list)  # the collapsed attempts (see fit)
    attempt_start: float = 0.0  # fit seconds at which the current attempt began
    checked: bool = False  # whether this attempt passed its after-warm-up collapse check
    switch_at: int | None = None  # HNeRV: training epoch after which the latent phase begins
    latent: bool = False  # whether the latent phase has begun (embeddings are free parameters)
    mode_start: float = 0.0  # fit seconds at which the current kind of epoch began (timing)
    mode_epochs: int = 0  # accepted epochs of that kind since then

    def best(self) -> float:
        """The lowest epoch loss of the current phase so far (inf when none)."""
        return min((h[2] for h in self.history if h[0] == self.phase), default=math.inf)

    def train_epochs_run(self) -> int:
        return sum(1 for h in self.history if h[0] == "train")

    def last_epoch_in_phase(self) -> bool:
        """Whether the last accepted epoch belongs to the current phase (a roll-back may undo it)."""
        return bool(self.history) and self.history[-1][0] == self.phase

    def forget_last_epoch(self) -> None:
        self.history.pop()
        self.done -= 1

    def halve_lr(self) -> None:
        """After a roll-back; gives up below 1/1000 of the configured rate."""
        self.lr_scale *= 0.5
        if self.lr_scale < 1e-3:
            raise NeurocodecError("training diverged (non-finite or exploding loss) "
                                  "even at 1/1000 of the learning rate")

    def psnr_last(self) -> float:
        """Float PSNR of the last accepted epoch (0 before the first)."""
        epochs = [h for h in self.history if h[0] != "restart"]
        return _psnr(epochs[-1][2]) if epochs else 0.0


def _psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


# ------------------------------------------------------------------------------- roll-back
class RollbackGuard:
    """Catches a diverging epoch and restores the weights and optimizer from before it.

    It keeps the state after the last accepted epoch and the one before that: a blow-up may start
    inside an epoch whose mean loss still looked fine (its final weights did not), so when the
    previous accepted epoch belongs to the same phase it is undone too (once; the older snapshot
    is then gone)."""

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        self.model, self.opt = model, opt
        self.snapshot = self._take()
        self.previous: tuple | None = None

    def _take(self) -> tuple[dict, dict]:
        return copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.opt.state_dict())

    @staticmethod
    def diverged(mse: float, best: float) -> bool:
        return not math.isfinite(mse) or mse > SPIKE * best

    def accept(self) -> None:
        """The epoch just run is kept: it becomes the state to roll back to."""
        self.previous, self.snapshot = self.snapshot, self._take()

    def roll_back(self, undo_previous: bool) -> bool:
        """Restore the last snapshot, or the one before it when ``undo_previous`` and it exists;
        returns whether the previous accepted epoch was undone (the caller forgets it)."""
        undone = undo_previous and self.previous is not None
        if undone:
            self.snapshot, self.previous = self.previous, None
        self.model.load_state_dict(self.snapshot[0])
        self.opt.load_state_dict(self.snapshot[1])
        return undone


# --------------------------------------------------------------------------------- pruning
def prunable(model: Model) -> list[tuple[str, torch.nn.Parameter]]:
    """Decoder weight matrices/kernels (biases and the untransmitted encoder are left alone)."""
    return [(n, p) for n, p in model.decoder.named_parameters() if p.ndim > 1]


def apply_masks(model: Model, masks: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for (_, p), m in zip(prunable(model), masks):
            p.mul_(m)


def start_finetune(model: Model, cfg: FitConfig, schedule: Schedule, device: torch.device) -> list[torch.Tensor] | None:
    """End of training: prune the ``cfg.prune`` smallest decoder weights (one global threshold)
    and return the keep-masks the fine-tune holds. Without pruning there is no fine-tune."""
    if cfg.prune > 0 and schedule.finetune > 0:
        keep = global_magnitude_masks([p.detach().cpu().numpy() for _, p in prunable(model)], cfg.prune)
        masks = [torch.from_numpy(k).to(device) for k in keep]
        apply_masks(model, masks)
        return masks
    schedule.finetune = 0
    return None


# ------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: str | os.PathLike, arch: Arch, cfg: FitConfig, model: Model, opt: torch.optim.Optimizer,
                    state: TrainState, schedule: Schedule, elapsed: float) -> str:
    """Write a resumable checkpoint (a ``model:hnerv-checkpoint`` model file, atomically);
    returns its digest. Arrays: the model's and the optimizer's tensors and the pruning masks."""
    tree, arrays = weights.flatten({"model": model.state_dict(), "opt": opt.state_dict(), "masks": state.masks})
    config = {"arch": arch.to_json(), "recipe": cfg.recipe(), "phase": state.phase, "done": state.done,
              "lr_scale": state.lr_scale, "elapsed": elapsed, "planned": schedule.train,
              "ft_planned": schedule.finetune, "history": state.history, "restarts": state.restarts,
              "attempt_start": state.attempt_start, "checked": state.checked, "switch_at": state.switch_at,
              "latent": state.latent, "mode_start": state.mode_start, "mode_epochs": state.mode_epochs,
              "per_encoder_epoch": schedule.per_encoder_epoch, "tree": tree}
    return weights.save(path, CHECKPOINT_KIND, CHECKPOINT_VERSION, config, arrays)


def load_checkpoint(path: str | os.PathLike, arch: Arch, cfg: FitConfig, model: Model, opt: torch.optim.Optimizer,
                    device: torch.device) -> tuple[TrainState, Schedule]:
    """Load a checkpoint into ``model`` and ``opt``; refuse one made for another model or recipe."""
    try:
        data = Path(path).read_bytes()
        # not weights.load: a checkpoint is read once and changes every epoch, nothing to cache
        ckpt = weights.from_bytes(data, kind=CHECKPOINT_KIND, versions=(CHECKPOINT_VERSION, CHECKPOINT_VERSION),
                                  what=f"checkpoint {path}")
    except (OSError, InputError) as exc:
        raise InputError(f"cannot use checkpoint {path} ({exc}); delete it to start over") from None
    conf = ckpt.config_dict()
    if conf.get("arch") != arch.to_json() or conf.get("recipe") != cfg.recipe():
        raise UsageError(f"checkpoint {path} was made for another model or training recipe "
                         f"({conf.get('recipe')}); delete it to start over")
    try:
        tree = weights.unflatten(conf["tree"], ckpt.arrays, as_tensors=True, int_keys=True)
        masks = None if tree["masks"] is None else [m.to(device) for m in tree["masks"]]
        state = TrainState(conf["phase"], int(conf["done"]), float(conf["lr_scale"]), float(conf["elapsed"]),
                           list(conf["history"]), masks, list(conf.get("restarts", [])),
                           float(conf.get("attempt_start", 0.0)), bool(conf.get("checked", False)),
                           conf.get("switch_at"), bool(conf.get("latent", False)), float(conf.get("mode_start", 0.0)),
                           int(conf.get("mode_epochs", 0)))
        planned, ft_planned = int(conf["planned"]), int(conf["ft_planned"])
        model_state, opt_state = tree["model"], tree["opt"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"checkpoint {path} is incomplete ({type(exc).__name__}: {exc}); "
                         f"delete it to start over") from None
    model.load_state_dict(model_state)
    opt.load_state_dict(opt_state)
    schedule = Schedule.from_config(cfg)
    schedule.train, schedule.finetune = planned, ft_planned
    schedule.per_encoder_epoch = float(conf.get("per_encoder_epoch", 0.0))
    return state, schedule


# ------------------------------------------------------------------------------------- DDP
def _dist() -> tuple[int, int]:
    """(rank, world size) of the process group the caller set up, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rank_device(name: str, rank: int, world: int) -> torch.device:
    device = resolve_device(name)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())  # one GPU per rank
    return device


def _wrap_ddp(model: Model, device: torch.device, world: int) -> torch.nn.Module:
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if model.latents is not None:  # no latent phase under DDP: DDP must not wait for their gradients
        model.latents.requires_grad_(False)
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


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


# ------------------------------------------------------------------------------ progress
class _Bar:
    """A tqdm bar on stderr, or nothing (``enabled=False``)."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch", file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int, total: int, postfix: str | None = None) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix_str(postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------- quantization-aware fine-tune
def _grid_dims(x: torch.Tensor, per_channel: bool, axis: int) -> list[int]:
    """The axes one quantization step spans: all but ``axis`` per channel, else all."""
    return [d for d in range(x.ndim) if d != axis] if per_channel else list(range(x.ndim))


def _quant_grid(x: torch.Tensor, bits: int, per_channel: bool, axis: int, symmetric: bool, *,
                stored: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(step, lowest grid value or None when symmetric) of the grid :func:`neurocodec.quant.quantize`
    puts ``x`` on: ``max |x| / (2^(b-1) - 1)`` (symmetric) or ``(max - min) / (2^b - 1)`` from ``min``
    (affine). ``stored``: rounded to float16 as the stream stores them (the fine-tune's grid); else
    the exact values (the rate estimate's, which needs no stream-exact grid)."""
    dims = _grid_dims(x, per_channel, axis)
    cast = (lambda t: t.half().float()) if stored else (lambda t: t)
    if symmetric:
        amax = x.abs().amax(dim=dims, keepdim=True) if dims else x.abs()
        return cast(amax / ((1 << (bits - 1)) - 1)).clamp_min(1e-12), None
    lo = cast(x.amin(dim=dims, keepdim=True))
    return cast((x.amax(dim=dims, keepdim=True) - lo) / ((1 << bits) - 1)).clamp_min(1e-12), lo


def _fake_quantized(x: torch.Tensor, bits: int, per_channel: bool, axis: int = 0, symmetric: bool = True) -> torch.Tensor:
    """``x`` rounded to the grid the bitstream will use (:func:`neurocodec.quant.quantize`: symmetric
    per channel or per tensor for weights, affine per channel for embeddings; float16 scales)."""
    step, lo = _quant_grid(x, bits, per_channel, axis, symmetric, stored=True)
    if lo is None:
        qmax = (1 << (bits - 1)) - 1
        return torch.round(x / step).clamp_(-qmax, qmax) * step
    return torch.round((x - lo) / step).clamp_(0, (1 << bits) - 1) * step + lo


@torch.no_grad()
def _swap_in_quantized(model: Model, bits: tuple[int, int], latents: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Replace the decoder's weights (and, in the latent phase, the latents) by their quantized
    values in place; returns ``(parameter, float value)`` pairs for :func:`_swap_back`. The step in
    between is a straight-through one: its gradient, taken at the quantized point, updates the
    float weights (quantization-aware training without re-wiring the modules)."""
    from ...quant import choose_axis

    saved = []
    for p in model.decoder.parameters():
        saved.append((p, p.detach().clone()))
        p.copy_(_fake_quantized(p, bits[0], choose_axis(tuple(p.shape))))
    if latents and model.latents is not None:
        z = model.latents
        saved.append((z, z.detach().clone()))
        z.copy_(_fake_quantized(z, bits[1], True, axis=1, symmetric=False))  # per embedding channel
    return saved


@torch.no_grad()
def _swap_back(saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for p, value in saved:
        p.copy_(value)


_LN2 = math.log(2.0)


def rate_estimate(model: Model, bits: tuple[int, int], latents: bool) -> torch.Tensor:
    """A differentiable estimate of the bits the coded tensors will take: the decoder's weights at
    ``bits[0]`` (symmetric, per channel, as :func:`neurocodec.quant.quantize` codes them) and, in
    HNeRV's latent phase, the free embeddings at ``bits[1]`` (affine, per channel).

    Why this form: the bitstream codes each stream under its own empirical histogram, whose cost
    for the bell-shaped symbol counts of trained weights is close to that of a discretised Laplace
    fitted to them. Per tensor, with the symbols ``s = w / step`` and the Laplace scale ``b =
    mean |s|`` (held fixed within a step), a symbol costs about ``|s| / (b ln 2) + log2(2 b)``
    bits. The gradient (``sign(s) / (b ln 2)`` per symbol) pulls the many small weights toward
    the zero bin, which is what makes the histogram peaky and the stream short; the steps are
    held fixed too (the largest weight of a channel sets them), as in the bitstream (Gomes et al.
    2023, "Video compression with entropy-constrained neural representations", use a learned
    entropy model for the same purpose; a Laplace proxy keeps the fit's cost negligible)."""
    from ...quant import choose_axis

    total = torch.zeros((), device=next(model.parameters()).device)
    tensors = [(p, bits[0], choose_axis(tuple(p.shape)), 0, True) for p in model.decoder.parameters()]
    if latents and model.latents is not None:
        tensors.append((model.latents, bits[1], True, 1, False))
    for x, b, per_channel, axis, symmetric in tensors:
        dims = _grid_dims(x, per_channel, axis)
        if not dims:
            continue
        with torch.no_grad():
            step, _ = _quant_grid(x, b, per_channel, axis, symmetric, stored=False)
            centre = torch.zeros_like(step) if symmetric else x.mean(dim=dims, keepdim=True)
        sym = ((x - centre) / step).abs()
        scale = sym.detach().mean().clamp_min(0.05)
        total = total + sym.sum() / (scale * _LN2) + x.numel() * torch.log2(2.0 * scale)
    return total


# ----------------------------------------------------------------------------------------- fit
def _train_epoch(net: torch.nn.Module, model: Model, opt: torch.optim.Optimizer, target: torch.Tensor,
                 batches: list[np.ndarray], *, first_it: int, total_its: int, base_lr: float, warmup: float,
                 masks: list[torch.Tensor] | None, device: torch.device, latents: bool = False,
                 qat: tuple[int, int] | None = None, rate: tuple[float, tuple[int, int]] | None = None) -> float:
    """One epoch over ``batches``; returns the mean squared error over every rank's samples.
    ``latents``: HNeRV's latent phase, the decoder runs on the free embeddings (the encoder is
    idle). ``qat``: (weight bits, embedding bits) of a quantization-aware epoch (straight-through
    steps). ``rate``: (coefficient, bits): the loss adds coefficient x :func:`rate_estimate`."""
    T, kind = target.shape[0], model.arch.kind
    sq_sum, count = 0.0, 0
    net.train()
    for i, idx in enumerate(batches):
        for g in opt.param_groups:
            g["lr"] = lr_at(first_it + i, total_its, base_lr, warmup)
        sel = torch.from_numpy(idx).to(device)
        y = target[sel].float().div_(255.0)
        saved = _swap_in_quantized(model, qat, latents) if qat else None
        out = model.decode_latents(sel) if latents else net(y if kind == "hnerv" else frame_times(sel, T))
        mse = F.mse_loss(out, y)
        loss = mse if rate is None else mse + rate[0] * rate_estimate(model, rate[1], latents)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if saved is not None:
            _swap_back(saved)
        opt.step()
        if masks is not None:
            apply_masks(model, masks)
        sq_sum += float(mse.detach()) * len(idx)
        count += len(idx)
    sq_sum, n = _allreduce_sum([sq_sum, float(count)], device)
    return sq_sum / n


def _next_phase(state: TrainState, schedule: Schedule, model: Model, cfg: FitConfig, device: torch.device) -> bool:
    """train -> finetune (pruning first) -> done, once a phase has run its epochs; True if it moved."""
    if state.phase == "train" and state.done >= schedule.train:
        state.phase, state.done = "finetune", 0
        state.masks = start_finetune(model, cfg, schedule, device)
        return True
    if state.phase == "finetune" and state.done >= schedule.finetune:
        state.phase = "done"
        return True
    return False


def _collapsed(psnr: float, baseline: float) -> bool:
    """No better than the mean colour (a clip that is nearly one flat colour is never judged)."""
    return baseline < 35.0 and psnr < baseline + COLLAPSE_DB


def fit(
    frames: np.ndarray,
    arch: Arch,
    cfg: FitConfig,
    *,
    on_epoch: Callable[[int, str], None] | None = None,
) -> FitResult:
    """Train ``arch`` on ``frames`` (T,H,W,3 uint8), prune + fine-tune, and return the model.

    Same frames, arch and config (without ``time_budget``) => the same model, bit for bit, on one
    device and thread count; the global RNGs are neither used nor changed, and torch's thread
    count is set to ``cfg.threads`` for the fit only (:func:`torch_threads`). ``on_epoch(epoch,
    phase)`` is called after each accepted epoch (tests use it to simulate interruption).

    A collapsed attempt (see :func:`_collapsed`; checked once after ``CHECK_AT`` of the training and
    again at its end, when training is at least ``MIN_JUDGE_EPOCHS`` and ``MIN_JUDGE_ITERS`` long) restarts from fresh
    weights at ``RESTART_LR_FACTOR`` of the step; after ``MAX_RESTARTS`` it raises a
    :class:`NeurocodecError`. Too short a fit to judge returns with a warning instead."""
    cfg.validate()
    threads = resolve_threads(cfg.threads)
    with torch_threads(threads):
        result = _fit(frames, arch, cfg, on_epoch)
    result.threads = threads
    return result


def _fit(frames: np.ndarray, arch: Arch, cfg: FitConfig, on_epoch: Callable[[int, str], None] | None) -> FitResult:
    from .model import model_values

    rank, world = _dist()
    device = _rank_device(cfg.device, rank, world)
    model = Model(arch, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    if device.type == "cpu":
        # oneDNN trains the decoder's thin convolutions 1.5-1.6x faster per step in NHWC (bunny models
        # at 0.06 and 0.16 bpp, one thread); the encoder is not faster so (`bench video --throughput`)
        model.decoder.to(memory_format=torch.channels_last)
    T = frames.shape[0]
    baseline = baseline_psnr(frames)
    # frames stay uint8 on the device (4x less memory); each batch is converted when it is used
    target = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr or 1e-3, betas=(0.9, 0.999))
    net = _wrap_ddp(model, device, world)
    steps = len(epoch_batches(T, 0, cfg.seed, rank, world, cfg.batch))
    values = model_values(arch)

    def base_lr() -> float:
        lr = cfg.lr if cfg.lr is not None else default_lr(arch.kind, schedule.train * steps, values, latent_phase)
        return lr * state.lr_scale

    def encoder_cap() -> float:
        """Steps through the encoder keep the encoder-safe default step: the latent phase's larger
        default is for decoder-only steps (2e-2 through the encoder knocked a carphone fit out).
        After the switch the step rises to the full one over ``latent_ramp`` epochs (linearly, one
        level per epoch): the jump at once was where most fits spiked."""
        if cfg.lr is not None or not latent_phase:
            return 1.0
        its = schedule.train * steps
        cap = min(1.0, default_lr(arch.kind, its, values) / default_lr(arch.kind, its, values, True))
        if not state.latent:
            return cap
        if state.phase != "train":
            return 1.0
        since = state.done - (state.switch_at or 0)  # latent epochs already run
        if since >= cfg.latent_ramp:
            return 1.0
        return cap + (1.0 - cap) * (since + 1) / (cfg.latent_ramp + 1)

    state, schedule = TrainState(), Schedule.from_config(cfg)
    if cfg.checkpoint and os.path.exists(cfg.checkpoint):
        state, schedule = load_checkpoint(cfg.checkpoint, arch, cfg, model, opt, device)
    start = time.monotonic() - state.elapsed
    # HNeRV's latent phase: single process only (under DDP every rank would hold all the latents and
    # the idle encoder would break DDP's gradient bookkeeping)
    latent_phase = arch.kind == "hnerv" and world == 1 and cfg.encoder_share < 1.0

    def plan_switch(per: float, elapsed: float) -> None:
        """Fix the training epoch after which the latent phase begins: ``encoder_share`` of the
        planned epochs; under a time budget, of the epochs the budget buys at the measured encoder
        epoch time ``per`` and the guessed latent-epoch cost (known once the first epoch is run)."""
        if not latent_phase or state.switch_at is not None:
            return
        n = schedule.train
        if cfg.time_budget is not None:
            if per <= 0:
                return
            left = cfg.time_budget - cfg.time_reserve - RESERVE_EPOCHS * per - elapsed
            mix = cfg.encoder_share + (1.0 - cfg.encoder_share) * LATENT_COST
            n = min(cfg.epochs, state.done + max(int(left / (per * mix)), 0))
        # at the end of training at the latest: the fine-tune always runs on (and refines) the latents
        state.switch_at = min(max(1, round(cfg.encoder_share * n), math.ceil(MIN_ENCODER_ITERS / steps)), max(n, 1))

    def replan(elapsed: float) -> None:
        """After an accepted epoch: the time-budget re-plan (:meth:`Schedule.after_epoch`)."""
        per = (elapsed - state.mode_start) / max(state.mode_epochs, 1)
        if not state.latent:
            plan_switch(per, elapsed)
        encoder_left = 0 if state.latent or state.switch_at is None else max(state.switch_at - state.done, 0)
        schedule.after_epoch(state.phase, state.done, elapsed, cfg, device, per_epoch=per, encoder_left=encoder_left,
                             latent_cost=LATENT_COST if latent_phase and not state.latent else 1.0,
                             latent=state.latent)

    def switch_to_latents() -> None:
        """The encoder's embeddings become free parameters; from now on steps run the decoder only."""
        nonlocal guard
        model.fill_latents(target)
        state.latent = True
        state.mode_start, state.mode_epochs = time.monotonic() - start, 0
        guard = RollbackGuard(model, opt)  # snapshots from here on hold the filled latents

    plan_switch(0.0, 0.0)

    def checkpoint() -> None:
        if cfg.checkpoint and rank == 0:
            save_checkpoint(cfg.checkpoint, arch, cfg, model, opt, state, schedule, time.monotonic() - start)

    def restart(why: str) -> None:
        """Fresh weights (another seed), fresh optimizer, a quarter of the step; same budget clock."""
        nonlocal guard
        if len(state.restarts) >= MAX_RESTARTS:
            raise NeurocodecError(
                f"{arch.kind} training collapsed: {why}, even after {MAX_RESTARTS} restarts at lower learning "
                f"rates (last lr {base_lr():.3g}); try a smaller lr, more epochs or another seed")
        state.restarts.append({"attempt": len(state.restarts) + 1, "why": why, "lr": round(base_lr(), 6),
                               "epoch": state.done, "psnr_float": round(state.psnr_last(), 3),
                               "baseline_psnr": round(baseline, 3)})
        seed = cfg.seed + len(state.restarts) * _RESTART_SEED_STRIDE
        fresh = Model(arch, generator=torch.Generator().manual_seed(seed))
        model.load_state_dict(fresh.state_dict())
        opt.state.clear()
        state.lr_scale *= RESTART_LR_FACTOR
        state.phase, state.done, state.checked, state.masks = "train", 0, False, None
        state.latent, state.switch_at = False, None
        state.history = [h for h in state.history if h[0] == "restart"] + [["restart", len(state.restarts), 0.0, 0.0]]
        state.attempt_start = time.monotonic() - start
        state.mode_start, state.mode_epochs = state.attempt_start, 0
        schedule.train, schedule.finetune = Schedule.from_config(cfg).train, Schedule.from_config(cfg).finetune
        per = schedule.per_encoder_epoch
        if cfg.time_budget is not None and per > 0:
            plan_switch(per, state.attempt_start)
            schedule.after_epoch("train", 0, state.attempt_start + per, cfg, device, per_epoch=per,
                                 encoder_left=0 if state.switch_at is None else state.switch_at,
                                 latent_cost=LATENT_COST if latent_phase else 1.0)
        else:
            plan_switch(0.0, 0.0)
        guard = RollbackGuard(model, opt)
        checkpoint()

    bar = _Bar(cfg.progress and rank == 0, schedule.total(),
               state.done + (schedule.train if state.phase != "train" else 0), f"fit {arch.kind}")
    guard = RollbackGuard(model, opt)
    psnr_last = state.psnr_last()  # also right after resuming a finished checkpoint
    warnings: list[str] = []
    while state.phase != "done":
        judge = schedule.train >= MIN_JUDGE_EPOCHS and schedule.train * steps >= MIN_JUDGE_ITERS
        if state.phase == "train" and state.done >= schedule.train:
            # end of training: the second collapse check, before pruning
            psnr_now = state.psnr_last()
            if _collapsed(psnr_now, baseline) and _broadcast(float(judge), device):
                restart(f"PSNR {psnr_now:.2f} dB at the end of training, within {COLLAPSE_DB} dB of the "
                        f"mean-colour {baseline:.2f} dB")
                bar.update(-bar_position(bar), schedule.total())
                continue
        if _next_phase(state, schedule, model, cfg, device):
            checkpoint()
            continue
        t0 = time.monotonic()
        training = state.phase == "train"
        offset = 0 if training else _FINETUNE_EPOCH_OFFSET
        # the rate term waits for the warm-up: pulling weights toward zero before the fit has found
        # the clip knocked small fits back to the mean colour
        warm = not training or state.done >= math.ceil(cfg.warmup * schedule.train)
        rate = rate_term(model, cfg, state) if cfg.rate_weight and warm else None
        mse = _train_epoch(
            net, model, opt, target, epoch_batches(T, state.done + offset, cfg.seed, rank, world, cfg.batch),
            first_it=state.done * steps, total_its=schedule.epochs(state.phase) * steps,
            base_lr=base_lr() * (1.0 if training else 0.1) * encoder_cap(), warmup=cfg.warmup if training else 0.0,
            masks=state.masks, device=device, latents=state.latent,
            qat=cfg.qat_bits if cfg.qat_bits and (not training or quantization_aware(state.done, schedule.train, cfg))
            else None, rate=rate)
        if guard.diverged(mse, state.best()):
            # every rank sees the same (all-reduced) loss, so every rank rolls back together
            if guard.roll_back(undo_previous=state.last_epoch_in_phase()):
                state.forget_last_epoch()
                bar.update(-1, schedule.total())
            state.halve_lr()
            continue
        guard.accept()
        psnr_last = _psnr(mse)
        state.done += 1
        state.mode_epochs += 1
        state.history.append([state.phase, state.done, mse, time.monotonic() - t0])
        replan(time.monotonic() - start)
        if (latent_phase and training and not state.latent and state.switch_at is not None
                and state.done >= state.switch_at):
            switch_to_latents()
        checkpoint()
        bar.update(1, schedule.total(), f"{state.phase} ep {state.done} loss {mse:.2e} psnr {psnr_last:.2f}")
        if on_epoch is not None:
            on_epoch(state.done, state.phase)
        # first collapse check: once the warm-up is over (and a few epochs more)
        check_at = max(3, math.ceil(2 * cfg.warmup * schedule.train) + 1, math.ceil(CHECK_AT * schedule.train),
                       math.ceil(CHECK_MIN_ITERS / steps))
        if training and judge and not state.checked and state.done >= check_at and state.done < schedule.train:
            state.checked = True
            if _collapsed(psnr_last, baseline):
                restart(f"PSNR {psnr_last:.2f} dB after {state.done} epochs, within {COLLAPSE_DB} dB of the "
                        f"mean-colour {baseline:.2f} dB")
                bar.update(-bar_position(bar), schedule.total())
    bar.close()
    model.eval()
    if _collapsed(psnr_last, baseline):
        warnings.append(f"the model is no better than the clip's mean colour (PSNR {psnr_last:.2f} dB, mean colour "
                        f"{baseline:.2f} dB): {schedule.train} training epochs are too few to learn this clip")
    if state.restarts:
        warnings.append(f"training collapsed and was restarted {len(state.restarts)} time(s) at a lower "
                        f"learning rate (now {base_lr():.3g})")
    latents = model.latents.detach().cpu().numpy().copy() if state.latent else None
    encoder_epochs = min(state.switch_at, schedule.train) if state.latent and state.switch_at else schedule.train
    return FitResult(model, schedule.train, schedule.finetune, time.monotonic() - start, psnr_last,
                     base_lr(), [h for h in state.history if h[0] != "restart"], list(state.restarts), warnings,
                     baseline, cfg.lr is None, latents=latents, encoder_epochs=encoder_epochs)


def quantization_aware(done: int, train_epochs: int, cfg: FitConfig) -> bool:
    """Whether training epoch ``done`` (0-based) is one of the last ``qat_share`` of the training
    epochs, which run straight-through at the planned depths like the fine-tune."""
    return cfg.qat_share > 0 and done >= train_epochs - math.ceil(cfg.qat_share * train_epochs)


def rate_term(model: Model, cfg: FitConfig, state: "TrainState") -> tuple[float, tuple[int, int]] | None:
    """This epoch's rate coefficient: ``rate_weight x MSE / bits``, both from where the fit stands
    (the last accepted epoch's MSE, the bits now), so that ``rate_weight`` is the trade-off in
    relative terms: at 1, one per cent fewer bits is worth one per cent more squared error. (The
    RD curves of these codecs trade about 0.8 % of MSE for 1 % of rate near 0.1 bpp, so weights
    near 1 sit on the curve's own slope.) None before the first accepted epoch."""
    mse = [h[2] for h in state.history if h[0] in ("train", "finetune")]
    if not mse:
        return None
    bits = cfg.qat_bits or QAT_BITS or (8, 6)
    with torch.no_grad():
        total = float(rate_estimate(model, bits, state.latent))
    return (cfg.rate_weight * mse[-1] / max(total, 1.0), bits)


def bar_position(bar: "_Bar") -> int:
    """Where a progress bar stands (0 without one): a restart rewinds it."""
    return int(bar.bar.n) if bar.bar is not None else 0
