"""Discrete key-value bottleneck (issue 6): class-incremental learning without forgetting, and
its key indices as a compressed representation (codec ``kvb``)."""
from .bottleneck import KVBottleneck, Lookup
from .encoders import ConvAEEncoder, IdentityEncoder, PCAEncoder, RandomReLUEncoder, make_encoder

__all__ = [
    "ConvAEEncoder",
    "IdentityEncoder",
    "KVBottleneck",
    "Lookup",
    "PCAEncoder",
    "RandomReLUEncoder",
    "make_encoder",
]
