"""Tensor quantization and magnitude pruning shared by the neural codecs (HNeRV, NeRV, ...).

* :func:`quantize` / :func:`dequantize`: uniform quantization of one tensor, per channel (along
  axis 0) or per tensor, symmetric (zero stays exactly zero, so pruned weights cost almost nothing
  after entropy coding) or affine (min + scale, for embeddings). Scales and offsets are rounded to
  float16 *before* quantizing, because float16 is what the bitstream stores: encoder and decoder
  then dequantize with bit-identical numbers.
* :func:`choose_axis`: the per-channel / per-tensor rule, a pure function of the shape, so the
  decoder derives it from the architecture instead of reading it from the stream.
* :func:`global_magnitude_masks`: masks keeping the largest-magnitude weights over a set of tensors
  (one global threshold, as in HNeRV's pruning step).

Everything works on numpy arrays (float32 in, int32 symbols out) so it is independent of torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import CorruptStreamError, UsageError

#: below this many values per channel, one scale per channel costs more than it saves
MIN_PER_CHANNEL = 16


@dataclass
class QTensor:
    """A quantized tensor: integer symbols plus the float16 side information to undo it."""

    q: np.ndarray  # int32, same shape as the original tensor
    scale: np.ndarray  # float16, shape (C,) per channel or (1,) per tensor
    offset: np.ndarray | None  # float16 like ``scale`` (affine mode) or None (symmetric)
    per_channel: bool

    def dequantize(self) -> np.ndarray:
        return dequantize(self.q, self.scale, self.offset, self.per_channel)


def choose_axis(shape: tuple[int, ...]) -> bool:
    """True for per-channel (axis 0) quantization: only when each channel has enough values."""
    if len(shape) < 2 or shape[0] < 2:
        return False
    per = int(np.prod(shape[1:]))
    return per >= MIN_PER_CHANNEL


def _bcast(v: np.ndarray, ndim: int, per_channel: bool) -> np.ndarray:
    v = v.astype(np.float32)
    return v.reshape((-1,) + (1,) * (ndim - 1)) if per_channel else v.reshape(())


def quantize(x: np.ndarray, bits: int = 8, *, per_channel: bool | None = None, symmetric: bool = True) -> QTensor:
    """Quantize ``x`` to ``bits`` bits.

    Symmetric: ``q = round(x / s)`` in ``[-(2^(b-1)-1), 2^(b-1)-1]`` with ``s = max|x| / (2^(b-1)-1)``.
    Affine: ``q = round((x - m) / s)`` in ``[0, 2^b - 1]`` with ``m = min x``, ``s = (max - min) / (2^b-1)``.
    """
    if not 2 <= bits <= 16:
        raise UsageError(f"quantization bits must be in 2..16, got {bits}")
    x = np.asarray(x, dtype=np.float32)
    if per_channel is None:
        per_channel = choose_axis(x.shape)
    flat = x.reshape(x.shape[0], -1) if per_channel else x.reshape(1, -1)
    if flat.size == 0:
        raise UsageError("cannot quantize an empty tensor")
    if symmetric:
        qmax = (1 << (bits - 1)) - 1
        amax = np.abs(flat).max(axis=1).astype(np.float64)
        # fp16 rounding first (what the stream stores); nudge up so max|x|/s never exceeds qmax by rounding
        scale = (amax / qmax).astype(np.float16)
        scale = np.where(scale.astype(np.float64) * qmax < amax, np.nextafter(scale, np.float16(np.inf)), scale)
        s = _bcast(scale, x.ndim, per_channel)
        safe = np.where(s > 0, s, np.float32(1.0))
        q = np.clip(np.rint(x / safe), -qmax, qmax).astype(np.int32)
        q = np.where(s > 0, q, 0).astype(np.int32)
        return QTensor(q, scale.astype(np.float16), None, per_channel)
    qmax = (1 << bits) - 1
    lo = flat.min(axis=1).astype(np.float16)
    hi = flat.max(axis=1).astype(np.float64)
    scale = ((hi - lo.astype(np.float64)) / qmax).astype(np.float16)
    m = _bcast(lo, x.ndim, per_channel)
    s = _bcast(scale, x.ndim, per_channel)
    safe = np.where(s > 0, s, np.float32(1.0))
    q = np.clip(np.rint((x - m) / safe), 0, qmax).astype(np.int32)
    q = np.where(s > 0, q, 0).astype(np.int32)
    return QTensor(q, scale, lo, per_channel)


def dequantize(q: np.ndarray, scale: np.ndarray, offset: np.ndarray | None, per_channel: bool) -> np.ndarray:
    """Inverse of :func:`quantize` (float32; the same arithmetic on both sides of the stream)."""
    q = np.asarray(q)
    s = _bcast(np.asarray(scale, dtype=np.float16), q.ndim, per_channel)
    out = q.astype(np.float32) * s
    if offset is not None:
        out = out + _bcast(np.asarray(offset, dtype=np.float16), q.ndim, per_channel)
    return out.astype(np.float32)


def side_info_count(shape: tuple[int, ...], per_channel: bool | None = None) -> int:
    """Number of float16 scales a tensor of ``shape`` carries."""
    if per_channel is None:
        per_channel = choose_axis(shape)
    return shape[0] if per_channel else 1


def scales_to_bytes(arrays: list[np.ndarray]) -> bytes:
    """Concatenate float16 arrays, little-endian."""
    if not arrays:
        return b""
    return np.concatenate([np.asarray(a, dtype=np.float16).reshape(-1) for a in arrays]).astype("<f2").tobytes()


def scales_from_bytes(data: bytes, counts: list[int], what: str = "scales") -> list[np.ndarray]:
    """Split float16 bytes back into arrays of the given lengths (checked)."""
    need = 2 * sum(counts)
    if len(data) != need:
        raise CorruptStreamError(f"{what}: expected {need} bytes, found {len(data)}")
    flat = np.frombuffer(data, dtype="<f2").astype(np.float16)
    if not np.isfinite(flat).all():
        raise CorruptStreamError(f"{what}: non-finite value")
    out, pos = [], 0
    for n in counts:
        out.append(flat[pos : pos + n].copy())
        pos += n
    return out


def global_magnitude_masks(tensors: list[np.ndarray], ratio: float) -> list[np.ndarray]:
    """Boolean keep-masks that zero the ``ratio`` fraction of smallest |values| over all tensors
    together (one global threshold: layers with many small weights lose more)."""
    if not 0.0 <= ratio < 1.0:
        raise UsageError(f"prune ratio must be in [0, 1), got {ratio}")
    if ratio == 0.0 or not tensors:
        return [np.ones(np.shape(t), dtype=bool) for t in tensors]
    mags = np.concatenate([np.abs(np.asarray(t, dtype=np.float32)).reshape(-1) for t in tensors])
    k = int(ratio * mags.size)
    if k == 0:
        return [np.ones(np.shape(t), dtype=bool) for t in tensors]
    threshold = np.partition(mags, k - 1)[k - 1]
    masks = [np.abs(np.asarray(t, dtype=np.float32)) > threshold for t in tensors]
    # ties at the threshold could prune more than asked; that only happens with repeated values
    return masks
