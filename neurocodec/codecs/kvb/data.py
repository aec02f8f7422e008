"""The sklearn digits split used by the kvb benchmark and default model (MNIST uses
``datasets.mnist_5k_split()``)."""
from __future__ import annotations

import numpy as np

from ...errors import MissingDependencyError


def digits_split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """sklearn's 1,797 8x8 digits (values 0..16, float64 -> float32 ``N,8,8``).

    ``perm = default_rng(0).permutation(1797)``; test = for each class the first 36 indices of
    ``perm`` with that label (360 images); train = the other 1,437 (in ``perm`` order).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError("scikit-learn", purpose="the sklearn digits data") from None
    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 8, 8).astype(np.float32)
    y = y.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    test = np.concatenate([perm[y[perm] == c][:36] for c in range(10)])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test] = True
    train = perm[~is_test[perm]]
    return (x[train], y[train]), (x[test], y[test])
