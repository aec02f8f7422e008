"""Classical baselines behind the same ``Codec`` API, so every comparison counts bits the same
way (whole ``.ncx`` file, header included).

* images: ``png`` (Pillow, level 9), ``webp`` (lossless or lossy), ``jpeg`` (Pillow/libjpeg),
  ``jpegxl`` (imagecodecs/libjxl). A batch ``N,H,W[,C]`` becomes one section per image.
* video: ``x264``, ``x265``, ``svtav1`` through the ffmpeg binary that imageio-ffmpeg ships. The
  section holds the raw elementary stream (Annex-B H.264/HEVC, AV1 OBUs): no mp4 overhead is
  counted against the baselines. Frames are converted to YUV 4:2:0 (BT.601, as ffmpeg does by
  default); odd sizes are edge-padded and cropped after decoding.
"""
from __future__ import annotations

import io as _io
import math
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from ..codec import Codec
from ..errors import CorruptStreamError, ExternalToolError, InputError, MissingDependencyError
from ..io import check_image, check_video
from ..params import Param, declared
from ..schema import Field, Schema, max_values_option

#: largest image side / frame side / frame count a header may claim (the decoded-size limit of
#: :mod:`neurocodec.schema` bounds their product; this bounds each one, so no product overflows)
_MAX_SIDE = 1 << 20
_MAX_BATCH = 1 << 16


def image_schema(name: str, channels: tuple[int, ...], **extra_fields: Field) -> Schema:
    """Header of the image baselines (version 1): ``shape`` ``H,W[,C]`` or, with ``batch``,
    ``N,H,W[,C]``; ``dtype`` uint8; one section per image named ``0..N-1``."""

    def layout(h: dict, sections: Mapping[str, bytes]) -> str | None:
        shape, batch = h["shape"], h["batch"]
        if batch and len(shape) not in (3, 4):
            return f"a batch shape must be N,H,W[,C], got {shape}"
        if not batch and len(shape) not in (2, 3):
            return f"an image shape must be H,W[,C], got {shape}"
        if batch and shape[0] > _MAX_BATCH:
            return f"a batch of {shape[0]} images is more than {_MAX_BATCH}"
        if len(shape) == (4 if batch else 3) and shape[-1] not in channels:
            return f"{shape[-1]} channels in shape {shape}; {name} codes {', '.join(map(str, channels))}"
        count = shape[0] if batch else 1
        if sorted(sections) != sorted(str(i) for i in range(count)):
            return f"shape {shape} means {count} image section(s) named 0..{count - 1}, stream has {len(sections)}"
        return None

    return Schema(
        name,
        fields={"shape": Field("ints", length=(2, 4), lo=1, hi=_MAX_SIDE), "dtype": Field("str", choices=("uint8",)),
                "batch": Field("bool"), **extra_fields},
        section_pattern=r"0|[1-9][0-9]{0,5}",
        min_section_bytes=1,
        checks=(layout,),
        decoded=lambda h: math.prod(h["shape"]),
    )


# ---------------------------------------------------------------------------------- images
class _ImageCodec(Codec):
    """One image ``H,W[,C]`` or a batch ``N,H,W[,C]``; one section per image."""

    kind: ClassVar[str] = "image"
    version: ClassVar[int] = 1
    channels: ClassVar[tuple[int, ...]] = (1, 3, 4)

    def _encode_one(self, image: np.ndarray, **params: Any) -> bytes:
        raise NotImplementedError

    def _decode_one(self, payload: bytes, hw: tuple[int, int]) -> np.ndarray:
        """Decode one image whose header says it is ``hw`` = (height, width): a payload that
        claims another size is refused before its pixels are decoded."""
        raise NotImplementedError

    def _images(self, data: Any) -> tuple[list[np.ndarray], bool]:
        arr = np.asarray(data)
        batch = arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4))
        images = [check_image(im) for im in arr] if batch else [check_image(arr)]
        for im in images:
            c = 1 if im.ndim == 2 else im.shape[2]
            if c not in self.channels:
                raise InputError(f"{self.name} does not take {c}-channel images")
        return images, batch

    def _compress_images(self, data: Any, **params: Any) -> tuple[dict, dict[str, bytes]]:
        images, batch = self._images(data)
        sections = {str(i): self._encode_one(im, **params) for i, im in enumerate(images)}
        header = {"shape": list(np.shape(data)), "dtype": "uint8", "batch": batch}
        return header, sections

    params: ClassVar[tuple[Param, ...]] = ()
    options: ClassVar[tuple[Param, ...]] = (max_values_option(),)

    @classmethod
    def schema(cls) -> Schema:
        return image_schema(cls.name, cls.channels)

    @declared("options")
    def decompress(self, header: dict, sections: Mapping[str, bytes], *, max_values: int | None) -> np.ndarray:
        # the header passed schema() under max_values at the decompress gate (Codec.check_header)
        return self._decompress_checked(header, sections)

    def _decompress_checked(self, header: dict, sections: Mapping[str, bytes]) -> np.ndarray:
        shape = tuple(header["shape"])
        batch = header["batch"]
        count = shape[0] if batch else 1
        hw = shape[1:3] if batch else shape[:2]
        images = []
        for i in range(count):
            try:
                images.append(self._decode_one(sections[str(i)], hw))
            except (OSError, ValueError, RuntimeError, EOFError, SyntaxError) as exc:
                raise CorruptStreamError(f"{self.name}: image {i} does not decode ({exc})") from None
        if len({im.shape for im in images}) != 1:
            raise CorruptStreamError(f"{self.name}: the images of the batch decode to different shapes")
        out = np.stack(images) if batch else images[0]
        if out.shape != shape:
            out = out.reshape(shape) if out.size == int(np.prod(shape)) else out
        if out.shape != shape:
            raise CorruptStreamError(f"{self.name}: decoded shape {out.shape} != header shape {shape}")
        return out


def _pil_decode(payload: bytes, hw: tuple[int, int], fmt: str) -> np.ndarray:
    """Decode with Pillow after checking the format and the size the payload declares against the
    header (``Image.open`` reads only the image's own header), so a small payload that claims a
    huge image is refused before any pixel is decoded."""
    from PIL import Image

    try:
        img = Image.open(_io.BytesIO(payload), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise CorruptStreamError(f"{fmt} payload claims a huge image ({exc})") from None
    with img:
        if (img.height, img.width) != tuple(hw):
            raise CorruptStreamError(f"{fmt} payload is {img.height}x{img.width}, the header says {hw[0]}x{hw[1]}")
        return np.asarray(img).copy()


def _pil_save(image: np.ndarray, fmt: str, **kwargs: Any) -> bytes:
    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


class PNGCodec(_ImageCodec):
    name = "png"
    description = "PNG, lossless (Pillow, zlib level 9 with optimize)"

    @declared()
    def compress(self, data: Any, *, progress: bool = False) -> tuple[dict, dict[str, bytes]]:
        return self._compress_images(data)

    def _encode_one(self, image: np.ndarray) -> bytes:
        return _pil_save(image, "PNG", optimize=True, compress_level=9)

    def _decode_one(self, payload: bytes, hw: tuple[int, int]) -> np.ndarray:
        return _pil_decode(payload, hw, "PNG")


class WebPCodec(_ImageCodec):
    name = "webp"
    description = "WebP (libwebp via Pillow): lossless by default, lossy with quality=0..100"
    channels = (1, 3, 4)

    params = (
        Param("quality", "int", None, "lossy quality (higher is better); none = lossless", lo=0, hi=100, nullable=True),
        Param("method", "int", 6, "encoder effort (6 = slowest, smallest)", lo=0, hi=6),
    )

    @declared()
    def compress(self, data: Any, *, progress: bool = False, quality: int | None, method: int) -> tuple[dict, dict[str, bytes]]:
        header, sections = self._compress_images(data, quality=quality, method=method)
        header["lossless"] = quality is None
        return header, sections

    def _encode_one(self, image: np.ndarray, quality: int | None, method: int) -> bytes:
        if quality is None:
            return _pil_save(image, "WEBP", lossless=True, quality=100, method=method, exact=True)
        return _pil_save(image, "WEBP", quality=int(quality), method=method)

    def _decode_one(self, payload: bytes, hw: tuple[int, int]) -> np.ndarray:
        return _pil_decode(payload, hw, "WEBP")

    @classmethod
    def schema(cls) -> Schema:
        return image_schema(cls.name, cls.channels, lossless=Field("bool", required=False))

    def _decompress_checked(self, header: dict, sections: Mapping[str, bytes]) -> np.ndarray:
        shape = tuple(header["shape"])
        out = super()._decompress_checked({**header, "shape": list(_pil_shape(shape, header["batch"]))}, sections)
        # WebP always decodes to RGB(A): grey inputs come back as one channel again
        if len(shape) == out.ndim - 1 or (out.shape[-1] == 3 and shape[-1] != 3):
            out = out[..., 0] if len(shape) == out.ndim - 1 else out[..., :1]
        return out.reshape(shape)


def _pil_shape(shape: tuple[int, ...], batch: bool) -> tuple[int, ...]:
    """Shape WebP decodes to: grey -> RGB."""
    if len(shape) == (3 if batch else 2):
        return (*shape, 3)
    if shape[-1] == 1:
        return (*shape[:-1], 3)
    return shape


class JPEGCodec(_ImageCodec):
    name = "jpeg"
    description = "JPEG (libjpeg via Pillow), 4:2:0, optimized Huffman tables, quality=1..100"
    channels = (1, 3)

    params = (Param("quality", "int", 75, "quality (higher is better)", lo=1, hi=100),)

    @declared()
    def compress(self, data: Any, *, progress: bool = False, quality: int) -> tuple[dict, dict[str, bytes]]:
        return self._compress_images(data, quality=quality)

    def _encode_one(self, image: np.ndarray, quality: int) -> bytes:
        return _pil_save(image, "JPEG", quality=int(quality), optimize=True, subsampling=2)

    def _decode_one(self, payload: bytes, hw: tuple[int, int]) -> np.ndarray:
        return _pil_decode(payload, hw, "JPEG")


class JPEGXLCodec(_ImageCodec):
    name = "jpegxl"
    description = "JPEG XL (libjxl via imagecodecs): lossless by default, lossy with distance>0 or quality"

    params = (
        Param("quality", "float", None, "lossy quality (higher is better); none = lossless", lo=0, hi=100,
              nullable=True),
        Param("effort", "int", 7, "encoder effort (9 = slowest, smallest)", lo=1, hi=9),
    )

    @declared()
    def compress(self, data: Any, *, progress: bool = False, quality: float | None,
                 effort: int) -> tuple[dict, dict[str, bytes]]:
        return self._compress_images(data, quality=quality, effort=effort)

    def _encode_one(self, image: np.ndarray, quality: float | None, effort: int) -> bytes:
        ic = _imagecodecs()
        if quality is None:
            return bytes(ic.jpegxl_encode(image, lossless=True, effort=effort))
        return bytes(ic.jpegxl_encode(image, level=float(quality), effort=effort))

    def _decode_one(self, payload: bytes, hw: tuple[int, int]) -> np.ndarray:
        ic = _imagecodecs()
        return _sized_decode("JPEG XL", jxl_size(payload), hw, lambda: ic.jpegxl_decode(payload), ic.JpegxlError)


_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


class AVIFCodec(_ImageCodec):
    name = "avif"
    description = "AVIF (libavif/AV1 intra via imagecodecs): lossy, quality=0..100"
    channels = (1, 3)

    params = (
        Param("quality", "int", 60, "quality (higher is better; 100 = near-lossless)", lo=0, hi=100),
        Param("speed", "int", 6, "encoder speed (0 = slowest, smallest; 10 = fastest)", lo=0, hi=10),
    )

    @declared()
    def compress(self, data: Any, *, progress: bool = False, quality: int, speed: int) -> tuple[dict, dict[str, bytes]]:
        return self._compress_images(data, quality=quality, speed=speed)

    def _encode_one(self, image: np.ndarray, quality: int, speed: int) -> bytes:
        # one thread: the same bytes on every machine (libavif's tiling/threads do not change them,
        # but the benchmark compares per-core speed)
        return bytes(_imagecodecs().avif_encode(np.ascontiguousarray(image), level=int(quality), speed=int(speed),
                                                numthreads=1))

    def _decode_one(self, payload: bytes, hw: tuple[int, int]) -> np.ndarray:
        ic = _imagecodecs()
        return _sized_decode("AVIF", avif_size(payload), hw, lambda: ic.avif_decode(payload, numthreads=1), ic.AvifError)


def _sized_decode(fmt: str, size: tuple[int, int], hw: tuple[int, int], decode: Callable[[], Any],
                  error: type[Exception]) -> np.ndarray:
    """Decode an imagecodecs payload whose own header says it is ``size`` only when that is the
    stream header's ``hw``: a small payload claiming a huge image is refused before any pixel is
    decoded. The library's error becomes a ValueError, which the caller reports as corruption."""
    if size != tuple(hw):
        raise CorruptStreamError(f"{fmt} payload is {size[0]}x{size[1]}, the header says {hw[0]}x{hw[1]}")
    try:
        return np.asarray(decode())
    except error as exc:
        raise ValueError(str(exc)) from None


def avif_size(payload: bytes) -> tuple[int, int]:
    """(height, width) from the first ``ispe`` (image spatial extents) property of an AVIF file,
    read without decoding (so a small payload cannot claim a gigapixel); the codec writes single
    images, whose only ``ispe`` is the primary item's."""
    if payload[4:8] != b"ftyp":
        raise CorruptStreamError("AVIF payload does not start with an ftyp box")
    at = payload.find(b"ispe", 0, 4096)
    if at < 0 or len(payload) < at + 16:
        raise CorruptStreamError("AVIF payload has no image size (ispe) property")
    width, height = int.from_bytes(payload[at + 8:at + 12], "big"), int.from_bytes(payload[at + 12:at + 16], "big")
    return height, width


def jxl_size(payload: bytes) -> tuple[int, int]:
    """(height, width) from the SizeHeader of a bare JPEG XL codestream (ISO/IEC 18181-1, A.2),
    read without decoding: libjxl has no size limit of its own, so this is what stops a 20-byte
    payload from claiming a gigapixel. The codec writes bare codestreams only (``FF 0A``)."""
    if payload[:2] != b"\xff\x0a":
        raise CorruptStreamError("JPEG XL payload is not a bare codestream (no FF 0A signature)")
    bits = int.from_bytes(payload[2:14], "little")  # the SizeHeader takes at most 2 x 33 + 4 bits
    pos = 0

    def u(n: int) -> int:
        nonlocal pos
        out = (bits >> pos) & ((1 << n) - 1)
        pos += n
        return out

    def dim(small: bool) -> int:
        if small:
            return (u(5) + 1) * 8
        return u((9, 13, 18, 30)[u(2)]) + 1

    small = bool(u(1))
    height = dim(small)
    ratio = u(3)
    if ratio:
        num, den = _JXL_RATIOS[ratio]
        width = height * num // den
    else:
        width = dim(small)
    return height, width


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError:
        raise MissingDependencyError("imagecodecs", extra="bench", purpose="JPEG XL") from None
    return imagecodecs


# ----------------------------------------------------------------------------------- video
def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise MissingDependencyError("imageio-ffmpeg", purpose="the x264/x265/SVT-AV1 baselines") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _run_ffmpeg_bounded(args: list[str], stdin: bytes, limit: int, what: str) -> bytes:
    """Run ffmpeg but stop reading (and kill it) as soon as it writes more than ``limit`` bytes:
    a damaged bitstream can claim any frame size, and the decoded frames must never outgrow what
    the (already checked) header allows."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", *args]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)

        def feed() -> None:
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        chunks, total = [], 0
        try:
            while True:
                chunk = proc.stdout.read(min(1 << 20, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise CorruptStreamError(f"{what}: the bitstream decodes to more than the {limit} bytes "
                                             "its header allows")
        finally:
            if proc.poll() is None and total > limit:
                proc.kill()
            proc.stdout.close()
            code = proc.wait()
            writer.join()
        if code != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip().splitlines()
            raise CorruptStreamError(f"ffmpeg {what} failed: {msg[-1] if msg else 'exit ' + str(code)}")
    return b"".join(chunks)


def _run_ffmpeg(args: list[str], stdin: bytes, what: str) -> bytes:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ExternalToolError(f"ffmpeg {what} failed: {msg[-1] if msg else 'exit ' + str(proc.returncode)}")
    return proc.stdout


_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                 "placebo")


def _video_params(crf: int, crf_range: tuple[int, int], preset: str, presets: tuple[str, ...]) -> tuple[Param, ...]:
    return (
        Param("crf", "int", crf, "constant rate factor (lower = better quality, more bits)",
              lo=crf_range[0], hi=crf_range[1]),
        Param("preset", "str", preset, "speed preset (slower = smaller)", choices=presets),
        Param("fps", "float", 25.0, "frame rate stored in the stream (the CLI takes the input's)", lo=0.001, hi=1000),
    )


def video_schema(name: str, min_size: int) -> Schema:
    """Header of the ffmpeg baselines (version 1): ``shape`` ``T,H,W,3``; ``coded_size`` the
    padded ``[H', W']`` the encoder used (even, at least ``min_size``); ``fps``; informational
    ``crf`` and ``preset``; one section ``bitstream``."""

    def coded(h: dict, sections: Mapping[str, bytes]) -> str | None:
        t, height, width, c = h["shape"]
        if c != 3:
            return f"shape {h['shape']} must end in 3 channels"
        want = [max(height + height % 2, min_size), max(width + width % 2, min_size)]
        if h["coded_size"] != want:
            return f"coded_size {h['coded_size']} does not fit shape {h['shape']} (expected {want})"
        return None

    def decoded(h: dict) -> int:
        return h["shape"][0] * h["coded_size"][0] * h["coded_size"][1] * 3

    return Schema(
        name,
        fields={"shape": Field("ints", length=4, lo=1, hi=_MAX_SIDE), "dtype": Field("str", choices=("uint8",)),
                "fps": Field("float", lo=1e-3, hi=1000), "coded_size": Field("ints", length=2, lo=1, hi=_MAX_SIDE),
                "crf": Field("int", required=False), "preset": Field("str", required=False)},
        sections=("bitstream",),
        min_section_bytes=1,
        checks=(coded,),
        decoded=decoded,
    )


class _FFmpegVideoCodec(Codec):
    kind: ClassVar[str] = "video"
    version: ClassVar[int] = 1
    encoder: ClassVar[str]
    raw_format: ClassVar[str]
    min_size: ClassVar[int] = 2

    def _extra_args(self, preset: str) -> list[str]:
        return ["-preset", str(preset)]

    options: ClassVar[tuple[Param, ...]] = (max_values_option(),)

    @classmethod
    def schema(cls) -> Schema:
        return video_schema(cls.name, cls.min_size)

    @declared()
    def compress(self, data: Any, *, progress: bool = False, crf: int, preset: str,
                 fps: float) -> tuple[dict, dict[str, bytes]]:
        frames = check_video(data)
        t, h, w, _ = frames.shape
        # 4:2:0 needs even sizes (and SVT-AV1 a minimum size): pad by edge replication, crop on decode
        ph = max(h + h % 2, self.min_size)
        pw = max(w + w % 2, self.min_size)
        if (ph, pw) != (h, w):
            frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{pw}x{ph}", "-r", str(fps), "-i", "pipe:0",
                "-c:v", self.encoder, "-pix_fmt", "yuv420p", "-crf", str(crf), *self._extra_args(preset),
                "-f", self.raw_format, "pipe:1"]
        stream = _run_ffmpeg(args, np.ascontiguousarray(frames).tobytes(), f"{self.name} encode")
        header = {"shape": [t, h, w, 3], "dtype": "uint8", "fps": fps, "coded_size": [ph, pw],
                  "crf": crf, "preset": str(preset)}
        return header, {"bitstream": stream}

    @declared("options")
    def decompress(self, header: dict, sections: Mapping[str, bytes], *, max_values: int | None) -> np.ndarray:
        # the header passed schema() under max_values at the decompress gate (Codec.check_header)
        t, h, w, _ = header["shape"]
        ph, pw = header["coded_size"]
        expected = t * ph * pw * 3
        raw = _run_ffmpeg_bounded(["-f", self.raw_format, "-i", "pipe:0", "-f", "rawvideo", "-pix_fmt", "rgb24",
                                   "pipe:1"], sections["bitstream"], expected, f"{self.name} decode")
        if len(raw) != expected:
            raise CorruptStreamError(f"{self.name}: decoded {len(raw)} bytes of frames, expected {expected}")
        return np.frombuffer(raw, np.uint8).reshape(t, ph, pw, 3)[:, :h, :w].copy()


class X264Codec(_FFmpegVideoCodec):
    name = "x264"
    description = "H.264/AVC (libx264), YUV 4:2:0, crf + preset"
    encoder = "libx264"
    raw_format = "h264"
    params = _video_params(23, (0, 51), "medium", _X26X_PRESETS)


class X265Codec(_FFmpegVideoCodec):
    name = "x265"
    description = "H.265/HEVC (libx265), YUV 4:2:0, crf + preset"
    encoder = "libx265"
    raw_format = "hevc"
    params = _video_params(28, (0, 51), "medium", _X26X_PRESETS)

    def _extra_args(self, preset: str) -> list[str]:
        return ["-preset", str(preset), "-x265-params", "log-level=error"]


class SVTAV1Codec(_FFmpegVideoCodec):
    name = "svtav1"
    description = "AV1 (SVT-AV1), YUV 4:2:0, crf + preset 0..13"
    encoder = "libsvtav1"
    raw_format = "obu"
    min_size = 64
    params = _video_params(35, (1, 63), "8", tuple(str(p) for p in range(14)))
