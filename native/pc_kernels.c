/* Compiled PC coding kernels: the conditional pass of neurocodec's HCLT coder, in plain C.
 *
 * Built by setuptools as the optional extension neurocodec.codecs.pc._native (setup.py); the
 * Python side is neurocodec/codecs/pc/native.py, and the Numba kernels in
 * neurocodec/codecs/pc/kernels.py are the reference and fallback. tests/test_native.py checks
 * that both give the same integer tables, bit for bit.
 *
 * Why C: the Numba path paid a JIT warm-up (seconds with a cold cache) on the first call of every
 * process, and one dispatch per pixel step. Why it is faster than the Numba loops it mirrors:
 *   - every message is computed by the same float operations in the same order as kernels.py
 *     (so the tables are identical), but the loops run along contiguous memory the compiler can
 *     vectorise without reassociating any sum (each lane owns one output);
 *   - nothing is recomputed that cannot have changed: the upward message of a node is refreshed
 *     only when a later conditional reads it (dirty flags), and the outside messages on the path
 *     root -> t are reused from the previous conditional down to the deepest node that the
 *     pixels observed since then cannot affect. A message is a pure function of the evidence it
 *     covers, so computing it later or once instead of twice gives the same bits.
 *
 * No fast-math, no FMA contraction (setup.py passes -ffp-contract=off): bits must match Numba.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "pc kernels need IEEE double arithmetic without excess precision (FLT_EVAL_METHOD 0)"
#endif

/* AVX2 clones of the hot loops on x86-64 Linux with GCC (picked at load time by the CPU);
 * AVX2 without FMA changes nothing but the vector width, so the bits stay the same. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif
/* what HOT functions call must be compiled into each of their clones */
#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

/* Four-double vectors (GCC/Clang vector extensions): element-wise IEEE operations, the same as
 * the scalar ones lane by lane; spelled out because the compilers' own vectorisation of these
 * loops kept spilling the accumulators. */
#if defined(__GNUC__)
#define PC_VEC 1
typedef double v4d __attribute__((vector_size(32), aligned(8)));
typedef int64_t v4l __attribute__((vector_size(32), aligned(8))); /* lane masks of v4d comparisons */
typedef int32_t v4i __attribute__((vector_size(16), aligned(4)));
#endif

/* y[j] = sum_i a[i] * X[i, j], summed over i in order for each j (X: m x m, row-major). */
INLINE void vecmat(const double *a, const double *X, const Py_ssize_t m, double *y)
{
#ifdef PC_VEC
    if (m == 16) {
        v4d y0 = {0.0, 0.0, 0.0, 0.0}, y1 = y0, y2 = y0, y3 = y0;
        for (Py_ssize_t i = 0; i < 16; i++) {
            const v4d ai = {a[i], a[i], a[i], a[i]};
            const v4d *r = (const v4d *)(X + i * 16);
            y0 += ai * r[0];
            y1 += ai * r[1];
            y2 += ai * r[2];
            y3 += ai * r[3];
        }
        v4d *o = (v4d *)y;
        o[0] = y0, o[1] = y1, o[2] = y2, o[3] = y3;
        return;
    }
#endif
    for (Py_ssize_t j = 0; j < m; j++) y[j] = 0.0;
    for (Py_ssize_t i = 0; i < m; i++) {
        const double ai = a[i];
        const double *row = X + i * m;
        for (Py_ssize_t j = 0; j < m; j++) y[j] += ai * row[j];
    }
}

/* w[i] *= u[i]: element by element, so vector lanes give the scalar loop's bits; restrict tells
 * the compiler the scratch row and the message never overlap, which lets it vectorise at all. */
INLINE void mul_into(double *restrict w, const double *restrict u, const Py_ssize_t m)
{
    for (Py_ssize_t i = 0; i < m; i++) w[i] *= u[i];
}

typedef struct {
    PyObject_HEAD
    Py_buffer bufs[9];
    int nbufs;
    const double *prior, *trans, *transT, *leaf;
    const int32_t *parent, *cptr, *cidx, *depth, *post;
    Py_ssize_t n, d, m, k, hmax;
    Py_ssize_t ps, vs; /* element of (patch p, node v) in x, dirty: p * ps + v * vs; row of up: times m */
    int precision;
    int16_t *x;     /* (n, d) or (d, n) evidence, -1 = unknown */
    double *up;     /* (n, d, m) or (d, n, m) upward messages (valid where dirty == 0) */
    uint8_t *dirty; /* (n, d) or (d, n) */
    double *outc;   /* (n, hmax, m) outside messages along the cached path */
    int32_t *pathc; /* (n, hmax) the cached path, root first */
    int32_t *valid; /* (n) how many levels of the cached path are still exact */
    double *work;   /* 2 m + k scratch */
    int32_t *nodes; /* hmax scratch */
} Coder;

/* ------------------------------------------------------------------------------ the maths */

/* up[v] from its children and its leaf (kernels._node_update): same operations, same order. */
INLINE void node_update_m(const Coder *s, const int16_t *x, double *up, int32_t v, double *b,
                                 const Py_ssize_t m)
{
    const Py_ssize_t k = s->k;
    for (Py_ssize_t i = 0; i < m; i++) b[i] = 1.0;
    for (int32_t ci = s->cptr[v]; ci < s->cptr[v + 1]; ci++) {
        const double *uc = up + (Py_ssize_t)s->cidx[ci] * s->vs * m;
        mul_into(b, uc, m);
    }
    const int xv = x[(Py_ssize_t)v * s->vs];
    if (xv >= 0) {
        const double *lf = s->leaf + (Py_ssize_t)v * m * k + xv;
        for (Py_ssize_t i = 0; i < m; i++) b[i] *= lf[i * k];
    }
    double tot = 0.0;
    for (Py_ssize_t i = 0; i < m; i++) tot += b[i];
    for (Py_ssize_t i = 0; i < m; i++) b[i] /= tot;
    /* up[v, i] = sum_j trans[v, i, j] * b[j], summed over j in order for each i; transT holds
     * trans[v] transposed so that the i lanes are contiguous */
    vecmat(b, s->transT + (Py_ssize_t)v * m * m, m, up + (Py_ssize_t)v * s->vs * m);
}

/* The common state count gets its own copy with the loop bounds known to the compiler. */
HOT static void node_update(const Coder *s, const int16_t *x, double *up, int32_t v, double *b)
{
    if (s->m == 16)
        node_update_m(s, x, up, v, b, 16);
    else
        node_update_m(s, x, up, v, b, s->m);
}

static void refresh(const Coder *s, Py_ssize_t p, int32_t v, double *b);

/* Make up[v] current: refresh its dirty descendants first, children before parents. Most
 * messages asked for are clean, so the test is inlined and only a dirty one costs a call. */
INLINE void ensure_clean(const Coder *s, Py_ssize_t p, int32_t v, double *b)
{
    if (s->dirty[p * s->ps + (Py_ssize_t)v * s->vs]) refresh(s, p, v, b);
}

static void refresh(const Coder *s, Py_ssize_t p, int32_t v, double *b)
{
    for (int32_t ci = s->cptr[v]; ci < s->cptr[v + 1]; ci++) ensure_clean(s, p, s->cidx[ci], b);
    node_update(s, s->x + p * s->ps, s->up + p * s->ps * s->m, v, b);
    s->dirty[p * s->ps + (Py_ssize_t)v * s->vs] = 0;
}

/* One level of the outside pass (kernels._conditional): out(c) from out(a), a = parent(c). */
INLINE void outside_level_m(const Coder *s, Py_ssize_t p, int32_t a, int32_t c, const double *oa,
                                   double *oc, double *w, const Py_ssize_t m)
{
    const Py_ssize_t k = s->k;
    const int16_t *x = s->x + p * s->ps;
    const double *up = s->up + p * s->ps * m;
    for (Py_ssize_t i = 0; i < m; i++) w[i] = oa[i];
    const int xa = x[(Py_ssize_t)a * s->vs];
    if (xa >= 0) {
        const double *lf = s->leaf + (Py_ssize_t)a * m * k + xa;
        for (Py_ssize_t i = 0; i < m; i++) w[i] *= lf[i * k];
    }
    for (int32_t si = s->cptr[a]; si < s->cptr[a + 1]; si++) {
        const int32_t sib = s->cidx[si];
        if (sib != c) {
            ensure_clean(s, p, sib, w + m);
            const double *us = up + (Py_ssize_t)sib * s->vs * m;
            mul_into(w, us, m);
        }
    }
    double tot = 0.0;
    for (Py_ssize_t i = 0; i < m; i++) tot += w[i];
    for (Py_ssize_t i = 0; i < m; i++) w[i] /= tot;
    vecmat(w, s->trans + (Py_ssize_t)c * m * m, m, oc);
}

HOT static void outside_level(const Coder *s, Py_ssize_t p, int32_t a, int32_t c, const double *oa, double *oc,
                              double *w)
{
    if (s->m == 16)
        outside_level_m(s, p, a, c, oa, oc, w, 16);
    else
        outside_level_m(s, p, a, c, oa, oc, w, s->m);
}

/* The table of pixel t (entropy.tables.pmf_to_freqs_row applied to the leaf mixture
 * pmf[c] = sum_k w[k] leaf[t, k, c], summed over k in order for each c), written as doubles
 * (exact: integers below 2^25). Each block of 16 values of c stays in registers while the k
 * terms are added; the running sums over c (pmf_to_freqs_row's ``total`` and ``cum``: the same
 * partial sums in the same order) are taken as each block is done. Returns 0 when the pmf is not
 * a distribution (negative, NaN, infinite, all zero). */
INLINE int leaf_freqs_m(const double *w, const double *lt, const Py_ssize_t m, Py_ssize_t k, int precision,
                               double *cum, double *out)
{
    double run = 0.0;
    int bad = 0;
    Py_ssize_t c0 = 0;
#ifdef PC_VEC
    /* lanes stay all-ones while every pmf value is >= 0 and finite (NaN fails >= 0): the check of
     * the scalar loop below, four values per comparison, off the running sum's critical path */
    const v4d zero = {0.0, 0.0, 0.0, 0.0}, inf = {INFINITY, INFINITY, INFINITY, INFINITY};
    v4l fine = {-1, -1, -1, -1};
    for (; c0 + 16 <= k; c0 += 16) {
        v4d a0 = {0.0, 0.0, 0.0, 0.0}, a1 = a0, a2 = a0, a3 = a0;
        for (Py_ssize_t i = 0; i < m; i++) {
            const v4d wi = {w[i], w[i], w[i], w[i]};
            const v4d *r = (const v4d *)(lt + i * k + c0);
            a0 += wi * r[0];
            a1 += wi * r[1];
            a2 += wi * r[2];
            a3 += wi * r[3];
        }
        v4d *o = (v4d *)(cum + c0);
        o[0] = a0, o[1] = a1, o[2] = a2, o[3] = a3;
        fine &= (a0 >= zero) & (a0 != inf) & (a1 >= zero) & (a1 != inf);
        fine &= (a2 >= zero) & (a2 != inf) & (a3 >= zero) & (a3 != inf);
        for (int c = 0; c < 16; c++) {
            run += cum[c0 + c];
            cum[c0 + c] = run;
        }
    }
    bad = !(fine[0] & fine[1] & fine[2] & fine[3]);
#endif
    for (; c0 < k; c0++) {
        double p = 0.0;
        for (Py_ssize_t i = 0; i < m; i++) p += w[i] * lt[i * k + c0];
        bad |= !(p >= 0.0) | (p == INFINITY);
        run += p;
        cum[c0] = run;
    }
    const double total = run;
    if (bad || !(total > 0.0) || total == INFINITY) return 0;
    const double full = (double)((int64_t)1 << precision);
    const double budget = full - (double)k;
    /* C(v) = floor(F(v) * budget) + v + 1 for v < k - 1, C(k - 1) = 2^precision; out = diff(C).
     * cum <= total, so every C is an integer below 2^precision + k: exact in a double. */
    Py_ssize_t v = 0;
#ifdef PC_VEC
    /* the scalar loop four lanes at a time: the same IEEE division, product and truncation
     * (cvttpd2dq truncates like the int32_t cast), so the same integers */
    const v4d tot4 = {total, total, total, total}, bud4 = {budget, budget, budget, budget};
    const v4d four = {4.0, 4.0, 4.0, 4.0};
    v4d next = {1.0, 2.0, 3.0, 4.0};
    for (; v + 4 <= k - 1; v += 4) {
        v4d *c4 = (v4d *)(cum + v);
        const v4i fl = __builtin_convertvector(*c4 / tot4 * bud4, v4i);
        *c4 = __builtin_convertvector(fl, v4d) + next;
        next += four;
    }
#endif
    for (; v < k - 1; v++) {
        /* floor by truncation: the value lies in [0, budget], so this is exact */
        cum[v] = (double)(int32_t)(cum[v] / total * budget) + (double)(v + 1);
    }
    cum[k - 1] = full;
    out[0] = cum[0];
    for (v = 1; v < k; v++) out[v] = cum[v] - cum[v - 1];
    return 1;
}

HOT static int leaf_freqs(const double *w, const double *lt, Py_ssize_t m, Py_ssize_t k, int precision, double *cum,
                          double *out)
{
    return m == 16 ? leaf_freqs_m(w, lt, 16, k, precision, cum, out) : leaf_freqs_m(w, lt, m, k, precision, cum, out);
}

/* Table of pixel t for patch p into ``row`` (k doubles); 0 when the pmf is not a distribution. */
static int conditional(Coder *s, Py_ssize_t p, int32_t t, double *row)
{
    const Py_ssize_t m = s->m;
    double *w = s->work, *pmf = s->work + 2 * m;
    int32_t *nodes = s->nodes;
    const int32_t dt = s->depth[t];
    int32_t v = t;
    for (int32_t l = dt; l >= 0; l--) {
        nodes[l] = v;
        v = s->parent[v];
    }
    double *oc = s->outc + p * s->hmax * m;
    int32_t *pc = s->pathc + p * s->hmax;
    int32_t l0 = 0;
    const int32_t val = s->valid[p];
    while (l0 < val && l0 <= dt && pc[l0] == nodes[l0]) l0++;
    if (l0 == 0) {
        memcpy(oc, s->prior, (size_t)m * sizeof(double));
        pc[0] = nodes[0];
        l0 = 1;
    }
    for (int32_t l = l0; l <= dt; l++) {
        outside_level(s, p, nodes[l - 1], nodes[l], oc + (Py_ssize_t)(l - 1) * m, oc + (Py_ssize_t)l * m, w);
        pc[l] = nodes[l];
    }
    s->valid[p] = dt + 1;
    /* inside product of t's children (t itself is unobserved) */
    const double *ot = oc + (Py_ssize_t)dt * m;
    for (Py_ssize_t i = 0; i < m; i++) w[i] = ot[i];
    const double *up = s->up + p * s->ps * m;
    for (int32_t si = s->cptr[t]; si < s->cptr[t + 1]; si++) {
        const int32_t c = s->cidx[si];
        ensure_clean(s, p, c, w + m);
        const double *uc = up + (Py_ssize_t)c * s->vs * m;
        mul_into(w, uc, m);
    }
    return leaf_freqs(w, s->leaf + (Py_ssize_t)t * m * s->k, m, s->k, s->precision, pmf, row);
}

/* Ask for the memory conditional(s, q, t) will touch: patch q's messages on and beside the path
 * t -> root. The tables loop walks patches at one position, each patch's state lying far from the
 * last one's, so without this every read of it waits for memory. Changes no result. */
static void prefetch_patch(const Coder *s, Py_ssize_t q, int32_t t)
{
#if defined(__GNUC__)
    const Py_ssize_t m = s->m;
    const double *up = s->up + q * s->ps * m;
    const double *oc = s->outc + q * s->hmax * m;
    const uint8_t *dirty = s->dirty + q * s->ps;
    for (int32_t v = t; v >= 0; v = s->parent[v]) {
        for (int32_t ci = s->cptr[v]; ci < s->cptr[v + 1]; ci++) {
            const double *row = up + (Py_ssize_t)s->cidx[ci] * s->vs * m;
            for (Py_ssize_t i = 0; i < m; i += 8) __builtin_prefetch(row + i, 0, 3);
            __builtin_prefetch(dirty + (Py_ssize_t)s->cidx[ci] * s->vs, 0, 3);
        }
        const double *lv = oc + (Py_ssize_t)s->depth[v] * m;
        for (Py_ssize_t i = 0; i < m; i += 8) __builtin_prefetch(lv + i, 1, 3);
        __builtin_prefetch(s->x + q * s->ps + (Py_ssize_t)v * s->vs, 0, 3);
    }
#else
    (void)s, (void)q, (void)t;
#endif
}

/* x_t = sym for patch p: mark t -> root dirty, cut the cached outside path at LCA(t, path end). */
static void observe(Coder *s, Py_ssize_t p, int32_t t, int sym)
{
    s->x[p * s->ps + (Py_ssize_t)t * s->vs] = (int16_t)sym;
    uint8_t *dirty = s->dirty + p * s->ps;
    for (int32_t v = t; v >= 0 && !dirty[(Py_ssize_t)v * s->vs]; v = s->parent[v]) dirty[(Py_ssize_t)v * s->vs] = 1;
    const int32_t val = s->valid[p];
    if (val > 0) {
        const int32_t *pc = s->pathc + p * s->hmax;
        int32_t u = t;
        while (s->depth[u] > val - 1) u = s->parent[u];
        while (pc[s->depth[u]] != u) u = s->parent[u];
        s->valid[p] = s->depth[u] + 1;
    }
}

/* ------------------------------------------------------------------------------ the type */

/* a buffer's struct type letter, without the byte-order prefix ("B" when it states none) */
static char format_code(const Py_buffer *view)
{
    const char *f = view->format ? view->format : "B";
    return (*f == '<' || *f == '=' || *f == '@') ? f[1] : f[0];
}

static int take(Coder *s, PyObject *obj, Py_ssize_t itemsize, char kind, Py_ssize_t count, const char *what,
                const void **ptr)
{
    Py_buffer *view = &s->bufs[s->nbufs];
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    s->nbufs++;
    const char f = format_code(view);
    const int is_float = (f == 'd' || f == 'f');
    if (view->itemsize != itemsize || (kind == 'f') != is_float || view->len != count * itemsize) {
        PyErr_Format(PyExc_ValueError, "pc native: %s has the wrong type or size", what);
        return -1;
    }
    *ptr = view->buf;
    return 0;
}

static void Coder_dealloc(Coder *s)
{
    for (int i = 0; i < s->nbufs; i++) PyBuffer_Release(&s->bufs[i]);
    free(s->x);
    free(s->up);
    free(s->dirty);
    free(s->outc);
    free(s->pathc);
    free(s->valid);
    free(s->work);
    free(s->nodes);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static int Coder_init(Coder *s, PyObject *args, PyObject *kw)
{
    static char *names[] = {"prior", "trans", "trans_t", "leaf", "parent", "child_ptr", "child_idx", "depth", "post",
                            "n", "precision", "node_major", NULL};
    PyObject *o[9];
    Py_ssize_t n;
    int precision, node_major = 0;
    if (s->nbufs) {
        PyErr_SetString(PyExc_RuntimeError, "pc native: a Coder is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOOni|p", names, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                                     &o[7], &o[8], &n, &precision, &node_major))
        return -1;
    Py_buffer probe;
    if (PyObject_GetBuffer(o[0], &probe, PyBUF_ND) < 0) return -1;
    const Py_ssize_t m = probe.ndim == 1 ? probe.shape[0] : 0;
    PyBuffer_Release(&probe);
    if (PyObject_GetBuffer(o[4], &probe, PyBUF_ND) < 0) return -1;
    const Py_ssize_t d = probe.ndim == 1 ? probe.shape[0] : 0;
    PyBuffer_Release(&probe);
    if (PyObject_GetBuffer(o[3], &probe, PyBUF_ND) < 0) return -1;
    const Py_ssize_t k = probe.ndim == 3 ? probe.shape[2] : 0;
    PyBuffer_Release(&probe);
    if (m < 1 || d < 1 || k < 2 || n < 1 || precision < 1 || precision > 30 || ((int64_t)1 << precision) < 2 * k) {
        PyErr_SetString(PyExc_ValueError, "pc native: bad circuit shapes, batch size or precision");
        return -1;
    }
    s->n = n, s->d = d, s->m = m, s->k = k, s->precision = precision;
    /* patch-major suits a loop over the pixels of one patch (the encoder), node-major one over
     * the patches at one pixel (the decoder): the same node of neighbouring patches is adjacent */
    s->ps = node_major ? 1 : d;
    s->vs = node_major ? n : 1;
    if (take(s, o[0], 8, 'f', m, "prior", (const void **)&s->prior) ||
        take(s, o[1], 8, 'f', d * m * m, "trans", (const void **)&s->trans) ||
        take(s, o[2], 8, 'f', d * m * m, "trans_t", (const void **)&s->transT) ||
        take(s, o[3], 8, 'f', d * m * k, "leaf", (const void **)&s->leaf) ||
        take(s, o[4], 4, 'i', d, "parent", (const void **)&s->parent) ||
        take(s, o[5], 4, 'i', d + 1, "child_ptr", (const void **)&s->cptr) ||
        take(s, o[6], 4, 'i', d - 1, "child_idx", (const void **)&s->cidx) ||
        take(s, o[7], 4, 'i', d, "depth", (const void **)&s->depth) ||
        take(s, o[8], 4, 'i', d, "post", (const void **)&s->post))
        return -1;
    Py_ssize_t hmax = 0;
    for (Py_ssize_t v = 0; v < d; v++) {
        const int32_t pv = s->parent[v], dv = s->depth[v];
        if (pv < -1 || pv >= d || dv < 0 || dv >= d || (pv < 0) != (dv == 0) || (pv >= 0 && s->depth[pv] != dv - 1)) {
            PyErr_SetString(PyExc_ValueError, "pc native: inconsistent tree arrays");
            return -1;
        }
        if (dv + 1 > hmax) hmax = dv + 1;
    }
    s->hmax = hmax;
    s->x = malloc((size_t)(n * d) * sizeof(int16_t));
    s->up = malloc((size_t)(n * d * m) * sizeof(double));
    s->dirty = calloc((size_t)(n * d), 1);
    s->outc = malloc((size_t)(n * hmax * m) * sizeof(double));
    s->pathc = malloc((size_t)(n * hmax) * sizeof(int32_t));
    s->valid = calloc((size_t)n, sizeof(int32_t));
    s->work = malloc((size_t)(2 * m + k) * sizeof(double));
    s->nodes = malloc((size_t)hmax * sizeof(int32_t));
    if (!s->x || !s->up || !s->dirty || !s->outc || !s->pathc || !s->valid || !s->work || !s->nodes) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n * d; i++) s->x[i] = -1;
    /* upward messages with nothing observed (kernels.init_state), copied to every patch */
    for (Py_ssize_t q = 0; q < d; q++) node_update(s, s->x, s->up, s->post[q], s->work);
    for (Py_ssize_t v = 0; v < d; v++)
        for (Py_ssize_t p = 1; p < n; p++)
            memcpy(s->up + (p * s->ps + v * s->vs) * m, s->up + v * s->vs * m, (size_t)m * sizeof(double));
    return 0;
}

static int arg_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize, char kind, Py_ssize_t count,
                      const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char f = format_code(view);
    const int is_float = (f == 'd' || f == 'f');
    if (view->itemsize != itemsize || (kind == 'f') != is_float || view->len < count * itemsize) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "pc native: %s has the wrong type or size", what);
        return -1;
    }
    return 0;
}

static int check_pos(const Coder *s, Py_ssize_t pos)
{
    if (pos < 0 || pos >= s->d) {
        PyErr_SetString(PyExc_IndexError, "pc native: pixel position out of range");
        return -1;
    }
    return 0;
}

/* The tables of pixel pos for the patches lo..hi-1 flagged in a (n bytes), in patch order, into
 * out; returns the number of rows, or -1 when a pmf was not a distribution. */
static Py_ssize_t tables_at(Coder *s, Py_ssize_t pos, const uint8_t *a, Py_ssize_t lo, Py_ssize_t hi, double *out)
{
    Py_ssize_t rows = 0, next = lo;
    while (next < hi && !a[next]) next++;
    while (next < hi) {
        const Py_ssize_t p = next;
        for (next = p + 1; next < hi && !a[next]; next++) {}
        if (next < hi) prefetch_patch(s, next, (int32_t)pos);
        if (!conditional(s, p, (int32_t)pos, out + (rows++) * s->k)) return -1;
    }
    return rows;
}

/* Record v[0..rows) as pixel pos of the flagged patches among lo..hi-1; -1 (nothing recorded)
 * when one is outside 0..k-1. */
/* symbol i of a pulled array: int64 (SequentialDecoder.pull, Coder.observe) or int32 (bare_pull) */
INLINE int64_t symbol_at(const void *v, Py_ssize_t itemsize, Py_ssize_t i)
{
    return itemsize == 8 ? ((const int64_t *)v)[i] : ((const int32_t *)v)[i];
}

static int observe_at(Coder *s, Py_ssize_t pos, const uint8_t *a, Py_ssize_t lo, Py_ssize_t hi, const void *v,
                      Py_ssize_t itemsize, Py_ssize_t rows)
{
    for (Py_ssize_t i = 0; i < rows; i++) {
        const int64_t x = symbol_at(v, itemsize, i);
        if (x < 0 || x >= s->k) return -1;
    }
    Py_ssize_t j = 0;
    for (Py_ssize_t p = lo; p < hi; p++)
        if (a[p]) observe(s, p, (int32_t)pos, (int)symbol_at(v, itemsize, j++));
    return 0;
}

/* tables(pos, active, out) -> rows: the tables of pixel pos for every active patch, in patch
 * order, into out (rows x k doubles); -1 when a pmf was not a distribution (damaged model). */
static PyObject *Coder_tables(Coder *s, PyObject *args)
{
    Py_ssize_t pos;
    PyObject *ao, *oo;
    Py_buffer act, out;
    if (!PyArg_ParseTuple(args, "nOO", &pos, &ao, &oo) || check_pos(s, pos)) return NULL;
    if (arg_buffer(ao, &act, 0, 1, 'i', s->n, "active")) return NULL;
    if (act.len != s->n) {
        PyBuffer_Release(&act);
        PyErr_SetString(PyExc_ValueError, "pc native: active must hold one flag per patch");
        return NULL;
    }
    if (arg_buffer(oo, &out, 1, 8, 'f', 0, "out")) {
        PyBuffer_Release(&act);
        return NULL;
    }
    const uint8_t *a = act.buf;
    Py_ssize_t rows, need = 0;
    for (Py_ssize_t p = 0; p < s->n; p++) need += a[p] != 0;
    if (out.len < need * s->k * 8) {
        PyBuffer_Release(&act);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "pc native: out is too small");
        return NULL;
    }
    rows = tables_at(s, pos, a, 0, s->n, out.buf);
    PyBuffer_Release(&act);
    PyBuffer_Release(&out);
    return PyLong_FromSsize_t(rows);
}

/* observe(pos, symbols, active) -> 0, or -1 when a symbol is outside 0..k-1: records the symbols
 * (int64, one per active patch, in patch order) as pixel pos of the active patches. */
static PyObject *Coder_observe(Coder *s, PyObject *args)
{
    Py_ssize_t pos;
    PyObject *so, *ao;
    Py_buffer sym, act;
    if (!PyArg_ParseTuple(args, "nOO", &pos, &so, &ao) || check_pos(s, pos)) return NULL;
    if (arg_buffer(ao, &act, 0, 1, 'i', s->n, "active")) return NULL;
    if (act.len != s->n) {
        PyBuffer_Release(&act);
        PyErr_SetString(PyExc_ValueError, "pc native: active must hold one flag per patch");
        return NULL;
    }
    const uint8_t *a = act.buf;
    Py_ssize_t need = 0;
    for (Py_ssize_t p = 0; p < s->n; p++) need += a[p] != 0;
    if (arg_buffer(so, &sym, 0, 8, 'i', need, "symbols")) {
        PyBuffer_Release(&act);
        return NULL;
    }
    const int ret = observe_at(s, pos, a, 0, s->n, sym.buf, 8, need);
    PyBuffer_Release(&act);
    PyBuffer_Release(&sym);
    return PyLong_FromLong(ret);
}

/* encode(pos0, pos1, symbols_t, mask_t, col0, out_tables, out_symbols) -> rows: the encoder's
 * whole job for pixels pos0..pos1-1 in stream order (pixel, then patch): symbols_t (d, cols) int16
 * and mask_t (d, cols) bool hold every patch of the input, this coder's patches being the columns
 * col0..col0+n-1. Writes each active (pixel, patch)'s table and symbol (int32) and observes it;
 * -1 when a pmf was not a distribution, -2 when a symbol is outside its table. */
static PyObject *Coder_encode(Coder *s, PyObject *args)
{
    Py_ssize_t pos0, pos1, col0;
    PyObject *so, *mo, *to, *yo;
    Py_buffer sym, msk, tab, ys;
    if (!PyArg_ParseTuple(args, "nnOOnOO", &pos0, &pos1, &so, &mo, &col0, &to, &yo)) return NULL;
    if (pos0 < 0 || pos1 > s->d || pos0 > pos1) {
        PyErr_SetString(PyExc_IndexError, "pc native: pixel range out of bounds");
        return NULL;
    }
    if (arg_buffer(so, &sym, 0, 2, 'i', 0, "symbols_t")) return NULL;
    if (arg_buffer(mo, &msk, 0, 1, 'i', sym.len / 2, "mask_t")) {
        PyBuffer_Release(&sym);
        return NULL;
    }
    const Py_ssize_t cols = sym.len / 2 / s->d;
    if (cols * s->d * 2 != sym.len || msk.len != cols * s->d || col0 < 0 || col0 + s->n > cols) {
        PyBuffer_Release(&sym);
        PyBuffer_Release(&msk);
        PyErr_SetString(PyExc_ValueError, "pc native: symbols_t / mask_t do not match the coder");
        return NULL;
    }
    const int16_t *sv = sym.buf;
    const uint8_t *mv = msk.buf;
    Py_ssize_t need = 0;
    for (Py_ssize_t t = pos0; t < pos1; t++)
        for (Py_ssize_t p = 0; p < s->n; p++) need += mv[t * cols + col0 + p] != 0;
    if (arg_buffer(to, &tab, 1, 8, 'f', need * s->k, "out_tables")) {
        PyBuffer_Release(&sym);
        PyBuffer_Release(&msk);
        return NULL;
    }
    if (arg_buffer(yo, &ys, 1, 4, 'i', need, "out_symbols")) {
        PyBuffer_Release(&sym);
        PyBuffer_Release(&msk);
        PyBuffer_Release(&tab);
        return NULL;
    }
    double *tv = tab.buf;
    int32_t *yv = ys.buf;
    /* patch by patch (its state stays in cache over the block's positions), each row written
     * where the stream order (position, then patch) puts it: row of (t, p) = rows of the earlier
     * positions + active patches before p at t */
    Py_ssize_t *next_row = malloc((size_t)(pos1 - pos0 + 1) * sizeof(Py_ssize_t));
    if (!next_row) {
        PyBuffer_Release(&sym);
        PyBuffer_Release(&msk);
        PyBuffer_Release(&tab);
        PyBuffer_Release(&ys);
        return PyErr_NoMemory();
    }
    Py_ssize_t rows = 0, status = 0;
    for (Py_ssize_t t = pos0; t < pos1; t++) {
        next_row[t - pos0] = rows;
        for (Py_ssize_t p = 0; p < s->n; p++) rows += mv[t * cols + col0 + p] != 0;
    }
    for (Py_ssize_t p = 0; p < s->n && !status; p++) {
        for (Py_ssize_t t = pos0; t < pos1; t++) {
            if (!mv[t * cols + col0 + p]) continue;
            const int v = sv[t * cols + col0 + p];
            const Py_ssize_t row = next_row[t - pos0]++;
            if (v < 0 || v >= s->k) {
                status = -2;
                break;
            }
            if (!conditional(s, p, (int32_t)t, tv + row * s->k)) {
                status = -1;
                break;
            }
            yv[row] = v;
            observe(s, p, (int32_t)t, v);
        }
    }
    free(next_row);
    PyBuffer_Release(&sym);
    PyBuffer_Release(&msk);
    PyBuffer_Release(&tab);
    PyBuffer_Release(&ys);
    return PyLong_FromSsize_t(status ? status : rows);
}

#define DECODE_GROUP 512 /* patches per decoder call: 1 MiB of tables */

/* decode(positions, mask_t, col0, pull, tables) -> 0, -1 (a pmf was not a distribution) or -2
 * (a decoded symbol outside its table): the decoder's loop over the given pixel positions
 * (int64), in order. mask_t (d, cols) bool as for encode; for each position the tables of its
 * active patches go into tables (n x k float64, a numpy array) and pull(tables[:rows]) must
 * return their symbols (int64), which are recorded before the next position. Exceptions from
 * pull propagate. */
static PyObject *Coder_decode(Coder *s, PyObject *args)
{
    PyObject *po, *mo, *pull, *to;
    Py_ssize_t col0;
    Py_buffer pos, msk, tab;
    if (!PyArg_ParseTuple(args, "OOnOO", &po, &mo, &col0, &pull, &to)) return NULL;
    if (arg_buffer(po, &pos, 0, 8, 'i', 0, "positions")) return NULL;
    if (arg_buffer(mo, &msk, 0, 1, 'i', 0, "mask_t")) {
        PyBuffer_Release(&pos);
        return NULL;
    }
    if (arg_buffer(to, &tab, 1, 8, 'f', s->n * s->k, "tables")) {
        PyBuffer_Release(&pos);
        PyBuffer_Release(&msk);
        return NULL;
    }
    const Py_ssize_t cols = msk.len / s->d;
    const Py_ssize_t tab_rows = tab.len / (8 * s->k);
    long status = 0;
    if (cols * s->d != msk.len || col0 < 0 || col0 + s->n > cols) {
        PyErr_SetString(PyExc_ValueError, "pc native: mask_t does not match the coder");
        status = -9;
    }
    const int64_t *pv = pos.buf;
    for (Py_ssize_t i = 0; i < pos.len / 8 && !status; i++) {
        const int64_t t = pv[i];
        if (t < 0 || t >= s->d) {
            PyErr_SetString(PyExc_IndexError, "pc native: pixel position out of range");
            status = -9;
            break;
        }
        const uint8_t *a = (const uint8_t *)msk.buf + t * cols + col0;
        /* a position's patches in groups, so that the tables are still in cache when the
         * decoder reads them (pulling a position's symbols in several calls decodes the same) */
        for (Py_ssize_t lo = 0; lo < s->n && !status; lo += DECODE_GROUP) {
            const Py_ssize_t hi = lo + DECODE_GROUP < s->n ? lo + DECODE_GROUP : s->n;
            const Py_ssize_t rows = tables_at(s, t, a, lo, hi, tab.buf);
            if (rows <= 0) {
                status = rows < 0 ? -1 : 0;
                continue;
            }
            /* the whole buffer needs no slice: one digit per call fills it at every pixel */
            PyObject *view = rows == tab_rows ? (Py_INCREF(to), to) : PySequence_GetSlice(to, 0, rows);
            PyObject *got = view ? PyObject_CallOneArg(pull, view) : NULL;
            Py_XDECREF(view);
            Py_buffer gv;
            if (!got || PyObject_GetBuffer(got, &gv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
                Py_XDECREF(got);
                status = -9;
                break;
            }
            /* int64 from SequentialDecoder.pull, int32 from its bare_pull */
            const char f = format_code(&gv);
            const int integer = f == 'i' || f == 'l' || f == 'q';
            if (!integer || (gv.itemsize != 8 && gv.itemsize != 4) || gv.len != rows * gv.itemsize)
                status = -2;
            else if (observe_at(s, t, a, lo, hi, gv.buf, gv.itemsize, rows))
                status = -2;
            PyBuffer_Release(&gv);
            Py_DECREF(got);
        }
    }
    PyBuffer_Release(&pos);
    PyBuffer_Release(&msk);
    PyBuffer_Release(&tab);
    if (status == -9) return NULL;
    return PyLong_FromLong(status);
}

/* pixels(out): every patch's pixels (n, d) as uint8 (unobserved ones as 0). */
static PyObject *Coder_pixels(Coder *s, PyObject *arg)
{
    Py_buffer out;
    if (arg_buffer(arg, &out, 1, 1, 'i', s->n * s->d, "out")) return NULL;
    uint8_t *o = out.buf;
    for (Py_ssize_t p = 0; p < s->n; p++)
        for (Py_ssize_t v = 0; v < s->d; v++) {
            const int16_t xv = s->x[p * s->ps + v * s->vs];
            o[p * s->d + v] = xv < 0 ? 0 : (uint8_t)xv;
        }
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyMethodDef Coder_methods[] = {
    {"tables", (PyCFunction)Coder_tables, METH_VARARGS, "tables(pos, active, out) -> rows (-1: invalid pmf)"},
    {"observe", (PyCFunction)Coder_observe, METH_VARARGS, "observe(pos, symbols, active) -> 0 (-1: bad symbol)"},
    {"encode", (PyCFunction)Coder_encode, METH_VARARGS,
     "encode(pos0, pos1, symbols_t, mask_t, col0, out_tables, out_symbols) -> rows (-1: invalid pmf, -2: bad symbol)"},
    {"decode", (PyCFunction)Coder_decode, METH_VARARGS,
     "decode(positions, mask_t, col0, pull, tables) -> 0 (-1: invalid pmf, -2: bad symbol)"},
    {"pixels", (PyCFunction)Coder_pixels, METH_O, "pixels(out): the (n, d) pixels as uint8"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "neurocodec.codecs.pc._native.Coder",
    .tp_basicsize = sizeof(Coder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Cached messages of n patches of one circuit, all pixels unknown at first.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Coder_init,
    .tp_dealloc = (destructor)Coder_dealloc,
    .tp_methods = Coder_methods,
};

/* ------------------------------------------------------------------ model building (model.py) */

/* dequantize_rows(q, out): kernels.dequantize_rows, p = 2^(-q/8) with each row renormalised, for q
 * (rows, k) uint8 into out (rows, k) float64. pow is the C library's, as in the Numba kernel. */
static PyObject *dequantize_rows(PyObject *self, PyObject *args)
{
    PyObject *qo, *oo;
    Py_ssize_t k;
    Py_buffer q, out;
    if (!PyArg_ParseTuple(args, "OOn", &qo, &oo, &k)) return NULL;
    if (k < 1) {
        PyErr_SetString(PyExc_ValueError, "pc native: rows must be non-empty");
        return NULL;
    }
    if (arg_buffer(qo, &q, 0, 1, 'i', 0, "q")) return NULL;
    if (q.len % k || arg_buffer(oo, &out, 1, 8, 'f', q.len, "out")) {
        if (q.len % k) PyErr_SetString(PyExc_ValueError, "pc native: q is not whole rows");
        PyBuffer_Release(&q);
        return NULL;
    }
    const uint8_t *qv = q.buf;
    double *o = out.buf;
    for (Py_ssize_t r = 0; r < q.len / k; r++) {
        double sum = 0.0;
        for (Py_ssize_t c = 0; c < k; c++) {
            const double val = pow(2.0, -(double)qv[r * k + c] / 8.0);
            o[r * k + c] = val;
            sum += val;
        }
        for (Py_ssize_t c = 0; c < k; c++) o[r * k + c] /= sum;
    }
    PyBuffer_Release(&q);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

/* out[c] = sum_l w[l] basis[l, c], summed over l in order for each c (blocks of 16 c in registers). */
HOT static void mix_row(const double *w, const double *basis, Py_ssize_t nb, Py_ssize_t kk, double *out)
{
    Py_ssize_t c0 = 0;
#ifdef PC_VEC
    for (; c0 + 16 <= kk; c0 += 16) {
        v4d a0 = {0.0, 0.0, 0.0, 0.0}, a1 = a0, a2 = a0, a3 = a0;
        for (Py_ssize_t l = 0; l < nb; l++) {
            const v4d wl = {w[l], w[l], w[l], w[l]};
            const v4d *r = (const v4d *)(basis + l * kk + c0);
            a0 += wl * r[0];
            a1 += wl * r[1];
            a2 += wl * r[2];
            a3 += wl * r[3];
        }
        v4d *o = (v4d *)(out + c0);
        o[0] = a0, o[1] = a1, o[2] = a2, o[3] = a3;
    }
#endif
    for (; c0 < kk; c0++) {
        double acc = 0.0;
        for (Py_ssize_t l = 0; l < nb; l++) acc += w[l] * basis[l * kk + c0];
        out[c0] = acc;
    }
}

/* mix_leaves(w, basis, out, d, m, nb): kernels.mix_leaves, out[v, k, c] = sum_l w[v, k, l] basis[l, c]
 * summed over l in order, for w (d, m, nb), basis (nb, kk), out (d, m, kk), all float64. */
static PyObject *mix_leaves(PyObject *self, PyObject *args)
{
    PyObject *wo, *bo, *oo;
    Py_ssize_t rows, nb;
    Py_buffer w, b, out;
    if (!PyArg_ParseTuple(args, "OOOnn", &wo, &bo, &oo, &rows, &nb)) return NULL;
    if (rows < 1 || nb < 1) {
        PyErr_SetString(PyExc_ValueError, "pc native: empty leaf mixture");
        return NULL;
    }
    if (arg_buffer(wo, &w, 0, 8, 'f', rows * nb, "w")) return NULL;
    if (arg_buffer(bo, &b, 0, 8, 'f', nb, "basis")) {
        PyBuffer_Release(&w);
        return NULL;
    }
    const Py_ssize_t kk = b.len / 8 / nb;
    if (kk * nb * 8 != b.len || w.len != rows * nb * 8 || arg_buffer(oo, &out, 1, 8, 'f', rows * kk, "out")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "pc native: leaf mixture shapes do not match");
        PyBuffer_Release(&w);
        PyBuffer_Release(&b);
        return NULL;
    }
    const double *wv = w.buf, *bv = b.buf;
    double *o = out.buf;
    for (Py_ssize_t r = 0; r < rows; r++) mix_row(wv + r * nb, bv, nb, kk, o + r * kk);
    PyBuffer_Release(&w);
    PyBuffer_Release(&b);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"dequantize_rows", dequantize_rows, METH_VARARGS, "dequantize_rows(q, out, k): p = 2^(-q/8), rows renormalised"},
    {"mix_leaves", mix_leaves, METH_VARARGS, "mix_leaves(w, basis, out, rows, nb): out = w @ basis, l in order"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "_native", "Compiled HCLT coding kernels (see native/pc_kernels.c).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    if (PyType_Ready(&CoderType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&native_module);
    if (!mod) return NULL;
    Py_INCREF(&CoderType);
    if (PyModule_AddObject(mod, "Coder", (PyObject *)&CoderType) < 0) {
        Py_DECREF(&CoderType);
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
