"""Training the bottleneck: keys by EMA k-means on unlabelled data, then values by SGD, task by task.

Training code (the module name starts with ``train``): decoding never imports it;
:meth:`KVBottleneck.init_keys` and :meth:`KVBottleneck.partial_fit` import it when called.

Why it is cheap: keys and encoder are frozen after :func:`init_keys`, so :func:`partial_fit`
computes a task's key indices once; each epoch is then a gather and a scatter-add over ``N x C``
integers, which makes thousands of epochs cheap. Every random draw comes from a local
``torch.Generator`` seeded from the bottleneck's ``seed`` (and the task number), never the global
RNG, so the same data and seed give the same bottleneck whatever else the process did.
"""
from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from ...errors import InputError, UsageError
from . import encoders as enc_mod
from .inputs import as_batch, as_labels
from .search import nearest_keys

if TYPE_CHECKING:  # model.py imports this module lazily: a runtime import back would be a circle
    from .model import KVBottleneck


@torch.no_grad()
def init_keys(kvb: "KVBottleneck", unlabelled: Any, *, epochs: int = 10, batch_size: int = 256,
              progress: bool = False) -> "KVBottleneck":
    """Fit ``kvb``'s keys by EMA k-means on unlabelled data, replacing dead keys; then freeze them.

    Resets the values (to zero) and the usage counts. Built-in encoders that need fitting (PCA)
    are fitted here, on the same unlabelled data, and frozen too. Returns ``kvb``.
    """
    kvb._check_trainable()
    if epochs < 1 or batch_size < 1:
        raise UsageError("epochs and batch_size must be >= 1")
    x = as_batch(unlabelled, "unlabelled data")
    if kvb.input_shape is not None and tuple(x.shape[1:]) != kvb.input_shape:
        raise InputError(f"expected samples of shape {kvb.input_shape}, got {tuple(x.shape[1:])}")
    kvb._invalidate()
    dev = kvb.device
    kvb.input_shape = tuple(x.shape[1:])
    if isinstance(kvb.encoder, enc_mod.BuiltinEncoder) and not kvb.encoder.fitted:
        kvb.encoder.fit(x.to(dev))
    kvb.feature_dim = None
    z = kvb.features(x)
    kvb.feature_dim = z.shape[1]
    kvb._make_projection(kvb.feature_dim)
    h = kvb.split(z)  # N x C x d_k
    N, C, dk = h.shape
    K = kvb.num_keys
    gen = torch.Generator().manual_seed(kvb.seed)
    # start from random samples (per codebook), as k-means++-free EMA k-means does
    start = torch.randint(0, N, (C, K), generator=gen).to(dev)
    keys = h[start, torch.arange(C, device=dev)[:, None]].clone()  # C x K x d_k
    B = min(batch_size, N)
    expected = B / K
    ema_count = torch.full((C, K), expected, device=dev)
    ema_sum = keys * expected
    threshold = 0.1 * B / K
    offs = (torch.arange(C, device=dev) * K)[None, :]
    steps = epochs * math.ceil(N / B)
    with tqdm(total=steps, desc="kvb keys", disable=not progress, file=sys.stderr) as bar:
        step = 0
        for _ in range(epochs):
            perm = torch.randperm(N, generator=gen).to(dev)
            for s in range(0, N, B):
                hb = h[perm[s : s + B]]  # b x C x d_k
                b = hb.shape[0]
                idx = nearest_keys(hb, keys)
                flat = (idx + offs).reshape(-1)
                ones = torch.ones_like(flat, dtype=torch.float32)
                cnt = torch.zeros(C * K, device=dev).index_add_(0, flat, ones)
                sums = torch.zeros(C * K, dk, device=dev).index_add_(0, flat, hb.reshape(-1, dk))
                ema_count.mul_(kvb.decay).add_(cnt.view(C, K), alpha=1 - kvb.decay)
                ema_sum.mul_(kvb.decay).add_(sums.view(C, K, dk), alpha=1 - kvb.decay)
                # Laplace-smoothed cluster sizes keep the division finite
                total = ema_count.sum(1, keepdim=True)
                n = (ema_count + 1e-5) / (total + K * 1e-5) * total
                keys = ema_sum / n[..., None]
                step += 1
                if step < steps:
                    # dead keys: move them onto random samples of this batch
                    dead = ema_count < threshold
                    if dead.any():
                        ci, ki = dead.nonzero(as_tuple=True)
                        rows = torch.randint(0, b, (ci.numel(),), generator=gen).to(dev)
                        keys[ci, ki] = hb[rows, ci]
                        ema_count[ci, ki] = expected
                        ema_sum[ci, ki] = keys[ci, ki] * expected
                bar.update(1)
    kvb.keys = keys.contiguous()
    kvb.values = torch.zeros(C, K, kvb.value_dim, device=dev)
    kvb.counts = torch.zeros(C, K, dtype=torch.long, device=dev)
    kvb.tasks_seen, kvb.classes_seen = 0, []
    kvb._refresh_tables()
    return kvb


@torch.no_grad()
def partial_fit(
    kvb: "KVBottleneck",
    x: Any,
    y: Any,
    *,
    epochs: int = 500,
    batch_size: int = 256,
    lr: float = 0.3,
    label_smoothing: float = 0.1,
    clip_norm: float = 1.0,
    progress: bool = False,
) -> "KVBottleneck":
    """Learn one more task (any labels in ``0..value_dim-1``; no task id). Only values move.

    SGD on the values alone: cross-entropy with label smoothing on the mean of the selected
    values, plain SGD (no momentum, no weight decay: unselected values never move), gradient norm
    clipped to ``clip_norm``. The gradient is written by hand (it is a scatter of
    ``softmax - target``), which is exact and much faster than autograd here. Returns ``kvb``.
    """
    kvb._check_trainable()
    kvb._require_keys()
    if epochs < 0 or batch_size < 1 or lr <= 0 or not 0 <= label_smoothing < 1 or clip_norm <= 0:
        raise UsageError("need epochs >= 0, batch_size >= 1, lr > 0, 0 <= label_smoothing < 1, clip_norm > 0")
    t = kvb._check_input(as_batch(x))
    dev = kvb.device
    labels = as_labels(y, t.shape[0], kvb.value_dim).to(dev)
    C, K, A = kvb.num_codebooks, kvb.num_keys, kvb.value_dim
    # keys and encoder are frozen: the indices of this task are computed once
    idx = kvb.indices(t, mask=False)
    kvb._invalidate()
    flat = idx + (torch.arange(C, device=dev) * K)[None, :]  # N x C into the C*K table
    kvb.counts += torch.bincount(flat.reshape(-1), minlength=C * K).view(C, K)
    N = flat.shape[0]
    target = torch.full((N, A), label_smoothing / A, device=dev)
    target[torch.arange(N, device=dev), labels] += 1.0 - label_smoothing
    V = kvb.values.view(C * K, A)
    # |grad| <= sqrt(2 / C) always (|softmax - target| <= sqrt 2 per sample, averaged over the
    # batch and the codebooks), so the clip can only act when that bound exceeds clip_norm
    may_clip = math.sqrt(2.0 / C) > clip_norm
    gen = torch.Generator().manual_seed(kvb.seed * 1000 + kvb.tasks_seen + 1)
    B = min(batch_size, N)
    for _ in tqdm(range(epochs), desc="kvb values", disable=not progress, file=sys.stderr):
        perm = torch.randperm(N, generator=gen).to(dev)
        for s in range(0, N, B):
            bi = perm[s : s + B]
            fb = flat[bi]  # b x C
            b = fb.shape[0]
            logit = V[fb].mean(1)  # b x A
            g = (torch.softmax(logit, 1) - target[bi]) / (b * C)  # d loss / d value, per sample
            rows = fb.reshape(-1)
            contrib = g[:, None, :].expand(b, C, A).reshape(-1, A)
            scale = lr
            if may_clip:
                uniq, inv = torch.unique(rows, return_inverse=True)
                grad = torch.zeros(uniq.numel(), A, device=dev).index_add_(0, inv, contrib)
                norm = float(grad.norm())
                if norm > clip_norm:
                    scale = lr * clip_norm / (norm + 1e-6)
            V.index_add_(0, rows, contrib, alpha=-scale)
    kvb.tasks_seen += 1
    kvb.classes_seen = np.union1d(np.asarray(kvb.classes_seen, dtype=np.int64), labels.unique().cpu().numpy()).tolist()
    kvb._refresh_tables()
    return kvb
