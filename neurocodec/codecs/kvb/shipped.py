"""The model files this wing ships in ``weights/``, pinned to the code by their SHA-256 digests.

Why pinned: a built-in name (``model="mnist"``) must mean exactly the bytes this code was tested
with. Each file is loaded with ``expect_digest``, so an edited or swapped file is refused with one
line instead of silently giving other indices. ``train_default.py`` logs the digests of the files
it writes; after retraining, copy them here.

* ``digits``, ``mnist``: ``model:kvb`` bottlenecks (the codec's built-in models).
* ``conv_ae``: ``model:kvb-encoder``, the letter-trained conv autoencoder behind the ``conv_ae``
  encoder (a bottleneck built on it copies the encoder half into its own file).
"""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from ... import weights
from ...errors import UsageError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SUFFIX = ".ncx"

#: file name (without ``.ncx``) -> SHA-256 hex of its bytes
SHIPPED = MappingProxyType({
    "digits": "c41cfa83c17d7437ccbb15d9d9b6f58cabed7818e910b3109e49b93c952b6bbf",
    "mnist": "ac871682706029dbbcba2d970ec57929d7fd05e05775943a8415530c348f1f76",
    "conv_ae": "18fec8d3d8753ada6e8ea6fced03bd87c01007a059255d42ef9d68bf401a3afd",
})
#: the shipped files that are bottlenecks (built-in models of the ``kvb`` codec)
MODELS = ("digits", "mnist")


def shipped_path(name: str) -> Path:
    """Where the shipped file ``name`` lies (whether or not it exists)."""
    if name not in SHIPPED:
        raise UsageError(f"no shipped kvb file '{name}' (shipped: {', '.join(sorted(SHIPPED))})")
    return WEIGHTS_DIR / f"{name}{SUFFIX}"


def load_shipped(name: str, kind: str, versions: tuple[int, int]) -> weights.ModelFile:
    """The shipped model file ``name``, refused unless its bytes hash to the recorded digest."""
    return weights.load(shipped_path(name), kind=kind, versions=versions, expect_digest=SHIPPED[name])
