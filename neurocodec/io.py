"""Reading and writing the data neurocodec works on, and atomic output files.

Conventions everywhere: video ``T,H,W,3`` uint8 RGB; images ``H,W`` / ``H,W,C`` uint8; batches of
images ``N,H,W[,C]``. ``.npy`` arrays are taken as they are.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, MissingDependencyError, UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".y4m")
WRITABLE_VIDEO = (".mp4", ".mkv", ".mov", ".y4m")


# ------------------------------------------------------------------------------- atomic output
#: marks a temporary of :func:`atomic_path` in its name: ``.<name>.ncxtmp-<host>-<pid>-<12 hex><suffix>``
_TMP_MARK = "ncxtmp"


@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    """8 hex digits naming this machine and pid namespace. Why: a pid only means something on the
    host (and in the container) that issued it; a folder shared over NFS or between containers may
    hold a live temporary of a writer elsewhere whose pid happens to be dead here, and that one
    must never be removed."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{ns}".encode()).hexdigest()[:8]


def _temp_stem(target: Path) -> str:
    # at most 100 characters of the output's name, so the temporary's name stays under the usual
    # 255-byte limit (a stale temporary of another output sharing the prefix is just as stale)
    return target.name[:100]


def _temp_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(_temp_stem(target))}\.{_TMP_MARK}-([0-9a-f]{{8}})-([0-9]{{1,10}})-"
                      rf"[0-9a-f]{{12}}{re.escape(target.suffix[:20])}")


def temp_name(target: Path) -> str:
    """A fresh temporary name for ``target``: hidden, beside it, naming this writer (host tag and
    pid) and 48 random bits, ending in the target's extension (writers such as PyAV choose the
    format from it)."""
    return (f".{_temp_stem(target)}.{_TMP_MARK}-{_host_tag()}-{os.getpid()}-{os.urandom(6).hex()}"
            f"{target.suffix[:20]}")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` (of this host) may still be writing. Unsure means alive: a temporary
    is only ever removed when its writer is certainly gone."""
    if pid == os.getpid() or os.name != "posix":
        return True  # (on Windows os.kill would terminate the process: never probe there)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):
        return True  # PermissionError: alive, another user's
    try:  # a killed child its parent has not reaped yet is a zombie: it writes nothing more
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed writers of ``target`` left (a SIGKILL cannot be caught,
    so :func:`atomic_path` cannot clean up after one): those made on this host whose writer's pid
    is no longer alive. A live writer's temporary, another host's, or any file not named by
    :func:`temp_name` is never touched. Returns what was removed; called by every atomic write."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    pattern, tag = _temp_pattern(target), _host_tag()
    removed = []
    try:
        candidates = list(parent.glob(f".{glob.escape(_temp_stem(target))}.{_TMP_MARK}-*"))
    except OSError:
        return removed
    for path in candidates:
        m = pattern.fullmatch(path.name)
        if m is None or m.group(1) != tag or _pid_alive(int(m.group(2))):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            pass  # gone already (another writer cleaned it) or not ours to remove
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path`` in one step,
    on failure it is removed, so a crash never leaves a half-written output.

    A SIGKILL leaves the temporary behind (nothing can run then); its name carries the writer's
    host tag and pid (:func:`temp_name`), and the next atomic write of the same output removes it
    once that pid is dead (:func:`remove_stale_temporaries`)."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output folder {parent} does not exist")
    remove_stale_temporaries(target)
    if is_dir:
        tmp = _new_entry(parent, target, directory=True)
    else:
        tmp = _new_entry(parent, target)
    try:
        yield tmp
        if is_dir and target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _new_entry(parent: Path, target: Path, directory: bool = False) -> Path:
    """Create a fresh, empty temporary file (or folder) beside the output with mode 0666 (0777) *as
    the kernel applies the umask*: the usual permissions of a new file, without reading the umask
    (which Python can only do by setting it, a process-wide flip another thread could observe)."""
    for _ in range(100):
        name = parent / temp_name(target)
        try:
            if directory:
                os.mkdir(name, 0o777)
            else:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(f"cannot write in {parent}: {exc.strerror}") from None
        return name
    raise InputError(f"cannot create a temporary file in {parent}")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def read_bytes(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


# ------------------------------------------------------------------------------------- images
def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as ``H,W`` (grey) or ``H,W,3``/``H,W,4`` uint8 (16-bit files are refused)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode in ("I;16", "I;16B", "I", "F"):
                raise InputError(f"{path}: only 8-bit images are supported (mode {img.mode})")
            if img.mode not in ("L", "RGB", "RGBA"):
                img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
            return np.asarray(img).copy()
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    from PIL import Image

    arr = check_image(image)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower())
    with atomic_path(path) as tmp:
        Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr).save(
            tmp, format=fmt or Image.registered_extensions().get(Path(path).suffix.lower())
        )


def check_image(image: Any) -> np.ndarray:
    """Validate one ``H,W[,C]`` uint8 image."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise InputError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or 0 in arr.shape:
        raise InputError(f"an image must be H,W or H,W,C with C in 1,3,4; got shape {arr.shape}")
    return arr


def check_video(frames: Any) -> np.ndarray:
    """Validate a ``T,H,W,3`` uint8 clip."""
    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3 or 0 in arr.shape:
        raise InputError(f"a video must be a T,H,W,3 uint8 array; got shape {arr.shape} {arr.dtype}")
    return arr


# -------------------------------------------------------------------------------------- video
def _av():
    try:
        import av
    except ImportError:
        raise MissingDependencyError("av", purpose="video input/output") from None
    return av


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """Decode every frame (or the first ``max_frames``) of any file PyAV reads to ``T,H,W,3`` uint8."""
    av = _av()
    frames = []
    try:
        with av.open(str(path)) as box:
            if not box.streams.video:
                raise InputError(f"{path}: has no video stream")
            for frame in box.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: not a readable video ({exc})") from None
    if not frames:
        raise InputError(f"{path}: no frames decoded")
    return np.stack(frames)


def video_fps(path: str | os.PathLike) -> float:
    av = _av()
    with av.open(str(path)) as box:
        rate = box.streams.video[0].average_rate
    return float(rate) if rate else 25.0


def check_video_output(path: str | os.PathLike, lossless: bool = False, pix_fmt: str | None = None) -> None:
    """Refuse, before any work, options that do not fit a video output's extension."""
    suffix = Path(path).suffix.lower()
    if pix_fmt is not None and suffix != ".y4m":
        raise UsageError(f"--pix-fmt is for .y4m output, not '{suffix or 'a folder'}'")
    if pix_fmt is not None and pix_fmt not in ("420", "444"):
        raise UsageError(f"--pix-fmt must be 420 or 444, got '{pix_fmt}'")
    if lossless and suffix not in (".mp4", ".mkv", ".mov"):
        raise UsageError(f"--lossless is for .mp4/.mkv/.mov output (the other formats are exact or fixed), "
                         f"not '{suffix or 'a folder'}'")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 25.0, lossless: bool = False,
                pix_fmt: str | None = None) -> None:
    """Write ``T,H,W,3`` uint8 to ``.y4m`` (raw YUV, ``pix_fmt`` ``444`` (default) or ``420``: the
    RGB->YUV conversion itself moves values by up to ~2 levels, as y4m has no RGB) or
    ``.mp4``/``.mkv``/``.mov``. Why yuv420p H.264 (crf 12, preset slow, BT.601 tagged) is the
    default: it is the one profile every player and browser plays; ``lossless`` keeps the exact
    RGB pixels (libx264rgb, qp 0: High 4:4:4, which many players refuse). Use ``.npy`` or PNG
    frames for exact output anywhere."""
    av = _av()
    frames = check_video(frames)
    check_video_output(path, lossless, pix_fmt)
    suffix = Path(path).suffix.lower()
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001)
    if suffix == ".y4m":
        opts = {"codec": "rawvideo", "pix_fmt": "yuv420p" if pix_fmt == "420" else "yuv444p", "fmt": "yuv4mpegpipe"}
    elif suffix in (".mp4", ".mkv", ".mov"):
        opts = {"codec": "libx264rgb" if lossless else "libx264",
                "pix_fmt": "rgb24" if lossless else "yuv420p", "fmt": None}
    else:
        raise UsageError(f"cannot write video as '{suffix}' (use .y4m, .mp4 or .mkv)")
    h, w = frames.shape[1:3]
    if opts["pix_fmt"] == "yuv420p" and (h % 2 or w % 2):
        alt = "--pix-fmt 444" if suffix == ".y4m" else "--lossless"
        raise UsageError(f"4:2:0 output needs even frame sizes, these are {w}x{h}: use {alt}, .npy or PNG frames")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format=opts["fmt"]) as box:
            stream = box.add_stream(opts["codec"], rate=rate)
            stream.width, stream.height = w, h
            stream.pix_fmt = opts["pix_fmt"]
            if opts["codec"] == "libx264rgb":
                stream.codec_context.options = {"qp": "0", "preset": "medium"}
            elif opts["codec"] == "libx264":
                stream.codec_context.options = {"crf": "12", "preset": "slow"}
            for arr in frames:
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                for packet in stream.encode(frame):
                    box.mux(packet)
            for packet in stream.encode():
                box.mux(packet)


# --------------------------------------------------------------------------- by file extension
def read_any(path: str | os.PathLike) -> np.ndarray:
    """Read an input by its extension: ``.npy``, image files, video files, or a folder of images
    (stacked to ``N,H,W[,C]``; all must share one size)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise InputError(f"folder {p} holds no images")
        images = [read_image(f) for f in files]
        if len({im.shape for im in images}) != 1:
            raise InputError(f"images in {p} differ in size; encode them one by one")
        return np.stack(images)
    if not p.exists():
        raise InputError(f"no such file: {p}")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{p}: not a readable .npy array ({exc})") from None
    if suffix in IMAGE_EXTENSIONS:
        return read_image(p)
    if suffix in VIDEO_EXTENSIONS:
        return read_video(p)
    raise InputError(f"{p}: unknown input type '{suffix}' (use .npy, an image, a video or a folder of images)")


def refuse_overwriting_input(source: str, output: str) -> None:
    """Refuse an output that is the input itself (same path, a ``./`` alias, a symlink or a hard
    link to it): atomic writes would replace the user's data with our bytes. Checked before any work."""
    src, out = Path(source), Path(output)
    if not out.exists() or not src.exists():
        return
    try:
        same = os.path.samefile(src, out)
    except OSError:
        same = src.resolve() == out.resolve()
    if same:
        raise UsageError(f"output '{output}' is the input '{source}': refusing to overwrite it")


def check_output_format(path: str | os.PathLike, lossless: bool = False, pix_fmt: str | None = None) -> None:
    """Refuse an output extension :func:`write_any` cannot write (or options it does not take)
    before any decoding is done."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".npy", ".npz", "", *IMAGE_EXTENSIONS, *WRITABLE_VIDEO):
        raise UsageError(f"cannot write '{suffix}' (use .npy, .npz, .png, .y4m, .mp4, or a folder name)")
    check_video_output(path, lossless, pix_fmt)


def write_any(path: str | os.PathLike, data: Any, fps: float = 25.0, lossless: bool = False,
              pix_fmt: str | None = None) -> None:
    """Write decoded data by the output extension: ``.npy``; ``.npz`` for named results (a mapping
    or a named tuple); an image file; a video file (``lossless``/``pix_fmt``: :func:`write_video`);
    or a folder (no extension) of PNG frames."""
    p = Path(path)
    suffix = p.suffix.lower()
    if hasattr(data, "_asdict"):
        data = data._asdict()
    if isinstance(data, dict):
        if suffix != ".npz":
            raise UsageError(f"this decode gives several arrays ({', '.join(data)}): write it to a .npz file")
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: np.asarray(v) for k, v in data.items()})
        return
    arr = np.asarray(data)
    if suffix == ".npy":
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
    elif suffix in IMAGE_EXTENSIONS:
        if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise UsageError(f"data of shape {arr.shape} holds several images: write a folder, .npy or a video")
        write_image(p, arr)
    elif suffix in VIDEO_EXTENSIONS:
        write_video(p, arr, fps=fps, lossless=lossless, pix_fmt=pix_fmt)
    elif suffix == "":
        frames = arr if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) else arr[None]
        with atomic_path(p, is_dir=True) as tmp:
            for i, frame in enumerate(frames):
                write_image(tmp / f"{i:05d}.png", frame)
    else:
        raise UsageError(f"cannot write '{suffix}' (use .npy, .npz, .png, .y4m, .mp4, or a folder name)")
