"""Shared fixtures: small real data, never network."""
from __future__ import annotations

import os

import numpy as np
import pytest

# Threaded BLAS makes small numpy work slower on these 2-core machines.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def carphone_small() -> np.ndarray:
    from neurocodec import datasets

    return datasets.load("carphone", max_frames=6)[:, :48, :64].copy()


@pytest.fixture(scope="session")
def photo_small() -> np.ndarray:
    from neurocodec import datasets

    return datasets.load("chelsea")[:64, :80].copy()


@pytest.fixture(scope="session")
def mnist_small() -> np.ndarray:
    from neurocodec import datasets

    (_, _), (x_test, _) = datasets.mnist_5k_split()
    return x_test[:16]
