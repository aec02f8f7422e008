"""Numba kernels over a compiled HCLT (see :mod:`.structure`).

The model is a tree of hidden variables z_v (M states), one per pixel v, with
``prior[k] = p(z_root = k)``, ``trans[v, i, j] = p(z_v = j | z_parent(v) = i)`` and categorical
leaves ``leaf[v, k, c] = p(x_v = c | z_v = k)``. As a probabilistic circuit: one sum node per
(v, state) with M x M weights, product nodes joining a leaf with the children's sums.

Every node keeps an upward message ``up[v, i] = sum_j trans[v, i, j] * bn_v[j]`` where ``bn_v`` is
the (sum-normalised) product of v's leaf term (1 when x_v is unobserved: marginalised) and its
children's upward messages. One function (:func:`_node_update`) computes it, in a fixed loop order,
everywhere: so the incremental coder and the naive full re-evaluation produce the same floats, and
the encoder and decoder the same integer tables. No fastmath anywhere in this module.

The coder's default is the compiled twin of the coding kernels below (``native/pc_kernels.c``, see
:mod:`.native`), which computes the same floats in the same order; these stay the reference it is
tested against (``tests/test_native.py``) and the fallback where it is not built.

Only what decoding and likelihoods need lives here; the EM flow kernel is training code and lives
in :mod:`.train_em` (it reuses :func:`_node_update`). Every ``prange`` loop handles one image per
iteration with no shared sums, so results do not depend on the Numba thread count.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...entropy import pmf_to_freqs_row

#: model.Q_STEP (not imported: model loads this module lazily; tests/test_native.py pins them equal)
Q_STEP = 8.0


# ------------------------------------------------------ model tables (model.dequantize, leaves)
@njit(cache=True)
def dequantize_rows(q, out):
    """p = 2^(-q/8), each row renormalised; sequential float64 so every machine gets the same bits."""
    rows, k = q.shape
    for r in range(rows):
        s = 0.0
        for c in range(k):
            val = 2.0 ** (-float(q[r, c]) / Q_STEP)
            out[r, c] = val
            s += val
        for c in range(k):
            out[r, c] /= s


@njit(cache=True)
def mix_leaves(w, basis, out):
    """leaf[v, k, c] = sum_l w[v, k, l] * basis[l, c], summed in a fixed order (reproducible)."""
    d, m, nb = w.shape
    for v in range(d):
        for k in range(m):
            for c in range(basis.shape[1]):
                acc = 0.0
                for el in range(nb):
                    acc += w[v, k, el] * basis[el, c]
                out[v, k, c] = acc


# ------------------------------------------------------------------------------- the circuit
@njit(cache=True)
def _node_update(v, xrow, up, trans, leaf, child_ptr, child_idx, b):
    """Recompute ``up[v]`` from its children and its leaf; leaves the normalised product in ``b``
    and returns the normalising factor (for log-likelihoods)."""
    m = b.shape[0]
    for k in range(m):
        b[k] = 1.0
    for ci in range(child_ptr[v], child_ptr[v + 1]):
        c = child_idx[ci]
        for k in range(m):
            b[k] *= up[c, k]
    xv = xrow[v]
    if xv >= 0:
        for k in range(m):
            b[k] *= leaf[v, k, xv]
    s = 0.0
    for k in range(m):
        s += b[k]
    for k in range(m):
        b[k] /= s
    for i in range(m):
        acc = 0.0
        for j in range(m):
            acc += trans[v, i, j] * b[j]
        up[v, i] = acc
    return s


@njit(cache=True)
def _upward(xrow, up, trans, leaf, child_ptr, child_idx, post, b):
    """Full upward pass for one image; returns sum of log normalisers (root excluded)."""
    ls = 0.0
    for q in range(post.shape[0]):
        ls += np.log(_node_update(post[q], xrow, up, trans, leaf, child_ptr, child_idx, b))
    return ls


@njit(cache=True)
def _conditional(t, xrow, up, prior, trans, leaf, parent, child_ptr, child_idx, pmf):
    """p(x_t = c | observed pixels) for all c (unnormalised, into ``pmf``), from cached upward
    messages: an outside message root -> t over the cached siblings, then 256 x M leaf mixing."""
    m = prior.shape[0]
    kk = pmf.shape[0]
    # path t -> root
    depth = 0
    v = t
    while parent[v] >= 0:
        v = parent[v]
        depth += 1
    path = np.empty(depth + 1, dtype=np.int64)
    v = t
    for q in range(depth + 1):
        path[q] = v
        v = parent[v]
    out = np.empty(m)
    w = np.empty(m)
    for k in range(m):
        out[k] = prior[k]
    for lev in range(depth, 0, -1):
        a = path[lev]
        c = path[lev - 1]
        for k in range(m):
            w[k] = out[k]
        xa = xrow[a]
        if xa >= 0:
            for k in range(m):
                w[k] *= leaf[a, k, xa]
        for si in range(child_ptr[a], child_ptr[a + 1]):
            s = child_idx[si]
            if s != c:
                for k in range(m):
                    w[k] *= up[s, k]
        tot = 0.0
        for k in range(m):
            tot += w[k]
        for k in range(m):
            w[k] /= tot
        for j in range(m):
            out[j] = 0.0
        for i in range(m):
            wi = w[i]
            for j in range(m):
                out[j] += wi * trans[c, i, j]
    # inside product of t's children (t itself is unobserved)
    for k in range(m):
        w[k] = out[k]
    for si in range(child_ptr[t], child_ptr[t + 1]):
        s = child_idx[si]
        for k in range(m):
            w[k] *= up[s, k]
    for c in range(kk):
        pmf[c] = 0.0
    for k in range(m):
        wk = w[k]
        for c in range(kk):
            pmf[c] += wk * leaf[t, k, c]


# ----------------------------------------------------------------------------- coding kernels
# Serial on purpose: these run twice per pixel step on a few images, far too fine-grained for a
# thread pool. With parallel=True a 2-core machine coded 2.8x slower than one thread when idle and
# ~40x slower when the other core was busy (every step waits for the slowest worker).
@njit(cache=True)
def init_state(x, up, trans, leaf, child_ptr, child_idx, post):
    """Upward messages of every image for its current evidence ``x`` (P, D) (-1 = unknown)."""
    m = up.shape[2]
    for p in range(x.shape[0]):
        b = np.empty(m)
        _upward(x[p], up[p], trans, leaf, child_ptr, child_idx, post, b)


@njit(cache=True)
def cond_freqs(t, x, up, prior, trans, leaf, parent, child_ptr, child_idx, active, precision, freqs):
    """Efficient path: integer table of pixel ``t`` for every active image, from cached messages.
    Returns the number of images whose pmf was not a distribution (0 when all is well)."""
    bad = 0
    for p in range(x.shape[0]):
        if active[p]:
            pmf = np.empty(freqs.shape[1])
            _conditional(t, x[p], up[p], prior, trans, leaf, parent, child_ptr, child_idx, pmf)
            if not pmf_to_freqs_row(pmf, freqs[p], precision):
                bad += 1
    return bad


@njit(cache=True)
def observe(t, symbols, x, up, trans, leaf, parent, child_ptr, child_idx, active):
    """Record x_t = symbols[p] for active images and refresh the messages on the path t -> root."""
    m = up.shape[2]
    for p in range(x.shape[0]):
        if active[p]:
            x[p, t] = symbols[p]
            b = np.empty(m)
            v = t
            while v >= 0:
                _node_update(v, x[p], up[p], trans, leaf, child_ptr, child_idx, b)
                v = parent[v]


@njit(cache=True)
def cond_freqs_naive(t, x, prior, trans, leaf, parent, child_ptr, child_idx, post, active, precision, freqs):
    """Reference path: re-evaluate the whole circuit for the current evidence (O(D |p|) per pixel),
    then the same conditional. Must give the same tables as :func:`cond_freqs`."""
    m = prior.shape[0]
    d = x.shape[1]
    bad = 0
    for p in range(x.shape[0]):
        if active[p]:
            up = np.empty((d, m))
            b = np.empty(m)
            _upward(x[p], up, trans, leaf, child_ptr, child_idx, post, b)
            pmf = np.empty(freqs.shape[1])
            _conditional(t, x[p], up, prior, trans, leaf, parent, child_ptr, child_idx, pmf)
            if not pmf_to_freqs_row(pmf, freqs[p], precision):
                bad += 1
    return bad


# ------------------------------------------------------------------------------ likelihood
@njit(cache=True, parallel=True)
def log_likelihood(x, prior, trans, leaf, child_ptr, child_idx, post, root, out):
    """Natural-log likelihood of each image (P, D) (-1 entries are marginalised) into ``out``."""
    m = prior.shape[0]
    d = x.shape[1]
    for p in prange(x.shape[0]):
        up = np.empty((d, m))
        b = np.empty(m)
        ls = _upward(x[p], up, trans, leaf, child_ptr, child_idx, post, b)
        # b holds the root's normalised product after the last node of the post-order (the root)
        z = 0.0
        for k in range(m):
            z += prior[k] * b[k]
        out[p] = ls + np.log(z)
