"""The small case of every registered codec: which tiny input it codes and with what parameters.

Why one table: the fuzzer (tests/test_fuzz.py), the house checks (tests/test_house.py), the
hostile CLI pass (tests/test_hostile.py) and the fixture writer (tests/data/fixtures/make.py) each
need a valid file of every codec, and a codec that is registered must get its case in one place,
not four. :data:`CASES` names the input by *source* (``photo``, ``clip``, ``digits``); each user
supplies the sources it codes (arrays from :func:`sources`, or the files it wrote from them) and,
where it needs them, its own inputs or parameters for a codec (:func:`cases`).
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

#: codec -> (input source, encode parameters); :func:`cases` checks that every registered codec has one
CASES: Mapping[str, tuple[str, Mapping[str, Any]]] = MappingProxyType({
    "png": ("photo", {}), "webp": ("photo", {}), "jpeg": ("photo", {"quality": 60}), "jpegxl": ("photo", {}),
    "avif": ("photo", {"quality": 50}),
    "x264": ("clip", {"crf": 30}), "x265": ("clip", {"crf": 30}), "svtav1": ("clip", {"crf": 45}),
    "hnerv": ("clip", {"epochs": 1, "target_params": 3000, "device": "cpu"}),
    "nerv": ("clip", {"epochs": 1, "target_params": 3000, "device": "cpu"}),
    "pc": ("digits", {"model": "mnist"}),
    "ldm": ("photo", {"quality": 2}),
    "kvb": ("digits", {"model": "mnist"}),
})


def sources(scale: int = 1, frames: int = 3, digits: int = 3) -> dict[str, Any]:
    """The real inputs the cases code: a ``32*scale`` square astronaut crop, ``frames`` frames of a
    ``16*scale x 24*scale`` carphone crop and the first ``digits`` MNIST test digits."""
    from neurocodec import datasets

    (_, _), (test_digits, _) = datasets.mnist_5k_split()
    return {
        "photo": datasets.load("astronaut")[100:100 + 32 * scale, 180:180 + 32 * scale],
        "clip": datasets.load("carphone", max_frames=frames)[:, 40:40 + 16 * scale, 60:60 + 24 * scale],
        "digits": test_digits[:digits],
    }


def cases(given: Mapping[str, Any], *, data: Mapping[str, Any] | None = None,
          params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, tuple[Any, dict[str, Any]]]:
    """codec -> (input, parameters) for every registered codec: the input is ``given[source]``
    unless ``data`` has one for the codec; ``params`` are merged over the table's."""
    from neurocodec.codec import _REGISTRY

    assert set(CASES) == set(_REGISTRY), "a codec was registered: give it a small case in tests/cases.py"
    data, params = data or {}, params or {}
    return {codec: (data[codec] if codec in data else given[source], {**base, **params.get(codec, {})})
            for codec, (source, base) in CASES.items()}
