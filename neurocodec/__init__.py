"""neurocodec: neural compression and neural representation codecs behind one API.

>>> import neurocodec
>>> blob = neurocodec.encode(image, codec="png")
>>> neurocodec.decode(blob)
>>> m = neurocodec.measure(image, codec="jpeg", quality=80)  # blob + bytes, bpp, PSNR, MS-SSIM, times
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from . import errors
from .codec import (Codec, CodecInfo, Encoded, Measured, decode, describe_codec, describe_codecs, encode,
                    encode_with_report, get_codec, list_codecs, measure)
from .container import Container

try:
    __version__ = _version("neurocodec")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["Codec", "CodecInfo", "Container", "Encoded", "Measured", "decode", "describe_codec", "describe_codecs",
           "encode", "encode_with_report", "errors", "get_codec", "list_codecs", "measure", "__version__"]
