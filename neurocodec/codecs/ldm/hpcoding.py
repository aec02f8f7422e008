"""Entropy coding of the hyperprior latent (:mod:`.hyperprior`) with tables that never depend on float
rounding: an integer hyper-synthesis and fixed integer tables, all stored in the model file.

Why: a hyperprior codec picks each symbol's coding table from the hyper-decoder's output. If that
output is a float computed by a network, two machines (CPU vs CUDA, 1 vs 2 threads, another BLAS)
can round it differently, pick another table for one symbol and decode garbage from there on
(CompressAI issues #279, #309). The remedy (Balle et al., ICLR 2019, "Integer networks for data
compression") is to compute whatever selects a table in integer arithmetic. Here:

* ``h_s`` is evaluated as an **integer network**: weights rounded to ``weight_bits``-bit integers
  with a power-of-two scale per output channel, biases to the accumulator's scale, activations as
  integers with ``act_bits`` fractional bits (ReLU, rounding right shifts, clipped to
  ``2**ACT_MAX_BITS``). The products and sums are exact integers below ``2**53``, so the matrix
  products run as float64 BLAS (an exact integer sum has no rounding, in any order, with or without
  FMA, on any number of threads) and everything after is int64 numpy. The network outputs the
  mean with ``MEAN_BITS`` fractional bits and the scale with ``SCALE_BITS`` fractional bits.
* the **scale index** of each ``y`` element is the number of stored integer thresholds (geometric
  midpoints of a log-spaced table of 64 scales, 0.11..256, CompressAI's table) that its integer
  scale reaches: integer comparisons only. The **mean** is the integer output too, so the symbol
  ``round(y - mu)`` and the reconstruction ``symbol + mu`` use the same exact ``mu`` on both sides.
* ``y`` symbols are coded per scale index (all positions whose index is ``k``, in raster order,
  under the Gaussian table ``k``), ``z`` per channel under the learned factorized density's table;
  every table is a fixed integer frequency row (16-bit precision, from float64 once, at export) with
  an escape symbol for values outside its support (escaped values go to a separate section coded by
  :func:`neurocodec.entropy.encode_symbols`).

The tables and integer weights are computed from the *stored* (possibly float16) weights when the
model file is written (:func:`coding_arrays`), so encoder and decoder read the same integers.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...entropy import SequentialDecoder, SequentialEncoder, decode_symbols, encode_symbols, quantize_pmf
from ...errors import CorruptStreamError, InputError, UsageError
from .hyperprior import DECODE_KEEP, SCALE_BOUND, HyperpriorModel, decode_only_of

CODING_VERSION = 1
PRECISION = 16                 # bits of every frequency table
NUM_SCALES = 64                # log-spaced Gaussian scales SCALE_BOUND..SCALE_MAX
SCALE_MAX = 256.0
Y_TAIL_SIGMAS = 6.0            # y table support: +-ceil(6 sigma) + 1 (tail mass < 1e-9), then escape
Z_TAIL = 1e-7                  # z table support: where the learned cumulative leaves [Z_TAIL/2, 1 - Z_TAIL/2]
Z_MAX_RADIUS = 255
MEAN_BITS = 8                  # fractional bits of the integer mean
SCALE_BITS = 8                 # fractional bits of the integer scale
ACT_MAX_BITS = 22              # hidden activations are clipped to [0, 2**22 - 1]
Z_CLIP = 1 << 15               # h_s input is clipped to +-2**15 (a damaged stream cannot overflow)
WEIGHT_BITS = 16
ACT_BITS = 10
_EXACT = 1 << 53


# ---------------------------------------------------------------------------- integer arithmetic
def _rshift_round(a: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``round(a / 2**shift)`` (half up) per channel (``shift``: int64 per row of ``a``; may be <= 0)."""
    s = shift.reshape((-1,) + (1,) * (a.ndim - 1))
    pos = np.maximum(s, 0)
    half = np.where(pos > 0, np.left_shift(np.int64(1), np.maximum(pos - 1, 0)), 0)
    down = np.right_shift(a + half, pos)
    return np.left_shift(down, np.maximum(-s, 0))


def _exact_matmul(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``w @ x`` of int64 matrices whose every partial sum is below 2**53 in magnitude: computed by
    float64 BLAS, which is exact for such integers whatever the blocking or thread count."""
    return np.rint(w.astype(np.float64) @ x.astype(np.float64)).astype(np.int64)


def _deconv_s2(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer ``ConvTranspose2d(k, stride 2, padding k//2, output_padding 1)`` without bias:
    ``x`` (cin, H, W) int64, ``w`` (cin, cout, k, k) int64 -> (cout, 2H, 2W) int64 (col2im)."""
    cin, h, wd = x.shape
    _, cout, k, _ = w.shape
    cols = _exact_matmul(w.reshape(cin, cout * k * k).T, x.reshape(cin, h * wd)).reshape(cout, k, k, h, wd)
    full = np.zeros((cout, 2 * h + k, 2 * wd + k), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            full[:, ky:ky + 2 * h:2, kx:kx + 2 * wd:2] += cols[:, ky, kx]
    p = k // 2
    return full[:, p:p + 2 * h, p:p + 2 * wd]


def _conv_s1(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer ``Conv2d(k, stride 1, padding k//2)`` without bias: (cin, H, W) -> (cout, H, W) (im2col)."""
    cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    cols = np.stack([xp[:, ky:ky + h, kx:kx + wd] for ky in range(k) for kx in range(k)], axis=1)
    return _exact_matmul(w.reshape(cout, cin * k * k), cols.reshape(cin * k * k, h * wd)).reshape(cout, h, wd)


class IntegerHyperSynthesis:
    """``h_s`` in integer arithmetic, from the integer arrays of a model file (see the module doc).

    ``__call__(z)``: ``z`` (nz, h, w) integers -> (mean (m, 4h, 4w) int64 with ``MEAN_BITS``
    fractional bits, scale index (m, 4h, 4w) int64 in ``0..NUM_SCALES-1``)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], act_bits: int) -> None:
        self.w = [np.asarray(arrays[f"hs_int/w{i}"], dtype=np.int64) for i in range(3)]
        self.b = [np.asarray(arrays[f"hs_int/b{i}"], dtype=np.int64) for i in range(3)]
        self.shift = [np.asarray(arrays[f"hs_int/shift{i}"], dtype=np.int64) for i in range(3)]
        self.thresholds = np.asarray(arrays["y_thresholds"], dtype=np.int64)
        self.act_bits = int(act_bits)
        self.m = self.w[2].shape[0] // 2

    def outputs(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, scale): both int64 with MEAN_BITS / SCALE_BITS fractional bits."""
        a = np.clip(np.asarray(z, dtype=np.int64), -Z_CLIP, Z_CLIP)
        top = (1 << ACT_MAX_BITS) - 1
        for i, layer in enumerate((_deconv_s2, _deconv_s2)):
            acc = layer(a, self.w[i]) + self.b[i][:, None, None]
            a = np.clip(_rshift_round(acc, self.shift[i]), 0, top)  # ReLU + clip
        acc = _conv_s1(a, self.w[2]) + self.b[2][:, None, None]
        out = _rshift_round(acc, self.shift[2])
        return out[: self.m], out[self.m:]

    def __call__(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, scale = self.outputs(z)
        return mean, scale_index(scale, self.thresholds)


def scale_index(scale_fixed: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Index of the table scale nearest (in log) to each integer scale: integer comparisons only
    (scales below the first threshold, negative ones included, take table 0 = SCALE_BOUND)."""
    return np.searchsorted(thresholds, scale_fixed, side="right").astype(np.int64)


def scale_table() -> np.ndarray:
    return np.exp(np.linspace(math.log(SCALE_BOUND), math.log(SCALE_MAX), NUM_SCALES))


def _quantize_layer(w: np.ndarray, b: np.ndarray, in_bits: int, out_bits: int, bits: int,
                    out_axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-output-channel power-of-two weight scale with |w_int| < 2**(bits-1); bias at the
    accumulator's scale; the right shift that brings the accumulator to ``out_bits`` fractional bits."""
    wmax = np.abs(np.moveaxis(w, out_axis, 0).reshape(w.shape[out_axis], -1)).max(axis=1)
    wmax = np.where(wmax > 0, wmax, 1.0)
    ws = np.floor(np.log2(((1 << (bits - 1)) - 1) / wmax)).astype(np.int64)
    shape = [1] * w.ndim
    shape[out_axis] = -1
    wq = np.rint(w * np.exp2(ws.astype(np.float64)).reshape(shape)).astype(np.int64)
    bq = np.rint(b * np.exp2((ws + in_bits).astype(np.float64))).astype(np.int64)
    shift = ws + in_bits - out_bits
    return wq, bq, shift


def coding_arrays(model: HyperpriorModel, *, weight_bits: int = WEIGHT_BITS,
                  act_bits: int = ACT_BITS) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config entry ``"coding"``, arrays) that make a model file a codec: the integer ``h_s`` and
    the integer tables. ``model`` must hold the weights *as stored* (after float16 rounding)."""
    if not 2 <= weight_bits <= 20 or not 0 <= act_bits <= 16:
        raise ValueError("weight_bits must be 2..20 and act_bits 0..16")
    hs = model.h_s
    layers = [(hs[0], 1), (hs[2], 1), (hs[4], 0)]  # (module, output axis of its weight)
    arrays: dict[str, np.ndarray] = {}
    in_bits = 0
    for i, (mod, axis) in enumerate(layers):
        w = mod.weight.detach().double().numpy()
        b = mod.bias.detach().double().numpy()
        m_out = mod.weight.shape[axis]
        out_bits = act_bits if i < 2 else np.array([MEAN_BITS] * (m_out // 2) + [SCALE_BITS] * (m_out // 2))
        wq, bq, shift = _quantize_layer(w, b, in_bits, out_bits, weight_bits, axis)
        k_terms = w.shape[1 - axis] * w.shape[2] * w.shape[3]
        in_max = Z_CLIP if i == 0 else (1 << ACT_MAX_BITS)
        if k_terms * int(np.abs(wq).max()) * in_max + int(np.abs(bq).max()) >= _EXACT:
            raise ValueError(f"h_s layer {i}: integer sums could exceed 2**53")
        # |w| < 2**(bits-1): 16-bit weights are stored as int16 (half the file of int32)
        arrays[f"hs_int/w{i}"] = wq.astype(np.int16 if weight_bits <= 16 else np.int32)
        arrays[f"hs_int/b{i}"] = bq
        arrays[f"hs_int/shift{i}"] = np.asarray(shift, dtype=np.int64).reshape(-1) * np.ones(m_out, np.int64)
        in_bits = act_bits
    scales = scale_table()
    mids = np.sqrt(scales[:-1] * scales[1:])
    arrays["y_thresholds"] = np.ceil(mids * (1 << SCALE_BITS)).astype(np.int64)
    arrays["y_radius"], arrays["y_tables"] = _gaussian_tables(scales)
    arrays["z_lo"], arrays["z_size"], arrays["z_tables"] = _z_tables(model)
    config = {"version": CODING_VERSION, "precision": PRECISION, "weight_bits": int(weight_bits),
              "act_bits": int(act_bits), "mean_bits": MEAN_BITS, "scale_bits": SCALE_BITS,
              "scales": [float(s) for s in scales]}
    return config, arrays


def _phi(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


def _gaussian_tables(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    radius = np.ceil(Y_TAIL_SIGMAS * scales).astype(np.int64) + 1
    width = int(2 * radius.max() + 2)
    tables = np.zeros((len(scales), width), dtype=np.int32)
    for k, (s, r) in enumerate(zip(scales, radius)):
        v = np.arange(-r, r + 1, dtype=np.float64)
        # both tails by the lower cumulative (accurate side), symmetric
        pmf = _phi((-np.abs(v) + 0.5) / s) - _phi((-np.abs(v) - 0.5) / s)
        esc = 2.0 * _phi(-(r + 0.5) / s)
        tables[k, : 2 * r + 2] = quantize_pmf(np.append(pmf, esc), PRECISION)
    return radius, tables


@torch.no_grad()
def _z_tables(model: HyperpriorModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import copy

    dens = copy.deepcopy(model.z_density).double()
    c = dens.channels
    v = torch.arange(-Z_MAX_RADIUS, Z_MAX_RADIUS + 1, dtype=torch.float64)
    grid = v[None].repeat(c, 1)
    lower = dens.cdf(grid - 0.5).numpy()
    upper = dens.cdf(grid + 0.5).numpy()
    vv = v.numpy().astype(np.int64)
    lo = np.empty(c, np.int64)
    size = np.empty(c, np.int64)
    rows = []
    for ch in range(c):
        keep = (upper[ch] >= Z_TAIL / 2) & (lower[ch] <= 1 - Z_TAIL / 2)
        idx = np.flatnonzero(keep)
        a, b = (idx[0], idx[-1]) if idx.size else (Z_MAX_RADIUS, Z_MAX_RADIUS)
        pmf = np.clip(upper[ch, a:b + 1] - lower[ch, a:b + 1], 0.0, None)
        esc = max(lower[ch, a], 0.0) + max(1.0 - upper[ch, b], 0.0)
        lo[ch], size[ch] = vv[a], b - a + 2
        rows.append(quantize_pmf(np.append(pmf, max(esc, 1e-12)), PRECISION))
    tables = np.zeros((c, int(size.max())), dtype=np.int32)
    for ch, r in enumerate(rows):
        tables[ch, : r.size] = r
    return lo, size, tables


# -------------------------------------------------------------------------------------- coding
class Tables:
    """The integer coding tables and integer ``h_s`` of a hyperprior model file (read-only)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], coding: Mapping[str, Any]) -> None:
        try:
            self.hs = IntegerHyperSynthesis(arrays, int(coding["act_bits"]))
            self.y_radius = np.asarray(arrays["y_radius"], dtype=np.int64)
            self.y_tables = np.asarray(arrays["y_tables"])
            self.z_lo = np.asarray(arrays["z_lo"], dtype=np.int64)
            self.z_size = np.asarray(arrays["z_size"], dtype=np.int64)
            self.z_tables = np.asarray(arrays["z_tables"])
            self.mean_bits = int(coding["mean_bits"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"hyperprior model file lacks valid coding tables ({exc})") from None
        k = len(self.y_radius)
        if (self.y_tables.shape[0] != k or len(self.hs.thresholds) != k - 1 or self.y_tables.dtype.kind not in "iu"
                or self.z_tables.dtype.kind not in "iu" or self.z_tables.shape[0] != len(self.z_lo)
                or self.y_tables.shape[1] < 2 * self.y_radius.max() + 2 or self.z_tables.shape[1] < self.z_size.max()):
            raise InputError("hyperprior model file has inconsistent coding tables")
        # float64 rows for constriction, made once (each row trimmed to its alphabet)
        self._y_rows = [np.ascontiguousarray(self.y_tables[i, : 2 * r + 2], dtype=np.float64)
                        for i, r in enumerate(self.y_radius)]
        self._z_rows = [np.ascontiguousarray(self.z_tables[i, :s], dtype=np.float64)
                        for i, s in enumerate(self.z_size)]
        if any((r <= 0).any() for r in self._y_rows + self._z_rows):
            raise InputError("hyperprior model file has a zero frequency in a coding table")

    @property
    def nz(self) -> int:
        return len(self.z_lo)

    # ---- z
    def encode_z(self, z: np.ndarray) -> tuple[bytes, np.ndarray]:
        """``z`` (nz, h, w) int64 -> (words, escaped values in coding order)."""
        enc = SequentialEncoder()
        escapes = []
        for c in range(z.shape[0]):
            v = z[c].reshape(-1) - self.z_lo[c]
            esc = (v < 0) | (v >= self.z_size[c] - 1)
            escapes.append(z[c].reshape(-1)[esc])
            enc.push_iid(np.where(esc, self.z_size[c] - 1, v).astype(np.int32), self._z_rows[c])
        return enc.finish(), np.concatenate(escapes)

    def decode_z(self, data: bytes, escapes: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        nz, h, w = shape
        dec = SequentialDecoder(data)
        out = np.empty((nz, h * w), dtype=np.int64)
        for c in range(nz):
            out[c] = dec.pull_iid(self._z_rows[c], h * w)
        esc = out == (self.z_size[:, None] - 1)
        out += self.z_lo[:, None]
        _fill_escapes(out, esc, escapes, "z")
        return out.reshape(nz, h, w)

    # ---- y
    def encode_y(self, sym: np.ndarray, idx: np.ndarray) -> tuple[bytes, np.ndarray]:
        """``sym`` = round(y - mu) and its scale indices (same shape) -> (words, escaped values)."""
        flat, ids = sym.reshape(-1), idx.reshape(-1)
        order = np.argsort(ids, kind="stable")
        counts = np.bincount(ids, minlength=len(self.y_radius))
        enc = SequentialEncoder()
        escapes = []
        start = 0
        for k in np.flatnonzero(counts):
            part = flat[order[start:start + counts[k]]]
            start += counts[k]
            r = self.y_radius[k]
            esc = np.abs(part) > r
            escapes.append(part[esc])
            enc.push_iid(np.where(esc, 2 * r + 1, part + r).astype(np.int32), self._y_rows[k])
        return enc.finish(), np.concatenate(escapes) if escapes else np.zeros(0, np.int64)

    def decode_y(self, data: bytes, escapes: np.ndarray, idx: np.ndarray) -> np.ndarray:
        ids = idx.reshape(-1)
        order = np.argsort(ids, kind="stable")
        counts = np.bincount(ids, minlength=len(self.y_radius))
        dec = SequentialDecoder(data)
        coded = np.empty(ids.size, dtype=np.int64)
        is_esc = np.empty(ids.size, dtype=bool)
        start = 0
        for k in np.flatnonzero(counts):
            r = self.y_radius[k]
            got = dec.pull_iid(self._y_rows[k], int(counts[k]))
            is_esc[start:start + counts[k]] = got == 2 * r + 1
            coded[start:start + counts[k]] = got - r
            start += counts[k]
        _fill_escapes(coded[None], is_esc[None], escapes, "y")
        out = np.empty_like(coded)
        out[order] = coded
        return out.reshape(idx.shape)


def _fill_escapes(values: np.ndarray, esc: np.ndarray, escapes: np.ndarray, what: str) -> None:
    n = int(esc.sum())
    if n != escapes.size:
        raise CorruptStreamError(f"ldm stream: {what} has {n} escape symbols but {escapes.size} escaped values")
    if n:
        values[esc] = escapes


def encode_escapes(values: np.ndarray) -> bytes:
    return encode_symbols(np.asarray(values, dtype=np.int64))


def decode_escapes(data: bytes | None, limit: int) -> np.ndarray:
    if data is None:
        return np.zeros(0, dtype=np.int64)
    return decode_symbols(data, max_symbols=limit)


# --------------------------------------------------------------------------------- model files
def write_model_file(model: HyperpriorModel, dest: Any, *, dtype: str = "float16",
                     extra: Mapping[str, Any] | None = None, weight_bits: int = WEIGHT_BITS,
                     act_bits: int = ACT_BITS) -> str:
    """Write ``model`` as an ``ldm`` hyperprior model file that the codec can use; returns its digest.

    The weights are rounded to ``dtype`` first and the integer ``h_s`` and the tables are derived
    from the *rounded* weights, so the file is self-consistent (what the encoder and the decoder
    build from it is exactly what was tabulated)."""
    from ... import weights
    from .hyperprior import FORMAT_VERSION, MODEL_KIND, export_arrays, model_config

    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    state = {k: v.astype(np.dtype(dtype)) for k, v in export_arrays(model).items()}
    rounded = HyperpriorModel(**model.config)
    rounded.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()})
    coding, arrays = coding_arrays(rounded.eval(), weight_bits=weight_bits, act_bits=act_bits)
    cfg = model_config(model, {"weights_dtype": dtype, **dict(extra or {}), "coding": coding})
    # lzma: the zero-padded integer tables and the int16 h_s shrink to a fraction (loaded once per
    # process, through the weights cache)
    return weights.save(dest, MODEL_KIND, FORMAT_VERSION, cfg, {**state, **arrays}, compression="lzma")


def stream_digest(mf: Any) -> str:
    """The short digest a v3 stream records for ``mf``'s model: its own, or for a decode-only copy
    the full model's it was cut from (so the files that model wrote keep naming it)."""
    made = decode_only_of(mf)
    return made[:16] if made is not None else mf.short_digest


def write_decode_only(mf: Any, dest: Any) -> str:
    """Write the decode-only copy of the full hyperprior model file ``mf``; returns its digest.

    Why: a retired model only ever decodes the files it wrote, and ``g_a``, ``h_a``, the float
    ``h_s`` and the ``z`` density (about half the file) are the encoder's and the trainer's. The
    arrays kept are copied as stored, so a decode with the copy is the decode with the original,
    bit for bit; the copy records the original's digest, which is what its streams name."""
    from ... import weights
    from .hyperprior import FORMAT_VERSION, MODEL_KIND

    check_model_file(mf)
    if decode_only_of(mf) is not None:
        raise UsageError(f"ldm hyperprior model file {mf.short_digest} is already decode-only")
    arrays = {k: np.asarray(v) for k, v in mf.arrays.items() if k.startswith(DECODE_KEEP)}
    config = {**dict(mf.config), "decode_only_of": mf.digest}
    return weights.save(dest, MODEL_KIND, FORMAT_VERSION, config, arrays, compression="lzma")


def check_model_file(mf: Any) -> None:
    """Refuse (one line, InputError) a hyperprior file the codec cannot use."""
    from .hyperprior import NETWORK

    cfg = mf.config
    if cfg.get("network") != NETWORK:
        raise InputError(f"ldm model file {mf.short_digest} holds a '{cfg.get('network')}' network, not a hyperprior")
    coding = cfg.get("coding")
    if not isinstance(coding, Mapping) or coding.get("version") != CODING_VERSION:
        raise InputError(f"ldm hyperprior model file {mf.short_digest} has no coding tables (version "
                         f"{CODING_VERSION}): export it again with train_hyperprior --export")
    args = cfg.get("args")
    if not isinstance(args, Mapping) or not all(isinstance(args.get(k), int) and args.get(k) > 0
                                                for k in ("n", "m", "nh", "nz", "qualities")):
        raise InputError(f"ldm hyperprior model file {mf.short_digest} has no valid constructor arguments")
    made = cfg.get("decode_only_of")
    if made is not None and (not isinstance(made, str) or len(made) != 64 or set(made) - set("0123456789abcdef")):
        raise InputError(f"ldm hyperprior model file {mf.short_digest} has an invalid 'decode_only_of' digest")
