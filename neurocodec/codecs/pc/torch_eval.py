"""Circuit evaluation in PyTorch (CUDA when present): log-likelihoods of many patches at once.

Level by level over the tree, in log space: every node of one depth at once, ``logsumexp`` for
the M x M sums, ``index_add_`` to pass messages to parents. Used for fast likelihood evaluation on
a GPU (model selection, bpd estimates). The *coder* never uses it: GPU reductions are not
bit-reproducible across machines, and the integer tables must be, so coding stays on the Numba
kernels (the codec refuses ``device="cuda"``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import MissingDependencyError
from ...runtime import resolve_device
from .model import HCLT


def log_likelihood_torch(circ: HCLT, x: np.ndarray, device: Any = "auto", chunk: int = 128) -> np.ndarray:
    """ln p(x) per row of ``x`` (P, D) (-1 = marginalised), float64 on CPU, float32 on CUDA.
    ``device``: anything :func:`neurocodec.runtime.resolve_device` takes."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", purpose="pc evaluation with PyTorch") from None
    dev = resolve_device(device)
    dt = torch.float64 if dev.type == "cpu" else torch.float32
    t = circ.tree
    d, m = circ.num_vars, circ.num_states
    # logs taken in numpy: fresh arrays, so torch never wraps the model's read-only ones
    ltrans = torch.as_tensor(np.log(circ.trans), dtype=dt, device=dev)
    lleaf = torch.as_tensor(np.log(circ.leaf), dtype=dt, device=dev)
    lprior = torch.as_tensor(np.log(circ.prior), dtype=dt, device=dev)
    depth = t.depth
    levels = [torch.as_tensor(np.flatnonzero(depth == k), device=dev) for k in range(int(depth.max()), 0, -1)]
    parent = torch.as_tensor(t.parent.astype(np.int64), device=dev)
    cols = torch.arange(d, device=dev)
    x = np.asarray(x)
    out = np.empty(x.shape[0])
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            xs = torch.as_tensor(x[s:s + chunk].astype(np.int64), device=dev)
            known = (xs >= 0)[..., None]
            logb = torch.where(known, lleaf[cols[None, :], :, xs.clamp(min=0)], torch.zeros((), dtype=dt, device=dev))
            for nodes in levels:  # deepest first: children are complete before their parents
                up = torch.logsumexp(ltrans[nodes][None] + logb[:, nodes, None, :], dim=-1)
                logb.index_add_(1, parent[nodes], up)
            res = torch.logsumexp(lprior[None] + logb[:, t.root], dim=-1)
            out[s:s + chunk] = res.double().cpu().numpy()
    return out
