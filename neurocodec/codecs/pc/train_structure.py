"""Hidden Chow-Liu Tree structure learning (training only): mutual information -> maximum
spanning tree -> rooting.

Why apart from :mod:`.structure`: decoding only needs a stored parent array compiled into flat
index arrays; everything that *chooses* a tree from data is training, and modules whose name starts
with ``train`` are never imported by the decoder.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ...errors import UsageError
from .structure import Tree, compile_tree


@njit(cache=True)
def _pair_mi(coarse: np.ndarray, levels: int, pseudocount: float) -> np.ndarray:
    """Mutual information (nats) between every pair of columns of ``coarse`` (N, D) small ints."""
    n, d = coarse.shape
    mi = np.zeros((d, d))
    counts = np.zeros((d, levels, levels))
    marg = np.zeros((d, levels))
    for s in range(n):
        for i in range(d):
            marg[i, coarse[s, i]] += 1.0
    tot_m = n + pseudocount
    for i in range(d):
        counts[:] = 0.0
        for s in range(n):
            a = coarse[s, i]
            for j in range(i + 1, d):
                counts[j, a, coarse[s, j]] += 1.0
        # smoothed joint and marginals: pseudocount spread uniformly over the cells
        tot = n + pseudocount
        for j in range(i + 1, d):
            acc = 0.0
            for a in range(levels):
                pa = (marg[i, a] + pseudocount / levels) / tot_m
                for b in range(levels):
                    pab = (counts[j, a, b] + pseudocount / (levels * levels)) / tot
                    pb = (marg[j, b] + pseudocount / levels) / tot_m
                    acc += pab * np.log(pab / (pa * pb))
            mi[i, j] = acc
            mi[j, i] = acc
    return mi


def mutual_information(data: np.ndarray, levels: int = 16, pseudocount: float = 1.0) -> np.ndarray:
    """Pairwise MI between the columns of ``data`` (N, D) uint8, on values coarsened to ``levels`` bins
    (as Juice does: x // 16 for 16 levels) so that 4,000 samples estimate it without much bias."""
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[0] < 1:
        raise UsageError("mutual_information needs an (N, D) array with N >= 1")
    coarse = (data.astype(np.int64) * levels // 256).astype(np.int64)
    return _pair_mi(np.ascontiguousarray(coarse), levels, float(pseudocount))


def max_spanning_tree(weights: np.ndarray) -> list[tuple[int, int]]:
    """Edges of a maximum spanning tree of the dense symmetric ``weights`` (Prim, O(D^2)).
    Ties break towards the lower index, so the result is deterministic."""
    d = weights.shape[0]
    in_tree = np.zeros(d, dtype=bool)
    best = np.full(d, -np.inf)
    link = np.full(d, -1)
    in_tree[0] = True
    best[:] = weights[0]
    link[:] = 0
    edges = []
    for _ in range(d - 1):
        cand = np.where(in_tree, -np.inf, best)
        v = int(np.argmax(cand))
        edges.append((int(link[v]), v))
        in_tree[v] = True
        better = (weights[v] > best) & ~in_tree
        best[better] = weights[v][better]
        link[better] = v
    return edges


def _centroid(nodes: list[int], adj: list[list[int]], alive: np.ndarray) -> int:
    """The node of a tree piece whose removal leaves the smallest largest component."""
    root = nodes[0]
    order, par = [root], {root: -1}
    for v in order:
        for w in adj[v]:
            if alive[w] and w != par[v]:
                par[w] = v
                order.append(w)
    size = {v: 1 for v in order}
    for v in reversed(order[1:]):
        size[par[v]] += size[v]
    total = len(order)
    best, best_v = total + 1, root
    for v in order:
        worst = total - size[v]
        for w in adj[v]:
            if alive[w] and w != par[v]:
                worst = max(worst, size[w])
        if worst < best or (worst == best and v < best_v):
            best, best_v = worst, v
    return best_v


def _component(start: int, adj: list[list[int]], alive: np.ndarray) -> list[int]:
    out, seen = [start], {start}
    for v in out:
        for w in adj[v]:
            if alive[w] and w not in seen:
                seen.add(w)
                out.append(w)
    return out


def root_tree(d: int, edges: list[tuple[int, int]], shape: str = "balanced") -> np.ndarray:
    """Parent array (root has -1) of a latent tree over ``d`` variables.

    ``shape="chow_liu"``: the spanning tree itself rooted at its centroid (depth ~ radius, ~48 on
    28x28 digits). ``shape="balanced"``: centroid decomposition, as Juice's ``:balanced``: the
    centroid becomes the root and every piece left after removing it is rooted, recursively, at
    its own centroid under it. Depth <= log2(d) + 1, which is what makes per-pixel conditionals cost
    O(log D) message updates.
    """
    adj: list[list[int]] = [[] for _ in range(d)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    parent = np.full(d, -1, dtype=np.int32)
    alive = np.ones(d, dtype=bool)
    if shape == "chow_liu":
        root = _centroid(list(range(d)), adj, alive)
        order, seen = [root], {root}
        for v in order:
            for w in adj[v]:
                if w not in seen:
                    seen.add(w)
                    parent[w] = v
                    order.append(w)
        return parent
    if shape != "balanced":
        raise UsageError(f"unknown tree shape '{shape}' (known: balanced, chow_liu)")
    stack = [(0, -1)]
    while stack:
        start, up = stack.pop()
        piece = _component(start, adj, alive)
        c = _centroid(piece, adj, alive)
        parent[c] = up
        alive[c] = False
        for w in adj[c]:
            if alive[w]:
                stack.append((w, c))
    return parent


def learn_structure(data: np.ndarray, *, shape: str = "balanced", levels: int = 16,
                    max_samples: int = 5000, seed: int = 0) -> Tree:
    """HCLT structure from training data ``(N, D)`` uint8."""
    data = np.asarray(data)
    if data.shape[0] > max_samples:
        idx = np.random.default_rng(seed).choice(data.shape[0], max_samples, replace=False)
        data = data[np.sort(idx)]
    d = data.shape[1]
    if d == 1:
        return compile_tree(np.array([-1], dtype=np.int32))
    mi = mutual_information(data, levels)
    return compile_tree(root_tree(d, max_spanning_tree(mi), shape))
