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
import subprocess
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..codec import Codec
from ..errors import CorruptStreamError, ExternalToolError, InputError, MissingDependencyError
from ..io import check_image, check_video
from ..params import Param, declared


# ---------------------------------------------------------------------------------- images
class _ImageCodec(Codec):
    """One image ``H,W[,C]`` or a batch ``N,H,W[,C]``; one section per image."""

    kind: ClassVar[str] = "image"
    version: ClassVar[int] = 1
    channels: ClassVar[tuple[int, ...]] = (1, 3, 4)

    def _encode_one(self, image: np.ndarray, **params: Any) -> bytes:
        raise NotImplementedError

    def _decode_one(self, payload: bytes) -> np.ndarray:
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
    options: ClassVar[tuple[Param, ...]] = ()

    def decompress(self, header: dict, sections: Mapping[str, bytes]) -> np.ndarray:
        shape = tuple(header.get("shape", ()))
        count = shape[0] if header.get("batch") else 1
        if count != len(sections):
            raise CorruptStreamError(f"{self.name}: header says {count} images, stream has {len(sections)}")
        images = []
        for i in range(count):
            try:
                images.append(self._decode_one(sections[str(i)]))
            except KeyError:
                raise CorruptStreamError(f"{self.name}: image {i} is missing") from None
            except (OSError, ValueError, RuntimeError) as exc:
                raise CorruptStreamError(f"{self.name}: image {i} does not decode ({exc})") from None
        out = np.stack(images) if header.get("batch") else images[0]
        if out.shape != shape:
            out = out.reshape(shape) if out.size == int(np.prod(shape)) else out
        if out.shape != shape:
            raise CorruptStreamError(f"{self.name}: decoded shape {out.shape} != header shape {shape}")
        return out


def _pil_roundtrip(payload: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(_io.BytesIO(payload)) as img:
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

    def _decode_one(self, payload: bytes) -> np.ndarray:
        return _pil_roundtrip(payload)


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

    def _decode_one(self, payload: bytes) -> np.ndarray:
        return _pil_roundtrip(payload)

    def decompress(self, header: dict, sections: Mapping[str, bytes]) -> np.ndarray:
        shape = tuple(header["shape"])
        out = super().decompress({**header, "shape": _pil_shape(shape)}, sections)
        # WebP always decodes to RGB(A): grey inputs come back as one channel again
        if len(shape) == out.ndim - 1 or (out.shape[-1] == 3 and shape[-1] != 3):
            out = out[..., 0] if len(shape) == out.ndim - 1 else out[..., :1]
        return out.reshape(shape)


def _pil_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape WebP decodes to: grey -> RGB."""
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] not in (1, 3, 4)):
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

    def _decode_one(self, payload: bytes) -> np.ndarray:
        return _pil_roundtrip(payload)


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

    def _decode_one(self, payload: bytes) -> np.ndarray:
        ic = _imagecodecs()
        try:
            return np.asarray(ic.jpegxl_decode(payload))
        except ic.JpegxlError as exc:
            raise ValueError(str(exc)) from None


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


class _FFmpegVideoCodec(Codec):
    kind: ClassVar[str] = "video"
    version: ClassVar[int] = 1
    encoder: ClassVar[str]
    raw_format: ClassVar[str]
    min_size: ClassVar[int] = 2

    def _extra_args(self, preset: str) -> list[str]:
        return ["-preset", str(preset)]

    options: ClassVar[tuple[Param, ...]] = ()

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

    def decompress(self, header: dict, sections: Mapping[str, bytes]) -> np.ndarray:
        t, h, w, _ = (int(v) for v in header["shape"])
        ph, pw = (int(v) for v in header["coded_size"])
        try:
            raw = _run_ffmpeg(["-f", self.raw_format, "-i", "pipe:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                              sections["bitstream"], f"{self.name} decode")
        except ExternalToolError as exc:
            raise CorruptStreamError(str(exc)) from None
        expected = t * ph * pw * 3
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
