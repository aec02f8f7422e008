"""What the bottleneck accepts as samples and labels, checked once at the door.

Why a module of its own: the model, the training code and the codec all take user data (numpy
arrays, torch tensors, nested lists, ``uint8`` images or floats), and each must refuse the same
bad inputs with the same one-line :class:`~neurocodec.errors.InputError` instead of failing deep
inside a matrix product.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...errors import InputError


def as_batch(x: Any, what: str = "x") -> torch.Tensor:
    """numpy array / torch tensor / nested list -> float32 tensor ``N, ...`` (on the device it was on).

    ``uint8`` images are scaled to 0..1; anything non-numeric, empty, 1-D or non-finite is refused.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise InputError(f"{what} is not an array ({exc})") from None
        if arr.dtype.kind not in "biuf":
            raise InputError(f"{what} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise InputError(f"{what} must be real")
    if t.ndim < 2:
        raise InputError(f"{what} must be a batch (N, ...) with at least 2 dimensions, got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.numel() == 0:
        raise InputError(f"{what} is empty (shape {tuple(t.shape)})")
    scale = 1 / 255 if t.dtype == torch.uint8 else 1.0
    t = t.float() * scale if t.dtype != torch.float32 else t
    if not torch.isfinite(t).all():
        raise InputError(f"{what} holds NaN or infinite values")
    return t


def as_labels(y: Any, n: int, num_classes: int) -> torch.Tensor:
    """Integer class ids ``0..num_classes-1`` for ``n`` samples -> int64 CPU tensor ``(n,)``.

    Integral floats (``3.0``) are accepted, as label files written by other tools often hold them."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"labels must be integers, got dtype {arr.dtype}")
    arr = arr.reshape(-1).astype(np.int64)
    if arr.size != n:
        raise InputError(f"got {arr.size} labels for {n} samples")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise InputError(
            f"labels must lie in 0..{num_classes - 1} (value_dim={num_classes}), got {arr.min()}..{arr.max()}"
        )
    return torch.from_numpy(arr)
