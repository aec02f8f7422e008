"""Nearest-key search: for each sample and codebook, the index of the closest key.

Why blocked: the distance tensor of a batch is ``C x N x K`` (64 codebooks x 2,048 samples x 512
keys is 67 M floats, 268 MB); computing it in blocks of at most :data:`BLOCK` elements bounds the
memory whatever the batch, and the result is the same as one big ``argmin``. The distance is
``|k|^2 - 2 h.k`` (``|h|^2`` is the same for every key of a codebook, so it is left out), one
batched matrix product per block.

Masking: a key that no training sample ever selected holds a value of zeros, so sending it says
nothing; at evaluation such keys can be skipped (:func:`unused_key_mask`).
"""
from __future__ import annotations

import math

import torch

# elements per distance block (codebooks x samples x keys): bounds memory of the nearest-key search
BLOCK = 1 << 22


def unused_key_mask(counts: torch.Tensor | None) -> torch.Tensor | None:
    """``C x K`` bool: keys that training never selected, or ``None`` when nothing is to be skipped.

    A codebook that no training sample reached (every count zero) keeps all its keys, so a mask
    never leaves a codebook without a candidate."""
    if counts is None:
        return None
    unused = counts == 0
    blocked = unused & ~unused.all(1, keepdim=True)
    return blocked if bool(blocked.any()) else None


def nearest_keys(h: torch.Tensor, keys: torch.Tensor, blocked: torch.Tensor | None = None,
                 block: int = BLOCK) -> torch.Tensor:
    """Index of the nearest key per codebook.

    ``h``: queries ``N x C x d_k``; ``keys``: ``C x K x d_k``; ``blocked``: optional ``C x K`` bool
    of keys to skip. Returns ``N x C`` int64 on ``h``'s device."""
    N, C, _ = h.shape
    K = keys.shape[1]
    knorm = (keys * keys).sum(-1)  # C x K
    out = torch.empty(N, C, dtype=torch.long, device=h.device)
    cstep = max(1, min(C, block // max(1, K * min(N, 256))))
    nstep = max(1, block // max(1, cstep * K))
    for c0 in range(0, C, cstep):
        c1 = min(C, c0 + cstep)
        kb, kn = keys[c0:c1], knorm[c0:c1]
        for n0 in range(0, N, nstep):
            hb = h[n0 : n0 + nstep, c0:c1].transpose(0, 1)  # c x n x d_k
            d = torch.baddbmm(kn[:, None, :], hb, kb.transpose(1, 2), alpha=-2.0)  # c x n x K
            if blocked is not None:
                d.masked_fill_(blocked[c0:c1, None, :], math.inf)
            out[n0 : n0 + nstep, c0:c1] = d.argmin(-1).T
    return out
