"""The ``photo`` model of pc: context-conditioned circuits over pixel residuals, coded in wavefronts.

Per subpixel the model is a small probabilistic circuit: a sum node over discretised-logistic
leaves of the residual ``x - pred`` (fitted offline, ``train_photo.py``), whose weights and leaf
parameters are selected by the already-decoded causal neighbourhood: the error-energy context
(the residuals of W, N, NW, NE, of the earlier channels of the same pixel, the local gradient).
The residual is taken against a learned linear predictor (least squares per gradient class over
the causal neighbours and, for R and B, how the coded channels differ from their neighbours),
corrected by a per-image bias estimate (CALIC's bias cancellation). The circuits' token
probabilities are the prior counts of an adaptive coder, so each image also teaches the model
its own statistics (a flat or synthetic image quickly costs almost nothing per pixel).

Determinism: prediction, contexts and counts are integers (:mod:`.photo_kernels`), updated in one
fixed order on both sides; the float64 count rows handed to constriction hold integers.

Coding: colour images as one (G, R, B) group, other channels as grey planes; wavefront
``t = 2r + c`` by wavefront, channel by channel: one coder call for the tokens of every pixel of the
wavefront, one for their bucket offsets (see :mod:`.photo_kernels`). All groups and images of a
batch go into one stream.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ... import weights
from ...entropy import SequentialDecoder, SequentialEncoder
from ...errors import CorruptStreamError, InputError
from ...runtime import lazy_import

K = lazy_import("neurocodec.codecs.pc.photo_kernels")  # Numba: imported by the first photo coded

KIND = "pc-photo"
FORMAT_VERSION = 1
FORMAT_VERSIONS = (1, 1)
SLOTS = 3  # predictor slots: first channel of a group (or grey), second, third
MODES = (0, 1)  # 0: photos; 1: synthetic content (edge-blind contexts, counts that adapt 16x faster)
FAST_DIV = 16  # mode 1 starts from the prior counts divided by this
# images whose subpixels continue their row exactly (x == W or x - W == W - WW) at least this often,
# or with at most SMALL_IMAGE pixels, also try mode 1 (held-out photos: 0.18-0.25; synthetic ones
# and scans: 0.6-0.99)
SYNTHETIC_SHARE = 0.5
SMALL_IMAGE = 4096
_MODE_TABLE = np.ones(len(MODES), np.float64)  # the mode symbol before each image: uniform


@functools.cache
def _offset_tables() -> np.ndarray:
    """The offset symbols' fixed tables (read-only; built once, on the first photo coded)."""
    tables = K.offset_tables()
    tables.flags.writeable = False
    return tables


def split_groups(img: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """An H,W[,C] uint8 image -> [(planes (Cg, H, W) int16, coding order, slots)].

    The first three channels of an image with >= 3 channels form one colour group coded G, R, B
    (G first: it predicts the other two best); every other channel is a grey plane of its own."""
    x = img[:, :, None] if img.ndim == 2 else img
    c = x.shape[2]
    out = []
    if c >= 3:
        planes = np.ascontiguousarray(x[:, :, :3].transpose(2, 0, 1), dtype=np.int16)
        out.append((planes, np.array([1, 0, 2], np.int64), np.array([0, 1, 2], np.int64)))
        rest = range(3, c)
    else:
        rest = range(c)
    for k in rest:
        out.append((np.ascontiguousarray(x[None, :, :, k], dtype=np.int16), np.array([0], np.int64),
                    np.array([0], np.int64)))
    return out


def _join_groups(shape: tuple[int, int, int], groups: list[np.ndarray]) -> np.ndarray:
    h, w, c = shape
    out = np.empty((h, w, c), np.uint8)
    if c >= 3:
        out[:, :, :3] = groups[0].transpose(1, 2, 0)
        rest, groups = range(3, c), groups[1:]
    else:
        rest = range(c)
    for k, g in zip(rest, groups):
        out[:, :, k] = g[0]
    return out


def _frozen(a: np.ndarray, dtype: Any) -> np.ndarray:
    arr = np.array(a, dtype=dtype, order="C")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class PhotoModel:
    """Predictor weights (slots, classes, features) int32, prior counts (contexts, tokens + 1) of
    the residual circuits (integers; last column = row sum), the adaptation rate (count increment,
    halving limit), the circuits' leaf parameters (contexts, leaves, [weight, mean, log-scale]:
    what the priors were computed from, kept for inspection), the training normal equations the
    per-image predictor refit starts from, and the training record."""

    wts: np.ndarray
    prior: np.ndarray
    inc: float
    limit: float
    leaves: np.ndarray
    prior_a: np.ndarray  # (slots, classes, features, features) training normal equations per sample
    prior_b: np.ndarray  # (slots, classes, features)
    kappa: float  # pseudo-samples of the training equations in each per-image refit
    every: int  # refit after every ``every`` wavefronts
    name: str = "photo"
    info: Mapping[str, Any] = field(default_factory=dict)
    source_digest: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        put("wts", _frozen(self.wts, np.int32))
        put("prior", _frozen(self.prior, np.float64))
        put("leaves", _frozen(self.leaves, np.float64))
        put("prior_a", _frozen(self.prior_a, np.float64))
        put("prior_b", _frozen(self.prior_b, np.float64))
        put("kappa", float(self.kappa))
        put("every", int(self.every))
        if self.prior_a.shape != (SLOTS, K.NCLASS, K.NFEAT, K.NFEAT) or self.prior_b.shape != (SLOTS, K.NCLASS, K.NFEAT) \
                or not (np.isfinite(self.prior_a).all() and np.isfinite(self.prior_b).all()):
            raise CorruptStreamError("pc photo model: the refit prior has the wrong shape or non-finite values")
        if not (0.0 < self.kappa < 1e12 and 1 <= self.every <= 1 << 16):
            raise CorruptStreamError(f"pc photo model: bad refit settings kappa={self.kappa} every={self.every}")
        put("inc", float(self.inc))
        put("limit", float(self.limit))
        put("info", weights.freeze(dict(self.info)))
        p = self.prior
        if self.wts.shape != (SLOTS, K.NCLASS, K.NFEAT):
            raise CorruptStreamError(f"pc photo model: predictor weights have shape {self.wts.shape}, "
                                     f"expected {(SLOTS, K.NCLASS, K.NFEAT)}")
        if p.shape != (K.NCTX, K.NTOK + 1) or not np.all(p[:, :K.NTOK] >= 1) \
                or not np.all(p == np.floor(p)) or not np.array_equal(p[:, :K.NTOK].sum(1), p[:, K.NTOK]) \
                or p[:, K.NTOK].max() >= 2 ** 30:
            raise CorruptStreamError("pc photo model: prior counts must be integers >= 1 with their row sum last")
        # initial counts per mode; mode 1's (the prior / FAST_DIV) let an image's own counts take
        # over after a few pixels
        fast = np.maximum(1.0, np.floor(p[:, :K.NTOK] / FAST_DIV))
        put("counts0", (p, _frozen(np.concatenate([fast, fast.sum(1, keepdims=True)], 1), np.float64)))
        if not (1 <= self.inc <= 2 ** 16 and self.inc == int(self.inc) and 64 <= self.limit <= 2 ** 28
                and self.limit == int(self.limit)):
            raise CorruptStreamError(f"pc photo model: bad adaptation rate inc={self.inc} limit={self.limit}")
        if np.abs(self.wts.astype(np.int64)).max() > 2 ** 20:
            raise CorruptStreamError("pc photo model: predictor weights out of range")

    @functools.cached_property
    def digest(self) -> str:
        return self.source_digest or hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def short_digest(self) -> str:
        return self.digest[:16]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "inc": self.inc, "limit": self.limit, "kappa": self.kappa, "every": self.every,
                "info": weights.thaw(self.info),
                "layout": {"slots": SLOTS, "classes": K.NCLASS, "features": K.NFEAT, "contexts": K.NCTX,
                           "tokens": K.NTOK}}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"wts": self.wts, "prior": self.prior.astype(np.int32), "leaves": self.leaves,
                "prior_a": self.prior_a, "prior_b": self.prior_b}

    def to_bytes(self) -> bytes:
        return weights.to_bytes(KIND, FORMAT_VERSION, self.config(), self.arrays(), compression="lzma")

    def save(self, path: str | Path) -> str:
        return weights.save(path, KIND, FORMAT_VERSION, self.config(), self.arrays(), compression="lzma")

    def ideal_bits(self, img: np.ndarray, mode: int = 0) -> float:
        """The model's code length for one H,W[,C] image from its adaptive counts (no coder rounding)."""
        hist = np.zeros((self.prior.shape[0], 256), np.int64)
        return float(sum(K.ideal_bits(pl, o, s, mode, self.wts, self.counts0[mode], self.inc, self.limit, hist,
                                      self.prior_a, self.prior_b, self.kappa, self.every)
                         for pl, o, s in split_groups(img)))

    def choose_mode(self, img: np.ndarray) -> int:
        """The coding mode of one H,W[,C] image: 0, unless it is small or looks synthetic (rows
        that continue exactly) and mode 1 is measured to code it shorter."""
        x = (img[:, :, None] if img.ndim == 2 else img).astype(np.int16)
        if x.shape[0] * x.shape[1] > SMALL_IMAGE:
            if x.shape[1] < 3:
                return 0
            a, w, ww = x[:, 2:], x[:, 1:-1], x[:, :-2]
            if np.count_nonzero((a == w) | (a - w == w - ww)) < SYNTHETIC_SHARE * a.size:
                return 0
        return int(self.ideal_bits(img, 1) < self.ideal_bits(img, 0))


def _build(mf: weights.ModelFile, device: str) -> PhotoModel:
    cfg = mf.config
    try:
        lay = cfg["layout"]
        if (lay["slots"], lay["classes"], lay["features"], lay["contexts"], lay["tokens"]) != \
                (SLOTS, K.NCLASS, K.NFEAT, K.NCTX, K.NTOK):
            raise CorruptStreamError(f"layout {dict(lay)} is not the one this code reads")
        return PhotoModel(mf.array("wts"), mf.array("prior"), cfg["inc"], cfg["limit"], mf.array("leaves"),
                          mf.array("prior_a"), mf.array("prior_b"), cfg["kappa"], cfg["every"],
                          str(cfg.get("name", "custom")), cfg.get("info", {}), source_digest=mf.digest)
    except CorruptStreamError as exc:
        raise CorruptStreamError(f"pc photo model file {mf.short_digest} is damaged: {exc}") from None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptStreamError(f"pc photo model file {mf.short_digest} has a malformed config ({exc!r})") from None


def load_file(path: str | Path, *, expect_digest: str | None = None) -> PhotoModel:
    mf = weights.load(path, kind=KIND, versions=FORMAT_VERSIONS, expect_digest=expect_digest)
    return weights.build(mf, _build, "cpu")


def is_photo_file(path: str | Path) -> bool:
    """Whether ``path`` is a model file of the photo kind (a cheap header read, no model built)."""
    try:
        return weights.load(path).kind == KIND
    except InputError:
        return False


# ----------------------------------------------------------------------------------- coding
class _Group:
    """Coder state of one group: planes being filled, residuals, bias sums, adaptive counts."""

    def __init__(self, planes: np.ndarray, order: np.ndarray, slots: np.ndarray, model: PhotoModel, mode: int):
        cg, h, w = planes.shape
        self.planes, self.order, self.slots, self.m, self.mode = planes, order, slots, model, mode
        self.h, self.w = h, w
        self.errs = np.zeros((cg, h, w), np.int16)
        self.bsum = np.zeros((SLOTS, K.NBIAS), np.int64)
        self.bcnt = np.zeros((SLOTS, K.NBIAS), np.int64)
        self.counts = np.array(model.counts0[mode], dtype=np.float64)
        self.wcur = np.array(model.wts)
        self.xtx = np.zeros((SLOTS, K.NCLASS, K.NFEAT, K.NFEAT), np.int64)
        self.xty = np.zeros((SLOTS, K.NCLASS, K.NFEAT), np.int64)
        self.ncnt = np.zeros((SLOTS, K.NCLASS), np.int64)
        self.solved = np.zeros((SLOTS, K.NCLASS), np.int64)
        n = min(h, w)
        self.feats = np.empty((n, K.NFEAT), np.int32)
        self.base = np.empty(n, np.int32)
        self.tab = np.empty((n, K.NTOK), np.float64)
        self.pred = np.empty(n, np.int32)
        self.flip = np.empty(n, np.int32)
        self.predls = np.empty(n, np.int64)
        self.bctx = np.empty(n, np.int32)
        self.ectx = np.empty(n, np.int32)
        self.tok = np.empty(n, np.int32)
        self.off = np.empty(n, np.int32)
        self.offk = np.empty(n, np.int32)

    @property
    def waves(self) -> int:
        return 2 * (self.h - 1) + self.w

    def predict(self, t: int, ci: int) -> int:
        """Predictions of (t, ci); their coding tables are ``self.tab[:n]``."""
        return K.predict_wave(t, ci, self.slots[ci], self.mode, self.planes, self.errs, self.order, self.wcur, self.bsum,
                              self.bcnt, self.pred, self.flip, self.predls, self.bctx, self.ectx, self.feats, self.base,
                              self.counts, self.tab)

    def update(self, t: int, ci: int, n: int) -> None:
        m = self.m
        K.update_wave(t, ci, self.slots[ci], self.planes, self.errs, self.order, self.pred, self.predls, self.bctx,
                      self.ectx, self.tok, n, self.bsum, self.bcnt, self.counts, m.inc, m.limit, self.feats,
                      self.base, self.xtx, self.xty, self.ncnt)

    def end_wave(self, t: int) -> None:
        m = self.m
        if t % m.every == m.every - 1:
            K.refit(self.xtx, self.xty, self.ncnt, m.prior_a, m.prior_b, m.kappa, K.NFEAT_OF_SLOT, self.wcur, self.solved)


def encode_images(model: PhotoModel, x: np.ndarray, progress: bool = False) -> tuple[bytes, list[int]]:
    """(N, H, W, C) uint8 -> (the coder's bytes: every image, every group, one stream; the mode
    of each image, which the stream carries as one symbol before the image)."""
    enc = SequentialEncoder()
    modes = []
    bar = tqdm(total=x.size, disable=not progress, desc="pc photo encode", unit="px", unit_scale=True)
    for img in x:
        mode = model.choose_mode(img)
        modes.append(mode)
        enc.push_iid(np.array([mode], np.int32), _MODE_TABLE)
        for planes, order, slots in split_groups(img):
            g = _Group(planes, order, slots, model, mode)
            for t in range(g.waves):
                for ci in range(order.shape[0]):
                    n = g.predict(t, ci)
                    m = K.tokens_of(t, ci, g.planes, order, g.pred, g.flip, n, g.tok, g.off, g.offk)
                    enc.push(g.tok[:n], g.tab[:n])
                    if m:
                        enc.push(g.off[:m], _offset_tables()[g.offk[:m]])
                    g.update(t, ci, n)
                    bar.update(n)
                g.end_wave(t)
    bar.close()
    return enc.finish(), modes


def decode_images(model: PhotoModel, data: bytes, shape: tuple[int, int, int, int],
                  progress: bool = False) -> np.ndarray:
    """Inverse of :func:`encode_images` for an (N, H, W, C) batch."""
    n_img, h, w, c = shape
    dec = SequentialDecoder(data)
    out = np.empty(shape, np.uint8)
    bar = tqdm(total=int(np.prod(shape)), disable=not progress, desc="pc photo decode", unit="px", unit_scale=True)
    template = np.zeros((h, w, c), np.uint8)
    for i in range(n_img):
        groups = []
        mode = int(dec.pull_iid(_MODE_TABLE, 1)[0])
        for planes, order, slots in split_groups(template):
            g = _Group(planes, order, slots, model, mode)
            for t in range(g.waves):
                for ci in range(order.shape[0]):
                    n = g.predict(t, ci)
                    g.tok[:n] = dec.pull(g.tab[:n])  # in 0..NTOK-1: the tables' width
                    m = K.offset_bits(g.tok, n, g.offk)
                    if m:
                        g.off[:m] = dec.pull(_offset_tables()[g.offk[:m]])
                    if not K.place(t, ci, g.planes, order, g.pred, g.flip, n, g.tok, g.off):
                        raise CorruptStreamError("pc photo: decoded offset outside its bucket (damaged stream)")
                    g.update(t, ci, n)
                    bar.update(n)
                g.end_wave(t)
            groups.append(g.planes)
        out[i] = _join_groups((h, w, c), groups)
    bar.close()
    return out


__all__ = ["PhotoModel", "decode_images", "encode_images", "load_file", "split_groups"]
