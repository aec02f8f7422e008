"""The ``Codec`` base class and the name -> class registry.

A codec is found by the *name* stored in each file, never by a position in a list. The registry is
an immutable mapping from name to ``"module:Class"``; modules are imported only when their codec is
used, so ``png`` never imports torch.
"""
from __future__ import annotations

import builtins as _builtins  # the Measured field ``bytes`` shadows the builtin
import functools
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
from .schema import LIMIT_OPTIONS, Schema

# name -> "module:Class". One line per codec; the name is written into every file it makes.
_REGISTRY: Mapping[str, str] = MappingProxyType(
    {
        # classical baselines, so every comparison counts bits the same way
        "png": "neurocodec.codecs.classical:PNGCodec",
        "webp": "neurocodec.codecs.classical:WebPCodec",
        "jpeg": "neurocodec.codecs.classical:JPEGCodec",
        "jpegxl": "neurocodec.codecs.classical:JPEGXLCodec",
        "avif": "neurocodec.codecs.classical:AVIFCodec",
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

    ``encode``/``decode`` wrap those in the ``.ncx`` container. Every subclass's ``decompress``
    is gated (:meth:`__init_subclass__`): its body runs only after :meth:`check_header` has
    passed, whether :meth:`decode` or a caller with a header of its own calls it, and it receives
    the checked header. A codec instance holds no state between calls: everything an encode
    learns goes into its bitstream or its report. The header should hold ``shape`` and ``dtype``
    of the data that ``decode`` returns, so ``info`` can report bpp/bpd.
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Gate the ``decompress`` a subclass defines (see :func:`_gated`); an inherited one is
        gated already. (An override calling ``super().decompress`` would be checked twice:
        harmless, and no codec does.)"""
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("decompress")
        if method is not None and not getattr(method, "__neurocodec_gated__", False):
            cls.decompress = _gated(method)  # type: ignore[method-assign]

    # -- to implement -------------------------------------------------------------------------------
    @abstractmethod
    def compress(self, data: Any, *, progress: bool = False, **params: Any) -> tuple[dict, dict[str, bytes]]:
        """Turn data into a JSON-able header and named binary sections."""

    @abstractmethod
    def decompress(self, header: dict, sections: Mapping[str, bytes], **options: Any) -> Any:
        """Inverse of :meth:`compress`. ``header`` has passed :meth:`check_header` (under the
        ``max_values`` / ``max_work`` in ``options``) before the body runs."""

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        raise UsageError(f"codec '{self.name}' does not learn: it has no fit()")

    @classmethod
    def schema(cls) -> Schema | None:
        """The header schema (:mod:`neurocodec.schema`) that :meth:`decode` checks every file
        against before :meth:`decompress` runs: field types and ranges, sections, consistency, the
        decoded-size limit and, where header fields drive it, the decoding-work limit. A codec whose
        header differs between bitstream versions covers them all in one schema (its ``checks``).
        ``None``: no schema (every registered codec declares one; ``tests/test_fuzz.py`` checks)."""
        return None

    @classmethod
    def full_header(cls, header: Mapping[str, Any]) -> Mapping[str, Any]:
        """The header with every field its compact form leaves implied (``shape`` above all), for
        readers such as ``neurocodec info``; the header itself for codecs without a compact form."""
        return header

    @classmethod
    def check_header(cls, header: Any, sections: Mapping[str, bytes], options: Mapping[str, Any] | None = None
                     ) -> dict:
        """The one decode-time gate, run before every ``decompress`` body (:func:`_gated`): validate
        ``header`` and ``sections`` against :meth:`schema`
        under the limits in force (the ``max_values`` / ``max_work`` decode options in ``options``,
        else their environment variables, else the defaults). Raises a ``CorruptStreamError``
        naming the field, or an ``InputError`` for a claim above a limit; nothing is allocated or
        run before it passes."""
        schema = cls.schema()
        if schema is None:
            return dict(header)
        limits: dict[str, Any] = {}
        declared = {p.name: p for p in (cls.options or ())}
        for name, make in LIMIT_OPTIONS.items():
            value = (options or {}).get(name)
            if value is not None:  # the CLI hands strings: convert as the declaration says
                value = declared.get(name, make()).convert(value, f"codec '{cls.name}'")
            limits[name] = value
        return schema.check(header, sections, **limits)

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
        # decompress is gated: check_header runs before it allocates or runs anything
        return self.decompress(box.header, box.sections, **options)

    @classmethod
    def check_version(cls, version: int) -> None:
        if not cls.min_version <= version <= cls.version:
            raise UnsupportedVersionError(
                f"{cls.name} bitstream version {version} is not supported "
                f"(this neurocodec reads versions {cls.min_version}..{cls.version})"
            )


def _gated(method: Any) -> Any:
    """``method`` (a codec's ``decompress``) behind :meth:`Codec.check_header`: the header is
    checked once, under the limits the call's options ask for, and the checked header is what the
    body receives. Why here and not in :meth:`Codec.decode`: ``decompress`` is public, and a
    header handed to it directly must meet the same gate as one read from a file."""
    @functools.wraps(method)
    def decompress(self: Codec, header: Any, sections: Mapping[str, bytes], *args: Any, **options: Any) -> Any:
        checked = type(self).check_header(header, sections, options)
        return method(self, checked, sections, *args, **options)

    decompress.__neurocodec_gated__ = True  # type: ignore[attr-defined]
    return decompress


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


# ------------------------------------------------------------------------- light descriptions
@dataclass(frozen=True)
class CodecInfo:
    """What ``neurocodec codecs`` lists about a codec, read without importing its module."""

    name: str
    kind: str
    version: int
    description: str


_BASE_INFO = {"kind": "image", "description": ""}  # Codec's own defaults
_UNKNOWN = object()


def _module_file(module_name: str) -> Any:
    """The source file of a ``neurocodec.*`` module, found without importing its package (a
    wing's ``__init__`` may import torch)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent
    parts = module_name.split(".")[1:]
    path = root.joinpath(*parts)
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _static_info(name: str) -> CodecInfo | None:
    """``name``/``version``/``kind``/``description`` of a registered class, read from its module's
    source with :mod:`ast` (following base classes defined in the same module). ``None`` when a
    value is not a plain literal there: the caller then imports the module."""
    import ast

    module_name, class_name = _REGISTRY[name].split(":")
    path = _module_file(module_name)
    if path is None:
        return None
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    wanted = ("name", "version", "kind", "description")
    found: dict[str, Any] = {}

    def visit(cls_name: str, depth: int) -> bool:
        node = classes.get(cls_name)
        if node is None or depth > 10:
            return False
        for stmt in node.body:
            targets = []
            if isinstance(stmt, ast.Assign):
                targets = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
                value = stmt.value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                targets, value = [stmt.target.id], stmt.value
            for target in targets:
                if target in wanted and target not in found:
                    try:
                        found[target] = ast.literal_eval(value)
                    except ValueError:
                        found[target] = _UNKNOWN
        for base in node.bases:
            if all(k in found for k in wanted):
                break
            if isinstance(base, ast.Name) and base.id == "Codec":
                for k, v in _BASE_INFO.items():
                    found.setdefault(k, v)
            elif isinstance(base, ast.Name) and not visit(base.id, depth + 1):
                return False
        return True

    if not visit(class_name, 0) or any(found.get(k, _UNKNOWN) is _UNKNOWN for k in wanted):
        return None
    if found["name"] != name or not isinstance(found["version"], int):
        return None
    return CodecInfo(name, str(found["kind"]), int(found["version"]), str(found["description"]))


def describe_codec(name: str) -> CodecInfo:
    """A codec's name, kind, bitstream version and description, without importing its module
    where its source states them as literals (so ``neurocodec codecs`` and ``info`` do not pay
    for torch); otherwise the class is imported and asked."""
    if name not in _REGISTRY:
        raise UnknownCodecError(f"unknown codec '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    info = _static_info(name)
    if info is not None:
        return info
    cls = _load(name)
    return CodecInfo(cls.name, cls.kind, int(cls.version), cls.description)


def describe_codecs() -> dict[str, CodecInfo]:
    """:func:`describe_codec` of every registered codec whose module is part of this build.
    Unlike :func:`list_codecs` this does not check that a codec's dependencies import."""
    found: dict[str, CodecInfo] = {}
    for name, target in _REGISTRY.items():
        if _module_file(target.split(":")[0]) is None:
            continue
        try:
            found[name] = describe_codec(name)
        except (UnknownCodecError, MissingDependencyError):
            continue
    return found


# ------------------------------------------------------------------------------- measurements
@dataclass(frozen=True)
class Measured:
    """An encode with its measurements (:func:`measure`): the ``.ncx`` blob, the codec's report,
    the file size, rate (``bpp`` for images and videos, ``bpd`` always), distortion (``psnr`` in
    dB over RGB, ``ms_ssim`` for images, ``psnr_yuv`` for videos: 4:2:0 BT.601, 6:1:1 weighted),
    ``lossless`` (decoded data equals the input) and wall-clock ``encode_s``/``decode_s``.
    Distortion is ``None`` where it has no meaning (a representation codec, or a decode whose
    shape differs from the input); ``psnr`` is ``inf`` for a lossless result."""

    blob: _builtins.bytes
    report: Mapping[str, Any]
    bytes: int
    bpp: float | None
    bpd: float | None
    psnr: float | None
    ms_ssim: float | None
    psnr_yuv: float | None
    lossless: bool | None
    encode_s: float
    decode_s: float | None
    codec: str = ""

    def to_json(self) -> dict[str, Any]:
        """Everything but the blob and the report, JSON-safe (``inf`` becomes ``null`` with
        ``lossless: true`` saying why)."""
        import math

        out: dict[str, Any] = {}
        for key in ("codec", "bytes", "bpp", "bpd", "psnr", "ms_ssim", "psnr_yuv", "lossless", "encode_s", "decode_s"):
            value = getattr(self, key)
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        return out


def measure_decoded(codec: Codec, data: Any, encoded: Encoded, *, encode_s: float, decoded: Any = None,
                    decode_s: float | None = None, params: Mapping[str, Any] | None = None) -> Measured:
    """Measure an encode whose decode is ``decoded`` (decoded here when not given). Encode
    ``params`` that the codec also declares as decode options (a user model file) are passed to
    that decode."""
    import time

    import numpy as np

    from . import metrics

    blob = encoded.blob
    shape = tuple(getattr(data, "shape", ()) or ())
    nbytes = len(blob)
    bpp_v = bpd_v = psnr_v = ms = yuv = None
    lossless: bool | None = None
    if shape:
        bpd_v = metrics.bpd(nbytes, shape)
    if codec.kind in ("image", "video") and len(shape) >= 2:
        bpp_v = metrics.bpp(nbytes, shape)
        if decoded is None:
            start = time.perf_counter()
            names = {p.name for p in (codec.options or ())}
            decoded = codec.decode(blob, **{k: v for k, v in (params or {}).items() if k in names})
            decode_s = time.perf_counter() - start
        recon = np.asarray(decoded) if not hasattr(decoded, "_asdict") else None
        ref = np.asarray(data)
        if recon is not None and recon.shape == ref.shape:
            lossless = bool(np.array_equal(recon, ref))
            if lossless:
                psnr_v = float("inf")
            elif codec.kind == "video" and ref.ndim == 4:
                psnr_v = metrics.video_psnr(ref, recon)
            else:
                psnr_v = metrics.psnr(ref, recon)
            if not lossless:
                is_video = codec.kind == "video" and ref.ndim == 4
                if not is_video and ref.ndim in (2, 3) and min(ref.shape[:2]) >= 2:
                    ms = metrics.ms_ssim(ref, recon)
                if ref.ndim == 4 and ref.shape[-1] == 3 and ref.shape[1] % 2 == 0 and ref.shape[2] % 2 == 0:
                    yuv = metrics.psnr_yuv(ref, recon)
    return Measured(blob, encoded.report, nbytes, bpp_v, bpd_v, psnr_v, ms, yuv, lossless, encode_s, decode_s, codec.name)


def measure(data: Any, codec: str, *, progress: bool = False, **params: Any) -> Measured:
    """Encode ``data`` with the named codec, decode it once and measure: the one call a pipeline
    needs instead of recomputing bpp and PSNR itself. Lossless results are checked for equality."""
    import time

    instance = get_codec(codec)()
    start = time.perf_counter()
    encoded = instance.encode_with_report(data, progress=progress, **params)
    encode_s = time.perf_counter() - start
    return measure_decoded(instance, data, encoded, encode_s=encode_s, params=params)
