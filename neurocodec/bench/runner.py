"""Measure codecs the same way everywhere: whole-``.ncx`` bits, wall times, peak memory, quality.

Every suite builds its RD points with :func:`measure` so bpp/bpd, PSNR and MS-SSIM mean the same
thing in every JSON file.
"""
from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..codec import decode, encode
from ..metrics import bpd, bpp, ms_ssim, psnr, video_psnr


class PeakMemory:
    """Peak resident memory (MiB) of this process while the ``with`` block runs.

    Child processes (the ffmpeg that runs the x264/x265/SVT-AV1 baselines) are not included.
    Resets the kernel's high-water mark where Linux allows it (``/proc/self/clear_refs``) and
    also samples RSS every 20 ms, so the peak of one measurement is not hidden by an earlier one.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    @staticmethod
    def _rss_mb() -> float:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    @staticmethod
    def _hwm_mb() -> float | None:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> "PeakMemory":
        with contextlib.suppress(OSError):
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset VmHWM to the current RSS
        self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        hwm = self._hwm_mb()
        self.peak_mb = max(self.peak_mb, self._rss_mb(), hwm or 0.0)


def quality(original: np.ndarray, decoded: np.ndarray, video: bool) -> dict[str, float]:
    """PSNR (RGB, 8-bit; mean over frames for video) and MS-SSIM of one reconstruction."""
    same = decoded.shape == original.shape
    if not same:
        raise ValueError(f"decoded shape {decoded.shape} != original {original.shape}")
    p = video_psnr(original, decoded) if video else psnr(original, decoded)
    return {"psnr-rgb": p, "ms-ssim-rgb": ms_ssim(original, decoded)}


def measure(codec: str, data: np.ndarray, *, progress: bool = False, with_quality: bool = True,
            **params: Any) -> dict[str, Any]:
    """Encode + decode ``data`` once; return one RD point in the results schema's keys."""
    video = data.ndim == 4 and data.shape[-1] == 3 and codec not in ("png", "webp", "jpeg", "jpegxl", "avif")
    with PeakMemory() as mem_enc:
        t0 = time.perf_counter()
        blob = encode(data, codec=codec, progress=progress, **params)
        t1 = time.perf_counter()
    with PeakMemory() as mem_dec:
        t2 = time.perf_counter()
        out = decode(blob)
        t3 = time.perf_counter()
    point: dict[str, Any] = {
        "bytes": len(blob),
        "bpp": bpp(len(blob), data.shape),
        "bpd": bpd(len(blob), data.shape),
        "encoding_time": t1 - t0,
        "decoding_time": t3 - t2,
        "peak_memory_mb": max(mem_enc.peak_mb, mem_dec.peak_mb),
        "lossless": bool(np.array_equal(out, data)),
    }
    if video:
        point["decode_fps"] = data.shape[0] / max(t3 - t2, 1e-9)
    if with_quality:
        point.update(quality(data, out, video))
    return point


def sweep(codec: str, data: np.ndarray, settings: Iterable[dict[str, Any]], **common: Any) -> dict[str, list]:
    """One :func:`measure` per parameter setting, gathered as schema lists (plus ``params``)."""
    columns: dict[str, list] = {}
    for setting in settings:
        point = measure(codec, data, **common, **setting)
        point["params"] = dict(setting)
        for key, value in point.items():
            columns.setdefault(key, []).append(value)
    return columns


@contextlib.contextmanager
def timer() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())
