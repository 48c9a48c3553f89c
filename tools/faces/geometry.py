"""Geometry on face-mesh points shared by the frame checks and the mouth model."""
from __future__ import annotations

import numpy as np


def polygon_mask(polygon: np.ndarray, size: int, supersample: int = 3) -> np.ndarray:
    """(size, size) float coverage of a closed polygon (box coordinates), anti-aliased; only
    the polygon's bounding box is tested."""
    cover = np.zeros((size, size))
    x0 = max(0, int(np.floor(polygon[:, 0].min())) - 1)
    y0 = max(0, int(np.floor(polygon[:, 1].min())) - 1)
    x1 = min(size, int(np.ceil(polygon[:, 0].max())) + 2)
    y1 = min(size, int(np.ceil(polygon[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return cover
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    px, py = polygon[:, 0], polygon[:, 1]
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    part = np.zeros(ys.shape)
    for oy in offsets:
        for ox in offsets:
            x, y = xs + ox, ys + oy
            inside = np.zeros(ys.shape, bool)
            for ax, ay, bx, by in zip(px, py, qx, qy):
                if ay == by:
                    continue
                crosses = (ay > y) != (by > y)
                at_x = ax + (y - ay) * (bx - ax) / (by - ay)
                inside ^= crosses & (x < at_x)
            part += inside
    cover[y0:y1, x0:x1] = part / supersample ** 2
    return cover


def box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 square, edges repeated (running sums: cost independent of r)."""
    if radius < 1:
        return image.astype(np.float64)
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius + 1, radius)
        summed = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis)
        n = out.shape[axis]
        upper = np.take(summed, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lower = np.take(summed, np.arange(0, n), axis=axis)
        out = (upper - lower) / (2 * radius + 1)
    return out


def soft_grow(mask: np.ndarray, grow: int, sigma: float) -> np.ndarray:
    """A coverage mask grown by about `grow` px, then feathered like a Gaussian of `sigma`
    (three box blurs of the same variance)."""
    grown = (box_blur(mask, grow) > 1e-3).astype(np.float64) if grow > 0 else mask.astype(np.float64)
    width = np.sqrt(12 * sigma * sigma / 3 + 1)
    radius = max(1, int(round((width - 1) / 2)))
    for _ in range(3):
        grown = box_blur(grown, radius)
    return np.clip(grown, 0, 1)
