"""Bilinear resizing with cached tables: the renderer rescales small crops every frame."""
from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=32)
def _table(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Pixel-centre alignment (like align_corners=False): no half-pixel shift between sizes.
    pos = (np.arange(dst, dtype=np.float32) + 0.5) * (src / dst) - 0.5
    pos = np.clip(pos, 0, src - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, src - 1)
    frac = (pos - lo).astype(np.float32)
    return lo, hi, frac


def resize_hwc(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, c) float32 -> (height, width, c) float32, bilinear."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    y0, y1, fy = _table(h, height)
    x0, x1, fx = _table(w, width)
    rows = image[y0] * (1 - fy)[:, None, None] + image[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def resize_chw(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(c, h, w) float32 -> (c, height, width) float32, bilinear."""
    if image.shape[1:] == (height, width):
        return image
    return np.ascontiguousarray(resize_hwc(image.transpose(1, 2, 0), height, width).transpose(2, 0, 1))


def shrink_chw(image: np.ndarray, size: int) -> np.ndarray:
    """(c, s, s) float32 -> (c, size, size): area means when s is a multiple of size (what
    the renderer stages were trained on; bilinear would alias), else bilinear."""
    c, h, w = image.shape
    fy, fx = h // size, w // size
    if fy * size != h or fx * size != w or fy < 1:
        return resize_chw(image, size, size)
    if fy == 1 and fx == 1:
        return image
    return np.ascontiguousarray(image.reshape(c, size, fy, size, fx).mean(axis=(2, 4), dtype=np.float32))
