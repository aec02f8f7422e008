"""Images <-> patches, and batched arithmetic coding of patches with an HCLT.

Every image (or every channel plane, when the model has no circuit for the image's channel count)
is cut into the circuit's patches, zero-padded to whole patches; padded pixels are never coded:
they stay marginalised (unobserved) in the circuit, so odd sizes cost nothing extra.

Order of the symbols in the stream: chunk of patches, then pixel position t = 0..D-1, then patch.
Two kernels produce the same tables (see :mod:`.native`): the compiled one (default when built)
and the Numba one (fallback and reference). With the compiled kernel the encoder, which knows
every pixel, computes the tables of many positions in one call and codes them in one
:class:`~neurocodec.entropy.SequentialEncoder` call; the decoder makes per position one call for
the tables, one decoder call and one call recording the pixels it has just pulled. With Numba
both sides do the three calls per position. Either way both sides see the same tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ...entropy import SequentialDecoder, SequentialEncoder
from ...errors import CorruptStreamError, InputError, UsageError
from ...runtime import lazy_import
from . import native
from .model import HCLT, PCModel

kernels = lazy_import("neurocodec.codecs.pc.kernels")  # the Numba fallback: imported when first used

ALPHABET = 256
STATE_BYTES = 48 << 20  # cached messages per chunk of patches (sets the symbol order: a bitstream field)
TABLE_ROWS = 16384  # tables the native encoder fills per call (32 MiB of float64 rows)
DECODE_ROWS = 65536  # tables the native decoder computes per call (progress granularity)


@dataclass(frozen=True)
class Layout:
    """How an (N, H, W, C) batch maps to patches of one circuit."""

    n: int
    h: int
    w: int
    c: int
    circuit_channels: int  # C when the model has a C-channel circuit, else 1 (planes coded apart)
    patch: tuple[int, int, int]

    @property
    def planes(self) -> int:
        return self.n if self.circuit_channels == self.c else self.n * self.c

    @property
    def grid(self) -> tuple[int, int]:
        return math.ceil(self.h / self.patch[0]), math.ceil(self.w / self.patch[1])

    @property
    def num_patches(self) -> int:
        gh, gw = self.grid
        return self.planes * gh * gw


def choose_circuit(model: PCModel, channels: int) -> HCLT:
    if channels in model.circuits:
        return model.circuits[channels]
    if 1 in model.circuits:
        return model.circuits[1]
    raise UsageError(f"pc model '{model.name}' has circuits for {sorted(model.circuits)} channels, "
                     f"none usable for {channels}-channel images")


def make_layout(shape: tuple[int, int, int, int], circ: HCLT) -> Layout:
    n, h, w, c = shape
    return Layout(n, h, w, c, circ.channels if circ.channels == c else 1, tuple(circ.patch))


def to_patches(x: np.ndarray, lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) uint8 -> patches (P, D) uint8 and validity mask (P, D) bool."""
    ph, pw, pc = lay.patch
    gh, gw = lay.grid
    planes = x if lay.circuit_channels == lay.c else x.transpose(0, 3, 1, 2).reshape(lay.planes, lay.h, lay.w, 1)
    pad = np.zeros((lay.planes, gh * ph, gw * pw, pc), dtype=np.uint8)
    pad[:, :lay.h, :lay.w] = planes
    patches = pad.reshape(lay.planes, gh, ph, gw, pw, pc).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(patches.reshape(lay.num_patches, ph * pw * pc)), patch_mask(lay)


def patch_mask(lay: Layout) -> np.ndarray:
    """(P, D) bool: which variables of each patch are real pixels (False = padding, never coded)."""
    ph, pw, pc = lay.patch
    gh, gw = lay.grid
    valid = np.zeros((gh * ph, gw * pw, pc), dtype=bool)
    valid[:lay.h, :lay.w] = True
    one = valid.reshape(gh, ph, gw, pw, pc).transpose(0, 2, 1, 3, 4).reshape(gh * gw, ph * pw * pc)
    full = np.broadcast_to(one[None], (lay.planes, gh * gw, ph * pw * pc))
    return np.ascontiguousarray(full.reshape(lay.num_patches, ph * pw * pc))


def from_patches(patches: np.ndarray, lay: Layout) -> np.ndarray:
    ph, pw, pc = lay.patch
    gh, gw = lay.grid
    full = patches.reshape(lay.planes, gh, gw, ph, pw, pc).transpose(0, 1, 3, 2, 4, 5)
    full = full.reshape(lay.planes, gh * ph, gw * pw, pc)
    full = full[:, :lay.h, :lay.w]
    if lay.circuit_channels == lay.c:
        return np.ascontiguousarray(full)
    return np.ascontiguousarray(full.reshape(lay.n, lay.c, lay.h, lay.w).transpose(0, 2, 3, 1))


def _chunk(circ: HCLT, total: int) -> int:
    return max(1, min(total, STATE_BYTES // (circ.num_vars * circ.num_states * 8)))


class _State:
    """Numba path: cached messages of a chunk of patches, all pixels unknown at first."""

    def __init__(self, circ: HCLT, n: int):
        self.c = circ
        t = circ.tree
        d, m = circ.num_vars, circ.num_states
        x0 = np.full((1, d), -1, dtype=np.int16)
        up0 = np.empty((1, d, m))
        kernels.init_state(x0, up0, circ.trans, circ.leaf, t.child_ptr, t.child_idx, t.post)
        self.x = np.full((n, d), -1, dtype=np.int16)
        self.up = np.repeat(up0, n, axis=0)
        self.freqs = np.empty((n, ALPHABET), dtype=np.int32)

    def tables(self, pos: int, active: np.ndarray, precision: int) -> np.ndarray:
        c, t = self.c, self.c.tree
        bad = kernels.cond_freqs(pos, self.x, self.up, c.prior, c.trans, c.leaf, t.parent, t.child_ptr,
                                 t.child_idx, active, precision, self.freqs)
        if bad:
            raise CorruptStreamError("pc: the circuit produced an invalid conditional (damaged model?)")
        return self.freqs

    def observe(self, pos: int, symbols: np.ndarray, active: np.ndarray) -> None:
        c, t = self.c, self.c.tree
        kernels.observe(pos, symbols, self.x, self.up, c.trans, c.leaf, t.parent, t.child_ptr, t.child_idx, active)


def encode_patches(circ: HCLT, patches: np.ndarray, mask: np.ndarray, precision: int, progress: bool = False,
                   kernel: str | None = None) -> bytes:
    """The range-coder words of every valid pixel of ``patches`` (P, D) uint8 (``mask``: valid)."""
    if native.resolve(kernel) == "numba":
        return _encode_numba(circ, patches, mask, precision, progress)
    total, d = patches.shape
    enc = SequentialEncoder()
    step = _chunk(circ, total)
    sym_t = np.ascontiguousarray(patches.T, dtype=np.int16)  # (D, P): contiguous per position
    mask_t = np.ascontiguousarray(mask.T)
    bar = tqdm(total=total * d, disable=not progress, desc="pc encode", unit="px", unit_scale=True)
    for s in range(0, total, step):
        n = min(total, s + step) - s
        coder = native.coder(circ, n, precision)
        block = max(1, min(d, TABLE_ROWS // n))  # positions per call
        tables = np.empty((block * n, ALPHABET))
        symbols = np.empty(block * n, dtype=np.int32)
        for p0 in range(0, d, block):
            p1 = min(d, p0 + block)
            rows = coder.encode(p0, p1, sym_t, mask_t, s, tables, symbols)
            if rows < 0:
                raise CorruptStreamError("pc: the circuit produced an invalid conditional (damaged model?)")
            enc.push(symbols[:rows], tables[:rows])
            bar.update(n * (p1 - p0))
    bar.close()
    return enc.finish()


def decode_patches(circ: HCLT, data: bytes, mask: np.ndarray, precision: int, progress: bool = False,
                   kernel: str | None = None) -> np.ndarray:
    """Inverse of :func:`encode_patches`: the (P, D) uint8 patches (invalid pixels 0)."""
    if native.resolve(kernel) == "numba":
        return _decode_numba(circ, data, mask, precision, progress)
    total, d = mask.shape
    dec = SequentialDecoder(data)
    step = _chunk(circ, total)
    out = np.empty((total, d), dtype=np.uint8)
    mask_t = np.ascontiguousarray(mask.T)
    bar = tqdm(total=total * d, disable=not progress, desc="pc decode", unit="px", unit_scale=True)
    for s in range(0, total, step):
        e = min(total, s + step)
        coder = native.coder(circ, e - s, precision, node_major=True)
        tables = np.empty((e - s, ALPHABET))
        live = np.flatnonzero(mask_t[:, s:e].any(axis=1)).astype(np.int64)
        # the loop over positions runs in C (tables, then dec.pull, then recording the pixels);
        # handed over in groups only so that the progress bar moves
        group = max(1, DECODE_ROWS // (e - s))
        pull = dec.bare_pull()  # called once per pixel position from C: no Python frame in between
        for g in range(0, live.size, group):
            try:
                status = coder.decode(live[g:g + group], mask_t, s, pull, tables)
            except BaseException as exc:  # constriction's own, as pull would have caught them
                if isinstance(exc, (ValueError, IndexError)) and str(exc).startswith("pc native"):
                    raise  # the coder's own argument checks: a bug, not damaged data
                dec.failed(exc)
            if status == -1:
                raise CorruptStreamError("pc: the circuit produced an invalid conditional (damaged model?)")
            if status:
                raise CorruptStreamError("pc: decoded pixel outside 0..255")
            bar.update((e - s) * min(group, live.size - g))
        bar.update((e - s) * (d - live.size))
        coder.pixels(out[s:e])
    bar.close()
    return out


# ------------------------------------------------------------------- the Numba path (fallback)
def _encode_numba(circ: HCLT, patches: np.ndarray, mask: np.ndarray, precision: int, progress: bool) -> bytes:
    total, d = patches.shape
    enc = SequentialEncoder()
    step = _chunk(circ, total)
    sym_t = np.ascontiguousarray(patches.T.astype(np.int16))  # (D, P): contiguous per position
    mask_t = np.ascontiguousarray(mask.T)
    bar = tqdm(total=total * d, disable=not progress, desc="pc encode", unit="px", unit_scale=True)
    for s in range(0, total, step):
        e = min(total, s + step)
        st = _State(circ, e - s)
        for pos in range(d):
            act = mask_t[pos, s:e]
            if act.any():
                freqs = st.tables(pos, act, precision)
                enc.push(sym_t[pos, s:e][act], freqs[act])
                st.observe(pos, sym_t[pos, s:e], act)
            bar.update(e - s)
    bar.close()
    return enc.finish()


def _decode_numba(circ: HCLT, data: bytes, mask: np.ndarray, precision: int, progress: bool) -> np.ndarray:
    total, d = mask.shape
    dec = SequentialDecoder(data)
    step = _chunk(circ, total)
    out_t = np.zeros((d, total), dtype=np.int16)
    mask_t = np.ascontiguousarray(mask.T)
    bar = tqdm(total=total * d, disable=not progress, desc="pc decode", unit="px", unit_scale=True)
    for s in range(0, total, step):
        e = min(total, s + step)
        st = _State(circ, e - s)
        for pos in range(d):
            act = mask_t[pos, s:e]
            if act.any():
                freqs = st.tables(pos, act, precision)
                got = dec.pull(freqs[act])
                if got.size and (got.min() < 0 or got.max() >= ALPHABET):
                    raise CorruptStreamError("pc: decoded pixel outside 0..255")
                out_t[pos, s:e][act] = got
                st.observe(pos, out_t[pos, s:e], act)
            bar.update(e - s)
    bar.close()
    return np.ascontiguousarray(out_t.T).astype(np.uint8)


def naive_tables(circ: HCLT, patches: np.ndarray, precision: int) -> np.ndarray:
    """Reference: every table of every patch (P, D, 256) by full re-evaluation per pixel."""
    total, d = patches.shape
    t = circ.tree
    x = np.full((total, d), -1, dtype=np.int16)
    out = np.empty((total, d, ALPHABET), dtype=np.int32)
    freqs = np.empty((total, ALPHABET), dtype=np.int32)
    act = np.ones(total, dtype=bool)
    for pos in range(d):
        kernels.cond_freqs_naive(pos, x, circ.prior, circ.trans, circ.leaf, t.parent, t.child_ptr, t.child_idx,
                                 t.post, act, precision, freqs)
        out[:, pos] = freqs
        x[:, pos] = patches[:, pos]
    return out


def efficient_tables(circ: HCLT, patches: np.ndarray, precision: int, kernel: str | None = None) -> np.ndarray:
    """Every table (P, D, 256) through the incremental path the coder uses (``kernel``: which one)."""
    total, d = patches.shape
    act = np.ones(total, dtype=bool)
    out = np.empty((total, d, ALPHABET), dtype=np.int32)
    sym_t = np.ascontiguousarray(patches.T.astype(np.int16))
    if native.resolve(kernel) == "native":
        coder = native.coder(circ, total, precision, node_major=True)
        rows = np.empty((total, ALPHABET))
        for pos in range(d):
            if coder.tables(pos, act, rows) < 0:
                raise CorruptStreamError("pc: the circuit produced an invalid conditional (damaged model?)")
            out[:, pos] = rows
            if coder.observe(pos, sym_t[pos].astype(np.int64), act):
                raise InputError("pc: pixel outside 0..255")
        return out
    st = _State(circ, total)
    for pos in range(d):
        out[:, pos] = st.tables(pos, act, precision)
        st.observe(pos, sym_t[pos], act)
    return out


def check_pixels(x: np.ndarray) -> None:
    if x.dtype != np.uint8:
        raise InputError(f"pc codes 8-bit images (uint8); got dtype {x.dtype}")
