"""Discrete key-value bottleneck (issue 6): class-incremental learning without forgetting, and
its key indices as a compressed representation (codec ``kvb``).

Rooms: ``model.py`` (the :class:`KVBottleneck` object, its model file and digest), ``train.py``
(key initialisation and value training; decode never imports it), ``codec.py`` (the bitstream),
``cli.py`` (``neurocodec kvb ...``), ``encoders.py`` (frozen feature extractors), ``search.py``
(blocked nearest-key search), ``inputs.py`` (input checks), ``shipped.py`` (the shipped model
files and their digests), ``baselines.py`` and ``data.py`` (benchmark helpers),
``train_default.py`` (trains the shipped files).
"""
from .encoders import ConvAEEncoder, IdentityEncoder, PCAEncoder, RandomReLUEncoder, make_encoder
from .model import KVBottleneck, Lookup
from .shipped import SHIPPED

__all__ = [
    "ConvAEEncoder",
    "IdentityEncoder",
    "KVBottleneck",
    "Lookup",
    "PCAEncoder",
    "RandomReLUEncoder",
    "SHIPPED",
    "make_encoder",
]
