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
