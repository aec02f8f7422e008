"""Numba kernels of the ``photo`` model: integer prediction, contexts and adaptive statistics.

Everything that decides a coding table is integer arithmetic (fixed-point weights, integer
contexts, integer-valued counts), run sequentially in one fixed order on both sides, so the
decoder rebuilds the encoder's tables bit for bit on any machine. The counts live in float64
arrays only so that the coder can take them without a conversion: they hold integers < 2^31, on
which float64 sums, halvings and comparisons are exact.

Order: wavefronts ``t = 2r + c`` (a pixel depends on W, WW, NW, NWW, N, NN, NNW, NE, NNE, all on
earlier wavefronts), then the group's channels in coding order, then rows top to bottom. Within
one wavefront and channel no pixel depends on another, so each (wavefront, channel) is one
coder call; the statistics (bias sums, residual counts) are updated after it, pixel by pixel in
row order, identically at encoder and decoder.

Residual tokens: the error ``e = x - pred`` taken modulo 256 into [-128, 127], zigzagged to
``u`` in 0..255; ``u < 32`` is its own token, larger ``u`` falls into one of 6 buckets (token
32..37) followed by a uniform offset of 4-6 bits (coded by a second call per wavefront).
"""
from __future__ import annotations

import numpy as np
from numba import njit

NFEAT = 16  # 8 same-channel differences + 4 per reference channel (up to 2 references)
NACT = 8  # activity bins of the predictor classes
NDIR = 5  # gradient-direction bins
NCLASS = NACT * NDIR  # least-squares predictor classes per slot
NBIAS = NCLASS * 16  # bias-cancellation contexts per slot (class x 4 texture bits)
NEBIN = 24  # error-energy bins (the contexts of the residual distribution)
NFRAC = 2  # bins of the prediction's distance to its rounding (under / over a quarter)
NCTX = 3 * NEBIN * NFRAC  # residual-distribution contexts: slot x energy bin x fraction bin
NTOK = 38  # residual tokens
EXACT = 32  # u < EXACT is coded exactly by its token
WFRAC = 12  # fixed-point bits of the predictor weights
PFRAC = 4  # fractional bits of a prediction kept for the bias statistics
OFFW = 64  # width of the offset tables (largest offset: 6 bits)
BIAS_CLIP = 1 << PFRAC  # one error moves a bias sum by at most one level (robust: measured on validation)
LS_HALVE = 1024  # a class's accumulated normal equations are halved when it has seen this many pixels
NFEAT_OF_SLOT = np.array([8, 12, 16], np.int64)  # inputs used by slot 0 (no reference), 1 and 2

# bucket b (token EXACT + b) covers u in [BASE[b], BASE[b] + 2^BITS[b])
BUCKET_BASE = np.array([32, 48, 64, 96, 128, 192], dtype=np.int32)
BUCKET_BITS = np.array([4, 4, 5, 5, 6, 6], dtype=np.int32)
# thresholds of the error-energy bins (E < EBIN_EDGES[k] -> bin k; the last bin is open)
EBIN_EDGES = np.array([1, 2, 4, 6, 8, 11, 14, 18, 23, 29, 36, 45, 56, 70, 87, 108, 135, 168, 210, 262, 327, 408, 510],
                      dtype=np.int32)


def token_of_u() -> tuple[np.ndarray, np.ndarray]:
    """(token, offset) of every u in 0..255 (the reference for the kernels' own mapping)."""
    tok = np.empty(256, np.int32)
    off = np.zeros(256, np.int32)
    for u in range(256):
        if u < EXACT:
            tok[u] = u
        else:
            b = int(np.searchsorted(BUCKET_BASE, u, side="right") - 1)
            tok[u] = EXACT + b
            off[u] = u - BUCKET_BASE[b]
    return tok, off


TOK_OF_U, OFF_OF_U = token_of_u()
TOK_BITS = np.zeros(NTOK, np.int32)
TOK_BITS[EXACT:] = BUCKET_BITS
TOK_BASE = np.arange(NTOK, dtype=np.int32)
TOK_BASE[EXACT:] = BUCKET_BASE


def offset_tables() -> np.ndarray:
    """(7, OFFW) float64 rows: row k is uniform over 2^k offsets (other entries get a weight of 1
    against 2^20, never used: the coder needs every row to be the same width)."""
    out = np.ones((7, OFFW), np.float64)
    for k in range(7):
        out[k, :1 << k] = float(1 << 20)
    return out


@njit(cache=True, inline="always")
def _at(p, ch, r, c, rr, cc, w, dflt):
    """Value of plane ``ch`` of ``p`` at (rr, cc) seen from pixel (r, c): clamped into the image,
    and replaced by W (else N, else ``dflt``) when that position is not decoded before (r, c)'s
    wavefront. Both sides apply the same rule, so borders need no side information."""
    if rr < 0:
        rr = 0
    if cc < 0:
        cc = 0
    if cc >= w:
        cc = w - 1
    if 2 * rr + cc < 2 * r + c:
        return np.int32(p[ch, rr, cc])
    if c > 0:
        return np.int32(p[ch, r, c - 1])
    if r > 0:
        return np.int32(p[ch, r - 1, c])
    return np.int32(dflt)


@njit(cache=True, inline="always")
def _abs(v):
    return v if v >= 0 else -v


@njit(cache=True, inline="always")
def _nbrs(p, ch, r, c, w, dflt, inside):
    """(W, N, NW, NE, WW, NN, NNE, NWW, NNW) of plane ``ch`` of ``p`` at (r, c): direct reads
    inside the image (r >= 2, 2 <= c < w - 1), else through :func:`_at` (same values where both
    apply)."""
    if inside:
        return (np.int32(p[ch, r, c - 1]), np.int32(p[ch, r - 1, c]), np.int32(p[ch, r - 1, c - 1]),
                np.int32(p[ch, r - 1, c + 1]), np.int32(p[ch, r, c - 2]), np.int32(p[ch, r - 2, c]),
                np.int32(p[ch, r - 2, c + 1]), np.int32(p[ch, r - 1, c - 2]), np.int32(p[ch, r - 2, c - 1]))
    return (_at(p, ch, r, c, r, c - 1, w, dflt), _at(p, ch, r, c, r - 1, c, w, dflt),
            _at(p, ch, r, c, r - 1, c - 1, w, dflt), _at(p, ch, r, c, r - 1, c + 1, w, dflt),
            _at(p, ch, r, c, r, c - 2, w, dflt), _at(p, ch, r, c, r - 2, c, w, dflt),
            _at(p, ch, r, c, r - 2, c + 1, w, dflt), _at(p, ch, r, c, r - 1, c - 2, w, dflt),
            _at(p, ch, r, c, r - 2, c - 1, w, dflt))


@njit(cache=True)
def features(planes, errs, order, ci, r, c, f, n):
    """Fill ``f[n]`` (NFEAT int32) with the predictor inputs of channel ``order[ci]`` at (r, c);
    returns (N, class, error energy, W, NW, NE, activity) where the prediction is ``N + w . f``.

    Same-channel inputs are differences to N (so the prediction is shift-invariant); a reference
    channel (an earlier channel of the group at this pixel) enters as ``q - q_nb`` for its
    neighbours W, N, NW, NE: how the current pixel differs from its surroundings in that channel."""
    w = planes.shape[2]
    inside = r >= 2 and c >= 2 and c + 1 < w
    ch = order[ci]
    vw, vn, vnw, vne, vww, vnn, vnne, vnww, vnnw = _nbrs(planes, ch, r, c, w, 128, inside)
    f[n, 0] = vw - vn
    f[n, 1] = vnw - vn
    f[n, 2] = vne - vn
    f[n, 3] = vww - vn
    f[n, 4] = vnn - vn
    f[n, 5] = vnne - vn
    f[n, 6] = vnww - vn
    f[n, 7] = vnnw - vn
    for k in range(8, NFEAT):
        f[n, k] = 0
    energy = 0
    for j in range(min(ci, 2)):
        q = order[ci - 1 - j]
        qc = np.int32(planes[q, r, c])
        qw, qn, qnw, qne, _, _, _, _, _ = _nbrs(planes, q, r, c, w, 128, inside)
        f[n, 8 + 4 * j] = qc - qw
        f[n, 9 + 4 * j] = qc - qn
        f[n, 10 + 4 * j] = qc - qnw
        f[n, 11 + 4 * j] = qc - qne
        energy += (6 - 2 * j) * _abs(np.int32(errs[q, r, c]))
    dh = _abs(vw - vww) + _abs(vn - vnw) + _abs(vne - vn)
    dv = _abs(vw - vnw) + _abs(vn - vnn) + _abs(vne - vnne)
    act = dh + dv
    a = act >> 1
    abin = 0
    while a > 0 and abin < NACT - 1:
        a >>= 1
        abin += 1
    d = dv - dh
    if 2 * d < -act:
        dbin = 0
    elif 8 * d < -act:
        dbin = 1
    elif 8 * d <= act:
        dbin = 2
    elif 2 * d <= act:
        dbin = 3
    else:
        dbin = 4
    ew, en, enw, ene, eww, enn, _, _, _ = _nbrs(errs, ch, r, c, w, 0, inside)
    energy += 3 * _abs(ew) + 3 * _abs(en) + 2 * _abs(enw) + 2 * _abs(ene) + _abs(eww) + _abs(enn)
    return vn, abin * NDIR + dbin, energy, vw, vnw, vne, act


@njit(cache=True, inline="always")
def ebin_of(energy):
    k = 0
    while k < NEBIN - 1 and energy >= EBIN_EDGES[k]:
        k += 1
    return k


@njit(cache=True)
def wave_range(t, h, w):
    """First and last row of wavefront t (c = t - 2r in 0..w-1)."""
    lo = (t - w + 2) // 2
    if lo < 0:
        lo = 0
    hi = t // 2
    if hi > h - 1:
        hi = h - 1
    return lo, hi


@njit(cache=True)
def predict_wave(t, ci, slot, mode, planes, errs, order, wts, bsum, bcnt, pred, flip, predls, bctx, ectx, feats,
                 base, counts, tab):
    """Predictions and contexts of channel ``order[ci]`` on wavefront ``t``; returns the count n.

    pred: the integer prediction (0..255) the residual is taken against; predls: the least-squares
    prediction in 1/2^PFRAC units before bias correction; flip: 1 when the prediction was rounded
    up (the residual's sign is then flipped, so every context sees residuals whose mean leans the
    same way, as CALIC's sign flipping); bctx: bias context; ectx: error-energy
    bin of the residual distribution; feats/base: the predictor's inputs (for the refit); tab: the
    coding table of each pixel (its context's counts row; ``tab.shape[0] == 0``: not wanted).
    ``mode`` 0 (photos): the residual context counts the local gradient too; 1 (synthetic
    content): only the neighbours' residuals, since sharp but predictable edges are common there."""
    h, w = planes.shape[1], planes.shape[2]
    lo, hi = wave_range(t, h, w)
    n = 0
    for r in range(lo, hi + 1):
        c = t - 2 * r
        vn, cls, energy, vw, vnw, vne, act = features(planes, errs, order, ci, r, c, feats, n)
        if mode == 0:
            energy += act >> 1
        base[n] = vn
        acc = np.int64(0)
        for k in range(NFEAT_OF_SLOT[slot]):
            acc += np.int64(wts[slot, cls, k]) * np.int64(feats[n, k])
        pls = (np.int64(vn) << PFRAC) + ((acc + (1 << (WFRAC - PFRAC - 1))) >> (WFRAC - PFRAC))
        pint = (pls + (1 << (PFRAC - 1))) >> PFRAC
        # texture bits: where the neighbours lie against the prediction (CALIC-style bias context)
        tb = 0
        if vw > pint:
            tb |= 1
        if vn > pint:
            tb |= 2
        if vnw > pint:
            tb |= 4
        if vne > pint:
            tb |= 8
        b = cls * 16 + tb
        cnt = bcnt[slot, b]
        corr = np.int64(0)
        if cnt > 0:
            corr = bsum[slot, b] // cnt
        pf = pls + corr
        pi = (pf + (1 << (PFRAC - 1))) >> PFRAC
        if pi < 0:
            pi = 0
        if pi > 255:
            pi = 255
        pred[n] = pi
        flip[n] = 1 if pf < (pi << PFRAC) else 0
        predls[n] = pls
        bctx[n] = b
        dfr = pf - (pi << PFRAC)
        k = (slot * NEBIN + ebin_of(energy)) * NFRAC + (1 if (dfr >= 4 or dfr <= -4) else 0)
        ectx[n] = k
        if tab.shape[0] > 0:
            for j in range(NTOK):
                tab[n, j] = counts[k, j]
        n += 1
    return n


@njit(cache=True)
def tokens_of(t, ci, planes, order, pred, flip, n, tok, off, offk):
    """Encoder: tokens and offsets of the pixels of wavefront t (channel order[ci]); returns the
    number of offsets (written compactly into off/offk in pixel order)."""
    h, w = planes.shape[1], planes.shape[2]
    lo, _ = wave_range(t, h, w)
    p = planes[order[ci]]
    m = 0
    for i in range(n):
        r = lo + i
        c = t - 2 * r
        e = np.int32(p[r, c]) - pred[i]
        if flip[i]:
            e = -e
        e = ((e + 128) & 255) - 128
        u = 2 * e if e >= 0 else -2 * e - 1
        if u < EXACT:
            tok[i] = u
        else:
            b = 0
            while b < 5 and u >= BUCKET_BASE[b + 1]:
                b += 1
            tok[i] = EXACT + b
            off[m] = u - BUCKET_BASE[b]
            offk[m] = BUCKET_BITS[b]
            m += 1
    return m


@njit(cache=True)
def offset_bits(tok, n, offk):
    """Decoder: the offset widths of the tokens just decoded; returns how many offsets follow."""
    m = 0
    for i in range(n):
        if tok[i] >= EXACT:
            offk[m] = BUCKET_BITS[tok[i] - EXACT]
            m += 1
    return m


@njit(cache=True)
def place(t, ci, planes, order, pred, flip, n, tok, off):
    """Decoder: pixel values from tokens and offsets, written into the planes. Returns False when
    an offset does not fit its bucket (only a damaged stream decodes one)."""
    h, w = planes.shape[1], planes.shape[2]
    lo, _ = wave_range(t, h, w)
    p = planes[order[ci]]
    m = 0
    for i in range(n):
        r = lo + i
        c = t - 2 * r
        tk = tok[i]
        if tk < EXACT:
            u = tk
        else:
            o = off[m]
            if o < 0 or o >= (1 << BUCKET_BITS[tk - EXACT]):
                return False
            u = BUCKET_BASE[tk - EXACT] + o
            m += 1
        e = u >> 1 if (u & 1) == 0 else -((u + 1) >> 1)
        if flip[i]:
            e = -e
        p[r, c] = (pred[i] + e) & 255
    return True


@njit(cache=True)
def update_wave(t, ci, slot, planes, errs, order, pred, predls, bctx, ectx, tok, n, bsum, bcnt, counts,
                inc, limit, feats, base, xtx, xty, ncnt):
    """After a (wavefront, channel) is coded: residuals into ``errs``, bias sums, residual counts.
    Row order, integers only (the counts are integer-valued float64)."""
    h, w = planes.shape[1], planes.shape[2]
    lo, _ = wave_range(t, h, w)
    p = planes[order[ci]]
    e_pl = errs[order[ci]]
    ntok = counts.shape[1] - 1  # last column: the row sum
    for i in range(n):
        r = lo + i
        c = t - 2 * r
        x = np.int32(p[r, c])
        e_pl[r, c] = x - pred[i]
        b = bctx[i]
        # bias statistics; not from the first pixel (predicted from nothing: its error would
        # shift every flat pixel after it), and each error clipped to +-BIAS_CLIP (edges)
        if r > 0 or c > 0:
            eb = (np.int64(x) << PFRAC) - predls[i]
            if eb > BIAS_CLIP:
                eb = BIAS_CLIP
            if eb < -BIAS_CLIP:
                eb = -BIAS_CLIP
            bsum[slot, b] += eb
            bcnt[slot, b] += 1
            if bcnt[slot, b] >= 64:
                bsum[slot, b] >>= 1
                bcnt[slot, b] >>= 1
        k = ectx[i]
        counts[k, tok[i]] += inc
        counts[k, ntok] += inc
        if counts[k, ntok] > limit:
            tot = 0.0
            for j in range(ntok):
                v = np.floor((counts[k, j] + 1.0) * 0.5)
                counts[k, j] = v
                tot += v
            counts[k, ntok] = tot
        # the image's own normal equations of its class (integers: exact in any order)
        cls = b >> 4
        y = np.int64(x - base[i])
        nf = NFEAT_OF_SLOT[slot]
        for a in range(nf):
            fa = np.int64(feats[i, a])
            if fa != 0:
                xty[slot, cls, a] += fa * y
                for bb in range(a, nf):
                    xtx[slot, cls, a, bb] += fa * np.int64(feats[i, bb])
        ncnt[slot, cls] += 1
        if ncnt[slot, cls] >= LS_HALVE:  # forget slowly: later pixels weigh more (locality)
            ncnt[slot, cls] >>= 1
            for a in range(nf):
                xty[slot, cls, a] >>= 1
                for bb in range(a, nf):
                    xtx[slot, cls, a, bb] >>= 1


@njit(cache=True)
def refit(xtx, xty, ncnt, prior_a, prior_b, kappa, nfeat, wcur, solved):
    """Re-solve every class's predictor from the image's own normal equations plus ``kappa``
    pseudo-samples of the training ones (``prior_a``/``prior_b``: per-sample averages), weights
    rounded to WFRAC bits. Gaussian elimination in float64, sequential, in one fixed order (no
    pivoting: the matrix is positive definite), so both sides round to the same integers. A class
    whose count did not change since its last solve (``solved``) keeps its weights."""
    ns, nc = ncnt.shape
    a = np.empty((NFEAT, NFEAT), np.float64)
    b = np.empty(NFEAT, np.float64)
    for s in range(ns):
        m = nfeat[s]
        for c in range(nc):
            if ncnt[s, c] < 32 or ncnt[s, c] == solved[s, c]:
                continue
            solved[s, c] = ncnt[s, c]
            for i in range(m):
                b[i] = np.float64(xty[s, c, i]) + kappa * prior_b[s, c, i]
                for j in range(i, m):
                    v = np.float64(xtx[s, c, i, j]) + kappa * prior_a[s, c, i, j]
                    a[i, j] = v
                    a[j, i] = v
            ok = True
            for k in range(m):
                piv = a[k, k]
                if not (piv > 1e-9):
                    ok = False
                    break
                for i in range(k + 1, m):
                    g = a[i, k] / piv
                    if g != 0.0:
                        for j in range(k, m):
                            a[i, j] -= g * a[k, j]
                        b[i] -= g * b[k]
            if not ok:
                continue
            for k in range(m - 1, -1, -1):
                acc = b[k]
                for j in range(k + 1, m):
                    acc -= a[k, j] * b[j]
                b[k] = acc / a[k, k]
            for i in range(m):
                v = np.rint(b[i] * (1 << WFRAC))
                if v > 1 << 18:
                    v = 1 << 18
                if v < -(1 << 18):
                    v = -(1 << 18)
                wcur[s, c, i] = np.int32(v)


@njit(cache=True)
def ideal_bits(planes, order, slots, mode, wts, prior, inc, limit, hist, prior_a, prior_b, kappa, every):
    """Exact code length in bits the coder would spend on one group (same statistics, same order),
    from the adaptive counts directly (the coder's rounding adds a little): for measuring. Also
    counts every residual ``u`` per error-energy context into ``hist`` (training)."""
    cg, h, w = planes.shape
    errs = np.zeros((cg, h, w), np.int16)
    bsum = np.zeros((3, NBIAS), np.int64)
    bcnt = np.zeros((3, NBIAS), np.int64)
    counts = prior.copy()
    wcur = wts.copy()
    xtx = np.zeros((3, NCLASS, NFEAT, NFEAT), np.int64)
    xty = np.zeros((3, NCLASS, NFEAT), np.int64)
    ncnt = np.zeros((3, NCLASS), np.int64)
    solved = np.zeros((3, NCLASS), np.int64)
    nfeat = NFEAT_OF_SLOT
    nmax = min(h, w)
    feats = np.empty((nmax, NFEAT), np.int32)
    base = np.empty(nmax, np.int32)
    notab = np.empty((0, NTOK), np.float64)
    pred = np.empty(nmax, np.int32)
    flip = np.empty(nmax, np.int32)
    predls = np.empty(nmax, np.int64)
    bctx = np.empty(nmax, np.int32)
    ectx = np.empty(nmax, np.int32)
    tok = np.empty(nmax, np.int32)
    off = np.empty(nmax, np.int32)
    offk = np.empty(nmax, np.int32)
    ntok = counts.shape[1] - 1
    bits = 0.0
    for t in range(2 * (h - 1) + w):
        for ci in range(order.shape[0]):
            slot = slots[ci]
            n = predict_wave(t, ci, slot, mode, planes, errs, order, wcur, bsum, bcnt, pred, flip, predls, bctx, ectx,
                             feats, base, counts, notab)
            m = tokens_of(t, ci, planes, order, pred, flip, n, tok, off, offk)
            lo, _ = wave_range(t, h, w)
            p = planes[order[ci]]
            for i in range(n):
                k = ectx[i]
                bits -= np.log2(counts[k, tok[i]] / counts[k, ntok])
                r = lo + i
                e = np.int32(p[r, t - 2 * r]) - pred[i]
                e = (((-e if flip[i] else e) + 128) & 255) - 128
                hist[k, 2 * e if e >= 0 else -2 * e - 1] += 1
            for j in range(m):
                bits += offk[j]
            update_wave(t, ci, slot, planes, errs, order, pred, predls, bctx, ectx, tok, n, bsum, bcnt, counts,
                        inc, limit, feats, base, xtx, xty, ncnt)
        if every > 0 and t % every == every - 1:
            refit(xtx, xty, ncnt, prior_a, prior_b, kappa, nfeat, wcur, solved)
    return bits
