"""neurocodec: neural compression and neural representation codecs behind one API.

>>> import neurocodec
>>> blob = neurocodec.encode(image, codec="png")
>>> neurocodec.decode(blob)
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from . import errors
from .codec import Codec, Encoded, decode, encode, encode_with_report, get_codec, list_codecs
from .container import Container

try:
    __version__ = _version("neurocodec")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["Codec", "Container", "Encoded", "decode", "encode", "encode_with_report", "errors", "get_codec", "list_codecs", "__version__"]
