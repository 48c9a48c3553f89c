"""Image metrics on uint8 RGB: PSNR over [0, 255] and SSIM (Wang et al. 2004) on luma.

SSIM here is the reference definition: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
K2 = 0.03, dynamic range 255, computed on BT.601 luma and averaged over the positions where
the whole window fits ("valid", no padding, like the authors' ssim_index.m). numpy only:
the window is separable, so each blur is 2 x 11 shifted adds.
"""
from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

PEAK = 255.0
#: Per-sample PSNR is capped here before averaging: an exact match (MSE 0) would otherwise
#: make every mean infinite. 100 dB is far above any goal, so the cap never decides one.
PSNR_CAP_DB = 100.0
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
_LUMA = np.array([0.299, 0.587, 0.114], np.float64)


def mse(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Mean squared error over all channels; `where` (h, w) bool restricts the pixels."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    if where is not None:
        diff = diff[where]
        if diff.size == 0:
            return float("nan")
    return float(np.mean(diff * diff))


def psnr_from_mse(value: float) -> float:
    """dB on the [0, 255] scale; inf for an exact match, nan for an empty region."""
    if value != value:
        return float("nan")
    if value <= 0.0:
        return float("inf")
    return 10.0 * math.log10(PEAK * PEAK / value)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    return psnr_from_mse(mse(a, b, where))


def _gaussian_taps() -> np.ndarray:
    x = np.arange(SSIM_WINDOW, dtype=np.float64) - (SSIM_WINDOW - 1) / 2.0
    taps = np.exp(-x * x / (2.0 * SSIM_SIGMA * SSIM_SIGMA))
    return taps / taps.sum()


_TAPS = _gaussian_taps()


def _blur_valid(img: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter, output only where the window lies inside the image."""
    n = SSIM_WINDOW
    h, w = img.shape
    rows = np.zeros((h - n + 1, w), np.float64)
    for i, tap in enumerate(_TAPS):
        rows += tap * img[i:i + h - n + 1]
    out = np.zeros((h - n + 1, w - n + 1), np.float64)
    for i, tap in enumerate(_TAPS):
        out += tap * rows[:, i:i + w - n + 1]
    return out


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma in [0, 255], float64 (no rounding: SSIM sees the exact weighted sum)."""
    return rgb.astype(np.float64) @ _LUMA


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (h, w, 3) uint8 images (or (h, w) grey) on luma; 1.0 when identical."""
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ {a.shape} vs {b.shape}")
    x = luma(a) if a.ndim == 3 else a.astype(np.float64)
    y = luma(b) if b.ndim == 3 else b.astype(np.float64)
    if min(x.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim: image {x.shape} smaller than the {SSIM_WINDOW}px window")
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    mu_x, mu_y = _blur_valid(x), _blur_valid(y)
    var_x = _blur_valid(x * x) - mu_x * mu_x
    var_y = _blur_valid(y * y) - mu_y * mu_y
    cov = _blur_valid(x * y) - mu_x * mu_y
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return float(np.mean(num / den))


def summarize(values, cap: float | None = None) -> dict:
    """mean / median / p05 / min / max of finite-or-capped values (nan entries are left out)."""
    arr = np.asarray([v for v in values if v == v], np.float64)
    if cap is not None:
        arr = np.minimum(arr, cap)
    if arr.size == 0:
        return {"n": 0, "mean": None, "median": None, "p05": None, "min": None, "max": None}
    return {"n": int(arr.size), "mean": round(float(arr.mean()), 4),
            "median": round(float(np.median(arr)), 4),
            "p05": round(float(np.percentile(arr, 5)), 4),
            "min": round(float(arr.min()), 4), "max": round(float(arr.max()), 4)}
