"""Quality and rate metrics: PSNR (RGB and YUV 4:2:0), SSIM / MS-SSIM, bpp, bpd, BD-rate / BD-PSNR.

Images are ``H,W[,C]``; videos ``T,H,W,C`` (video PSNR and MS-SSIM are means over frames, as the
NeRV/HNeRV papers and video codec tables report them). Values are 8-bit unless ``data_range`` says
otherwise.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from .errors import MissingDependencyError, UsageError

# Wang, Simoncelli & Bovik (2003): weights of the 5 scales.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise UsageError(f"shapes differ: {a.shape} vs {b.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB over all elements; ``inf`` for identical inputs."""
    err = mse(a, b)
    return math.inf if err == 0 else 10.0 * math.log10(data_range**2 / err)


def video_psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean of per-frame PSNR over a ``T,H,W,C`` clip."""
    a, b = _pair(a, b)
    errs = np.mean((a - b) ** 2, axis=tuple(range(1, a.ndim)))
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(data_range**2 / errs)
    return float(np.mean(values))


# BT.601 limited range ("tv"), the matrix ffmpeg's rgb24 -> yuv420p conversion uses by default
_BT601 = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0
_BT601_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_yuv420(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[T,]H,W,3`` uint8 RGB -> 8-bit Y (full size), U and V (half size each way): BT.601
    limited range, rounded to integers, chroma as the mean of each 2x2 block (centre-sited).
    Needs even height and width. ffmpeg's own scaler filters chroma slightly differently, so a
    PSNR-YUV computed here on a decoded clip differs from ffmpeg's log by a few hundredths of a dB."""
    x = np.asarray(frames, dtype=np.float64)
    if x.shape[-1] != 3 or x.ndim not in (3, 4):
        raise UsageError(f"PSNR-YUV needs RGB frames [T,]H,W,3, got shape {x.shape}")
    h, w = x.shape[-3], x.shape[-2]
    if h % 2 or w % 2:
        raise UsageError(f"PSNR-YUV (4:2:0) needs even frame sizes, got {w}x{h}")
    yuv = np.clip(np.rint(x @ _BT601.T + _BT601_OFFSET), 0, 255)
    y = yuv[..., 0]
    chroma = yuv[..., 1:].reshape(*x.shape[:-3], h // 2, 2, w // 2, 2, 2).mean(axis=(-4, -2))
    chroma = np.clip(np.rint(chroma), 0, 255)
    return y, chroma[..., 0], chroma[..., 1]


def psnr_yuv(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR-YUV as video papers report it: both clips converted to 8-bit YUV 4:2:0 (BT.601, see
    :func:`rgb_to_yuv420`), PSNR per plane per frame, weighted ``(6 Y + U + V) / 8``, mean over
    frames. Takes ``T,H,W,3`` clips or ``H,W,3`` images (uint8 RGB, even sizes)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise UsageError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    planes_a, planes_b = rgb_to_yuv420(a), rgb_to_yuv420(b)

    def per_frame(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        err = np.mean((p - q) ** 2, axis=(1, 2))
        with np.errstate(divide="ignore"):
            return np.where(err == 0, np.inf, 10.0 * np.log10(data_range**2 / np.maximum(err, 1e-300)))

    y, u, v = (per_frame(p, q) for p, q in zip(planes_a, planes_b))
    return float(np.mean((6.0 * y + u + v) / 8.0))


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def _filter_valid(img: np.ndarray, win: np.ndarray) -> np.ndarray:
    from scipy.ndimage import convolve1d  # here, so importing metrics stays light (start-up)

    """Separable 'valid' filtering over the first two axes of an ``H,W,C`` array."""
    out = convolve1d(img, win, axis=0, mode="constant")
    out = convolve1d(out, win, axis=1, mode="constant")
    r = len(win) // 2
    h, w = img.shape[:2]
    return out[r : h - (len(win) - 1 - r), r : w - (len(win) - 1 - r)]


def _ssim_parts(a: np.ndarray, b: np.ndarray, data_range: float, win_size: int = 11, sigma: float = 1.5):
    size = min(win_size, a.shape[0], a.shape[1])
    win = _gaussian_window(size, sigma * size / win_size)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, win), _filter_valid(b, win)
    var_a = _filter_valid(a * a, win) - mu_a**2
    var_b = _filter_valid(b * b, win) - mu_b**2
    cov = _filter_valid(a * b, win) - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    # mean over space, per channel
    return np.mean(lum * cs, axis=(0, 1)), np.mean(cs, axis=(0, 1))


def _as_hwc(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 2 else x


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Single-scale SSIM (Gaussian window 11, sigma 1.5) of one ``H,W[,C]`` image, mean over channels."""
    a, b = _pair(a, b)
    s, _ = _ssim_parts(_as_hwc(a), _as_hwc(b), data_range)
    return float(np.mean(s))


def _ms_ssim_image(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    weights = np.array(MS_SSIM_WEIGHTS)
    values = []
    for level in range(len(weights)):
        s, cs = _ssim_parts(a, b, data_range)
        values.append(np.maximum(s if level == len(weights) - 1 else cs, 0.0))
        if level < len(weights) - 1:
            if min(a.shape[0], a.shape[1]) < 2:
                # too small for further scales: reuse this scale's value for the rest
                values.extend([values[-1]] * (len(weights) - 1 - level))
                values[-1] = np.maximum(s, 0.0)
                break
            h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
            a = a[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3))
            b = b[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3))
    stack = np.stack(values)  # (levels, C)
    return float(np.mean(np.prod(stack ** weights[:, None], axis=0)))


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """MS-SSIM (Wang et al. 2003, 5 scales, 2x2 average down-sampling) of ``H,W[,C]`` images or
    the mean over frames of ``T,H,W,C`` clips. At scales smaller than the 11-pixel window the
    window shrinks to the image, so small frames (e.g. 176x144) are still measured."""
    a, b = _pair(a, b)
    if a.ndim == 4:
        return float(np.mean([_ms_ssim_image(x, y, data_range) for x, y in zip(a, b)]))
    return _ms_ssim_image(_as_hwc(a), _as_hwc(b), data_range)


def detail_ratio(image: np.ndarray, reference: np.ndarray) -> float:
    """Fine-detail energy of ``image`` relative to ``reference``: the mean squared gradient (forward
    differences) of the channel-mean intensity, as a ratio. 1 = as much high-frequency content as the reference;
    blurry upsamplers score below 1, added noise or over-sharpening above. A sharpness measure to
    put beside PSNR (which rewards blur), not a fidelity measure."""
    a, b = _pair(image, reference)

    def energy(x: np.ndarray) -> float:
        g = _as_hwc(x).mean(axis=-1)
        return float(np.mean(np.diff(g, axis=0) ** 2) + np.mean(np.diff(g, axis=1) ** 2))

    if min(a.shape[:2]) < 2:
        raise UsageError("detail_ratio needs images of at least 2x2 pixels")
    ref, own = energy(b), energy(a)
    if ref == 0:  # a flat reference: equal if the image is flat too, else unboundedly sharper
        return 1.0 if own == 0 else math.inf
    return own / ref


def pixels_of(shape: Sequence[int]) -> int:
    """Pixels in an image ``H,W``/``H,W,C``, a batch ``N,H,W,C`` or a clip ``T,H,W,C`` (frames
    count; channels do not). ``(N,H,W)`` batches of grey images count ``N*H*W``."""
    shape = tuple(int(s) for s in shape)  # math.prod of Python ints: no int64 wrap-around on huge shapes
    if len(shape) <= 2:
        return math.prod(shape)
    if shape[-1] in (1, 3, 4):
        return math.prod(shape[:-1])
    return math.prod(shape)


def bpp(num_bytes: int, shape: Sequence[int]) -> float:
    """Bits per pixel of a whole file: file bits / pixels (frames included)."""
    return 8.0 * num_bytes / pixels_of(shape)


def bpd(num_bytes: int, shape: Sequence[int]) -> float:
    """Bits per dimension: file bits / number of sample values (channels included)."""
    return 8.0 * num_bytes / math.prod(int(s) for s in shape)


def _bjontegaard():
    try:
        import bjontegaard
    except ImportError:
        raise MissingDependencyError("bjontegaard", extra="bench", purpose="BD-rate") from None
    return bjontegaard


def bd_rate(rate_anchor, dist_anchor, rate_test, dist_test) -> float:
    """Bjontegaard delta rate in percent (pchip, as the JVET common test conditions);
    negative = the test codec needs fewer bits at equal quality. The curves may have different
    numbers of points (at least 4 each for a meaningful pchip fit)."""
    bd = _bjontegaard()
    return float(bd.bd_rate(np.asarray(rate_anchor, float), np.asarray(dist_anchor, float),
                            np.asarray(rate_test, float), np.asarray(dist_test, float), method="pchip",
                            require_matching_points=False))


def bd_psnr(rate_anchor, dist_anchor, rate_test, dist_test) -> float:
    """Bjontegaard delta quality (dB for PSNR) at equal rate, pchip; positive = test is better."""
    bd = _bjontegaard()
    return float(bd.bd_psnr(np.asarray(rate_anchor, float), np.asarray(dist_anchor, float),
                            np.asarray(rate_test, float), np.asarray(dist_test, float), method="pchip",
                            require_matching_points=False))
