from __future__ import annotations

import math

import numpy as np
import pytest

from neurocodec import metrics
from neurocodec.errors import UsageError


def test_psnr_hand_computed():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 10  # MSE = 100 / 48
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 48 / 100))
    assert metrics.psnr(a, a) == math.inf
    assert metrics.psnr(np.zeros(4), np.ones(4), data_range=1.0) == pytest.approx(0.0)


def test_video_psnr_is_mean_of_frames():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0] += 1  # frame 0: MSE 1 ; frame 1: MSE 4
    b[1] += 2
    expected = (10 * math.log10(255**2) + 10 * math.log10(255**2 / 4)) / 2
    assert metrics.video_psnr(a, b) == pytest.approx(expected)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 2.5))


def test_ssim_identity_and_ordering():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    noisy = np.clip(img + rng.normal(0, 10, img.shape), 0, 255)
    noisier = np.clip(img + rng.normal(0, 40, img.shape), 0, 255)
    assert metrics.ssim(img, img) == pytest.approx(1.0)
    assert metrics.ms_ssim(img, img) == pytest.approx(1.0)
    assert 0 < metrics.ms_ssim(img, noisier) < metrics.ms_ssim(img, noisy) < 1
    assert metrics.ssim(img, noisier) < metrics.ssim(img, noisy)


def test_ssim_constant_shift_hand_computed():
    # Two constant images: SSIM = luminance term (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    a = np.full((32, 32), 100.0)
    b = np.full((32, 32), 120.0)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    assert metrics.ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_ms_ssim_small_frames_and_video():
    rng = np.random.default_rng(1)
    clip = rng.integers(0, 256, (2, 20, 24, 3)).astype(np.uint8)
    value = metrics.ms_ssim(clip, clip // 2)
    assert 0 < value < 1


def test_bpp_bpd_pixel_counting():
    assert metrics.bpp(100, (10, 10, 3)) == 8.0
    assert metrics.bpp(100, (2, 10, 10, 3)) == 4.0          # frames count as pixels
    assert metrics.bpp(100, (10, 10)) == 8.0
    assert metrics.bpd(300, (10, 10, 3)) == 8.0
    assert metrics.bpd(784, (1, 28, 28)) == 8.0


def test_bd_rate_known_shift():
    rate = np.array([0.1, 0.2, 0.4, 0.8])
    psnr = np.array([30.0, 33.0, 36.0, 39.0])
    # the test codec needs 20% fewer bits at every quality
    assert metrics.bd_rate(rate, psnr, rate * 0.8, psnr) == pytest.approx(-20.0, abs=1e-6)
    # at equal rate the test codec is 1 dB better
    assert metrics.bd_psnr(rate, psnr, rate, psnr + 1) == pytest.approx(1.0, abs=1e-6)


def test_shape_mismatch():
    with pytest.raises(UsageError):
        metrics.psnr(np.zeros(3), np.zeros(4))


def test_bd_rate_accepts_unequal_point_counts():
    rate = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    psnr = 30 + 3 * np.log2(rate / 0.1)
    test_rate = np.array([0.1, 0.25, 0.5, 1.0]) * 0.5
    test_psnr = 30 + 3 * np.log2(test_rate / 0.05)
    assert metrics.bd_rate(rate, psnr, test_rate, test_psnr) == pytest.approx(-50.0, abs=0.5)


def test_detail_ratio_orders_blur_identity_and_noise():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    ref = (127 + 60 * np.sin(xx / 2.0) * np.cos(yy / 3.0) + rng.normal(0, 5, (64, 64))).clip(0, 255)
    ref = np.stack([ref] * 3, axis=-1).astype(np.uint8)
    blur = ((ref[:-2].astype(float) + ref[1:-1] + ref[2:]) / 3)
    blur = np.concatenate([ref[:1], blur, ref[-1:]]).astype(np.uint8)
    noisy = (ref + rng.normal(0, 25, ref.shape)).clip(0, 255).astype(np.uint8)
    assert metrics.detail_ratio(ref, ref) == pytest.approx(1.0)
    assert metrics.detail_ratio(blur, ref) < 0.8 < 1.2 < metrics.detail_ratio(noisy, ref)
    flat = np.full((8, 8), 7, np.uint8)
    assert metrics.detail_ratio(flat, flat) == 1.0
    assert metrics.detail_ratio(np.eye(8, dtype=np.uint8) * 9, flat) == math.inf
    with pytest.raises(UsageError):
        metrics.detail_ratio(np.zeros((1, 9)), np.zeros((1, 9)))


def test_psnr_yuv_weights_and_planes():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 8, 10, 3), dtype=np.uint8)
    assert metrics.psnr_yuv(a, a) == float("inf")
    y, u, v = metrics.rgb_to_yuv420(a)
    assert y.shape == (2, 8, 10) and u.shape == v.shape == (2, 4, 5)
    white = np.full((2, 2, 3), 255, np.uint8)
    assert [float(p.ravel()[0]) for p in metrics.rgb_to_yuv420(white)] == [235.0, 128.0, 128.0]  # BT.601 tv range
    b = a.copy()
    b[..., 1] = np.clip(b[..., 1].astype(int) + 9, 0, 255)  # green moves luma most
    py, pu, pv = (10 * np.log10(255**2 / np.mean((p - q) ** 2, axis=(1, 2)))
                  for p, q in zip(metrics.rgb_to_yuv420(a), metrics.rgb_to_yuv420(b)))
    assert metrics.psnr_yuv(a, b) == pytest.approx(float(np.mean((6 * py + pu + pv) / 8)))
    with pytest.raises(UsageError):
        metrics.psnr_yuv(a[:, :7], b[:, :7])  # odd height
