"""The ``Codec`` base class and the name -> class registry.

A codec is found by the *name* stored in each file, never by a position in a list. The registry is
an immutable mapping from name to ``"module:Class"``; modules are imported only when their codec is
used, so ``png`` never imports torch.
"""
from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from . import container as ncx
from .errors import MissingDependencyError, UnknownCodecError, UnsupportedVersionError, UsageError
from .params import Param

# name -> "module:Class". One line per codec; the name is written into every file it makes.
_REGISTRY: Mapping[str, str] = MappingProxyType(
    {
        # classical baselines, so every comparison counts bits the same way
        "png": "neurocodec.codecs.classical:PNGCodec",
        "webp": "neurocodec.codecs.classical:WebPCodec",
        "jpeg": "neurocodec.codecs.classical:JPEGCodec",
        "jpegxl": "neurocodec.codecs.classical:JPEGXLCodec",
        "x264": "neurocodec.codecs.classical:X264Codec",
        "x265": "neurocodec.codecs.classical:X265Codec",
        "svtav1": "neurocodec.codecs.classical:SVTAV1Codec",
        # neural codecs
        "hnerv": "neurocodec.codecs.hnerv.codec:HNeRVCodec",
        "nerv": "neurocodec.codecs.hnerv.codec:NeRVCodec",
        "pc": "neurocodec.codecs.pc.codec:PCCodec",
        "ldm": "neurocodec.codecs.ldm.codec:LDMCodec",
        "kvb": "neurocodec.codecs.kvb.codec:KVBCodec",
    }
)


@dataclass(frozen=True)
class Encoded:
    """What :meth:`Codec.encode_with_report` returns: the complete ``.ncx`` bytes and the codec's
    report of how it got there (training statistics, chosen settings, warnings). The report is
    never part of the bitstream, so it may hold wall-clock times without breaking reproducibility."""

    blob: bytes
    report: Mapping[str, Any] = field(default_factory=dict)


class Codec(ABC):
    """Base of every codec.

    Subclasses set ``name``, ``version`` (an int, bumped whenever the bitstream changes), ``kind``
    (``"image"``, ``"video"`` or ``"representation"``) and ``description``, and implement

    * ``compress(data, *, progress, **params) -> (header: dict, sections: dict[str, bytes])``, or
      ``(header, sections, report: dict)`` for a codec with something to tell (a training run)
    * ``decompress(header, sections, **options) -> data``

    ``encode``/``decode`` wrap those in the ``.ncx`` container. A codec instance holds no state
    between calls: everything an encode learns goes into its bitstream or its report. The header should hold ``shape``
    and ``dtype`` of the data that ``decode`` returns, so ``info`` can report bpp/bpd.
    ``fit`` is implemented by codecs that learn.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    kind: ClassVar[str] = "image"
    description: ClassVar[str] = ""
    #: oldest bitstream version this decoder still reads
    min_version: ClassVar[int] = 1
    #: encode parameters and decode options, declared once (:mod:`neurocodec.params`); a codec
    #: that declares them decorates ``compress``/``decompress`` with ``@declared(...)``. ``None``:
    #: not declared yet, keyword names are checked against the method's signature instead.
    params: ClassVar[tuple[Param, ...] | None] = None
    options: ClassVar[tuple[Param, ...] | None] = None

    # -- to implement -------------------------------------------------------------------------------
    @abstractmethod
    def compress(self, data: Any, *, progress: bool = False, **params: Any) -> tuple[dict, dict[str, bytes]]:
        """Turn data into a JSON-able header and named binary sections."""

    @abstractmethod
    def decompress(self, header: dict, sections: Mapping[str, bytes], **options: Any) -> Any:
        """Inverse of :meth:`compress`."""

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        raise UsageError(f"codec '{self.name}' does not learn: it has no fit()")

    # -- public API ---------------------------------------------------------------------------------
    def encode(self, data: Any, *, progress: bool = False, **params: Any) -> bytes:
        """Encode ``data`` into a complete ``.ncx`` byte string."""
        return self.encode_with_report(data, progress=progress, **params).blob

    def encode_with_report(self, data: Any, *, progress: bool = False, **params: Any) -> Encoded:
        """Encode ``data``; return the ``.ncx`` bytes together with the codec's report."""
        _check_params(self.compress, params, f"codec '{self.name}'", "parameter")
        out = self.compress(data, progress=progress, **params)
        header, sections = out[0], out[1]
        report = dict(out[2]) if len(out) > 2 else {}
        return Encoded(ncx.pack(ncx.Container(self.name, self.version, header, sections)), report)

    def decode(self, blob: bytes | ncx.Container, **options: Any) -> Any:
        """Decode an ``.ncx`` byte string (or parsed container) written by this codec."""
        box = blob if isinstance(blob, ncx.Container) else ncx.unpack(blob)
        if box.codec != self.name:
            raise UsageError(f"this is a '{box.codec}' stream, not '{self.name}'")
        self.check_version(box.codec_version)
        _check_params(self.decompress, options, f"codec '{self.name}'", "decode option")
        return self.decompress(box.header, box.sections, **options)

    @classmethod
    def check_version(cls, version: int) -> None:
        if not cls.min_version <= version <= cls.version:
            raise UnsupportedVersionError(
                f"{cls.name} bitstream version {version} is not supported "
                f"(this neurocodec reads versions {cls.min_version}..{cls.version})"
            )


def _check_params(func: Any, given: Mapping[str, Any], owner: str, what: str) -> None:
    """Reject unknown keyword arguments with a message listing the accepted ones (for methods
    without declarations; declared ones validate themselves)."""
    if getattr(func, "__neurocodec_declared__", None):
        return
    sig = inspect.signature(func)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = [
        n for n, p in sig.parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in ("self", "data", "header", "sections", "progress")
    ]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise UsageError(
            f"{owner} has no {what} {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted) or 'none'}"
        )


def _load(name: str) -> type[Codec]:
    target = _REGISTRY[name]
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing.startswith("neurocodec"):
            raise UnknownCodecError(f"codec '{name}' is not available in this build ({exc})") from None
        raise MissingDependencyError(missing.split(".")[0], purpose=f"codec '{name}'") from None
    return getattr(module, class_name)


def get_codec(name: str) -> type[Codec]:
    """The codec class registered under ``name``."""
    if name not in _REGISTRY:
        raise UnknownCodecError(f"unknown codec '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    return _load(name)


def list_codecs() -> dict[str, type[Codec]]:
    """Every codec that can be loaded here, by name (codecs whose dependencies are missing are left out)."""
    found: dict[str, type[Codec]] = {}
    for name in _REGISTRY:
        try:
            found[name] = _load(name)
        except (UnknownCodecError, MissingDependencyError):
            continue
    return found


def encode(data: Any, codec: str, *, progress: bool = False, **params: Any) -> bytes:
    """Encode ``data`` with the named codec into ``.ncx`` bytes."""
    return get_codec(codec)().encode(data, progress=progress, **params)


def encode_with_report(data: Any, codec: str, *, progress: bool = False, **params: Any) -> Encoded:
    """Encode ``data`` with the named codec; return the bytes and the codec's report."""
    return get_codec(codec)().encode_with_report(data, progress=progress, **params)


def decode(blob: bytes, **options: Any) -> Any:
    """Decode any ``.ncx`` byte string: the codec is read from the file."""
    box = ncx.unpack(blob)
    return get_codec(box.codec)().decode(box, **options)
