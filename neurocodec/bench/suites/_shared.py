"""What every suite parses and loads the same way: its argument parser, ``--codecs`` lists, the
photos behind ``--data`` (sample names, image files or folders of images), and a torch thread
count that is put back afterwards (a suite runs inside the caller's process, so it must not leave a
process-wide setting changed)."""
from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ...errors import InputError, UsageError
from ...runtime import threads


class SuiteParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of exiting: a suite runs in the caller's
    process (``neurocodec bench``), so a bad option is an error the CLI reports, not a SystemExit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def parser(suite: str, description: str | None) -> SuiteParser:
    return SuiteParser(prog=f"neurocodec bench {suite}", description=description,
                       formatter_class=argparse.RawDescriptionHelpFormatter)


def split_names(values: Iterable[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (``--codecs jpeg,webp`` and ``--codecs jpeg webp``
    mean the same); None stays None (= the suite's default)."""
    if values is None:
        return None
    return [v for item in values for v in item.split(",") if v]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (None: leave it), then restore the previous count."""
    if n is None:
        yield
        return
    with threads(n):
        yield


def to_rgb(img: np.ndarray) -> np.ndarray:
    """``H,W[,C]`` uint8 -> ``H,W,3`` (grey repeated, alpha dropped): the lossy suites compare RGB."""
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size x size`` crop (smaller sides kept whole)."""
    h, w = img.shape[:2]
    ch, cw = min(size, h), min(size, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[y : y + ch, x : x + cw])


def load_photos(items: Iterable[str]) -> tuple[str | None, dict[str, np.ndarray]]:
    """``--data`` of the photo suites: each item a sample photo name (``datasets.load``), an image
    file, or a folder of images (every image file in it, sorted by name).

    Returns ``(label, {name: image})``: ``label`` is None when every item is a sample name (the
    suite keeps its own dataset name, e.g. ``held_out``), else the name of the one folder or file
    given, or ``custom`` for several; it names the results folder of the run.
    """
    from ... import datasets
    from ...io import IMAGE_EXTENSIONS, read_image

    items = list(items)
    photos: dict[str, np.ndarray] = {}
    user: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise InputError(f"folder {p} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            for f in files:
                photos[_unique(photos, f.stem)] = read_image(f)
            user.append(p)
        elif p.suffix.lower() in IMAGE_EXTENSIONS or p.exists():
            photos[_unique(photos, p.stem)] = read_image(p)
            user.append(p)
        else:
            photos[_unique(photos, item)] = datasets.load(item)
    if not photos:
        raise UsageError("--data: no photos given")
    if not user:
        return None, photos
    label = (user[0].resolve().name or "custom") if len(items) == 1 else "custom"
    return label, photos


def _unique(taken: dict, name: str) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}-{i}", i + 1
    return out
