"""Signed-distance shapes and a region canvas that paints them with analytic anti-aliasing.

Design coordinates are frame pixels of the 720x1280 product canvas; a canvas renders a
rectangular region of that frame at `scale` output pixels per design pixel.

Why region rendering is exact: every value a layer paints at a pixel is computed by elementwise
numpy operations on that pixel's own coordinates (no blur, no reduction, no neighbour access),
and only exactly-rounded operations (+ - * / sqrt, min/max, clip) touch per-pixel data. So a
pixel rendered as part of the whole frame and the same pixel rendered as part of a small box get
bit-identical results; the dataset's "all-zero parameters == template" guarantee rests on this.
Transcendentals (sin, exp, pow) are only ever applied to per-frame scalars, because numpy's
SIMD and scalar paths for them may round differently.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

F32 = np.float32


def clip01(a: np.ndarray) -> np.ndarray:
    return np.clip(a, F32(0.0), F32(1.0))


def smooth01(t: np.ndarray) -> np.ndarray:
    """Smoothstep of an already clipped ramp: no visible kink where a soft edge ends."""
    return t * t * (F32(3.0) - F32(2.0) * t)


def soft(d: np.ndarray, width: float) -> np.ndarray:
    """1 well inside (d <= -width/2), 0 well outside, smooth in between (soft shadows, glows)."""
    return smooth01(clip01(F32(0.5) - d * F32(1.0 / width)))


def ellipse(x: np.ndarray, y: np.ndarray, rx: float, ry: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (exact on the boundary's normal
    direction to first order; good enough for one-pixel coverage and soft falloffs)."""
    ax, ay = x * F32(1.0 / rx), y * F32(1.0 / ry)
    k0 = np.sqrt(ax * ax + ay * ay)
    bx, by = ax * F32(1.0 / rx), ay * F32(1.0 / ry)
    k1 = np.sqrt(bx * bx + by * by) + F32(1e-6)  # the centre has no gradient
    return k0 * (k0 - F32(1.0)) / k1


def circle(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return np.sqrt(x * x + y * y) - F32(r)


def rounded_box(x: np.ndarray, y: np.ndarray, hw: float, hh: float, r: float) -> np.ndarray:
    qx = np.abs(x) - F32(hw - r)
    qy = np.abs(y) - F32(hh - r)
    ox, oy = np.maximum(qx, F32(0.0)), np.maximum(qy, F32(0.0))
    return np.sqrt(ox * ox + oy * oy) + np.minimum(np.maximum(qx, qy), F32(0.0)) - F32(r)


def segment(x: np.ndarray, y: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Unsigned distance to the segment a-b (subtract a radius for a capsule)."""
    bax, bay = b[0] - a[0], b[1] - a[1]
    inv = 1.0 / max(bax * bax + bay * bay, 1e-9)
    px, py = x - F32(a[0]), y - F32(a[1])
    h = clip01((px * F32(bax) + py * F32(bay)) * F32(inv))
    dx, dy = px - h * F32(bax), py - h * F32(bay)
    return np.sqrt(dx * dx + dy * dy)


def polygon(x: np.ndarray, y: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
    """Signed distance to a simple polygon (inside negative), elementwise over its edges."""
    d = None
    sign = np.ones_like(x * y)
    n = len(pts)
    for i in range(n):
        (ax, ay), (bx, by) = pts[i], pts[i - 1]
        e = segment(x, y, (ax, ay), (bx, by))
        d = e if d is None else np.minimum(d, e)
        # Crossing-number parity, written as elementwise comparisons.
        c1 = y >= F32(ay)
        c2 = y < F32(by)
        c3 = F32(bx - ax) * (y - F32(ay)) > F32(by - ay) * (x - F32(ax))
        flip = (c1 & c2 & c3) | (~c1 & ~c2 & ~c3)
        sign = np.where(flip, -sign, sign)
    return sign * d


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth union: blends two outlines over about k pixels (organic joins)."""
    h = clip01(F32(0.5) + F32(0.5 / k) * (b - a))
    return b + (a - b) * h - F32(k) * h * (F32(1.0) - h)


def smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    return -smin(-a, -b, k)


@dataclass(frozen=True)
class Rigid:
    """Design -> local coordinates of a rigid part (the head): rotation by `angle` radians
    and magnification `zoom` about `origin` (where local (0, 0) sits in the frame). Local
    distances are then 1/zoom design pixels; with zoom near 1 the anti-aliasing ramp is
    still about one pixel wide, so shapes keep using Canvas.cov unchanged."""

    origin_x: float
    origin_y: float
    angle: float
    zoom: float = 1.0

    def to_local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = F32(math.cos(self.angle) / self.zoom), F32(math.sin(self.angle) / self.zoom)
        dx, dy = x - F32(self.origin_x), y - F32(self.origin_y)
        return c * dx + s * dy, c * dy - s * dx

    def to_frame(self, u: float, v: float) -> tuple[float, float]:
        c, s = math.cos(self.angle) * self.zoom, math.sin(self.angle) * self.zoom
        return self.origin_x + c * u - s * v, self.origin_y + s * u + c * v

    def frame_bbox(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """Frame-space bounds of a local-space box (x0, y0, x1, y1)."""
        xs, ys = zip(*(self.to_frame(u, v) for u in (box[0], box[2]) for v in (box[1], box[3])))
        return min(xs), min(ys), max(xs), max(ys)


class Canvas:
    """An RGB float32 buffer for the frame region [x0, x0 + w) x [y0, y0 + h) (output pixels)."""

    def __init__(self, x0: int, y0: int, width: int, height: int, scale: float) -> None:
        self.x0, self.y0, self.width, self.height, self.scale = x0, y0, width, height, scale
        self.px = 1.0 / scale  # one output pixel in design units: the anti-aliasing width
        self.rgb = np.zeros((height, width, 3), F32)

    def window(self, bbox: tuple[float, float, float, float]):
        """(slices, X, Y) for the part of this canvas inside a design-space bbox, else None.
        X is (1, w) and Y is (h, 1): pixel centres in design coordinates."""
        s = self.scale
        ix0 = max(self.x0, int(math.floor(bbox[0] * s)) - 1)
        iy0 = max(self.y0, int(math.floor(bbox[1] * s)) - 1)
        ix1 = min(self.x0 + self.width, int(math.ceil(bbox[2] * s)) + 1)
        iy1 = min(self.y0 + self.height, int(math.ceil(bbox[3] * s)) + 1)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        # (i + 0.5) / s depends on the pixel index only, never on the region: exactness.
        xs = ((np.arange(ix0, ix1, dtype=np.float64) + 0.5) / s).astype(F32)[None, :]
        ys = ((np.arange(iy0, iy1, dtype=np.float64) + 0.5) / s).astype(F32)[:, None]
        sl = (slice(iy0 - self.y0, iy1 - self.y0), slice(ix0 - self.x0, ix1 - self.x0))
        return sl, xs, ys

    def cov(self, d: np.ndarray) -> np.ndarray:
        """One-pixel box-filter coverage of the inside (d < 0) of a signed distance."""
        return clip01(F32(0.5) - d * F32(self.scale))

    def band(self, y: np.ndarray, top: np.ndarray, bottom: np.ndarray,
             top_slope: np.ndarray | float = 0.0, bottom_slope: np.ndarray | float = 0.0) -> np.ndarray:
        """Coverage of the region between two curves y = top(x) and y = bottom(x).

        cov(top edge) + cov(bottom edge) - 1, capped by the thickness in pixels, so a region
        that shrinks to nothing (a closed mouth's opening) fades out continuously and paints
        nothing at zero thickness. Slopes normalise the vertical distances.
        """
        nt = F32(1.0) / np.sqrt(F32(1.0) + top_slope * top_slope)
        nb = F32(1.0) / np.sqrt(F32(1.0) + bottom_slope * bottom_slope)
        s = F32(self.scale)
        ct = clip01(F32(0.5) + (y - top) * nt * s)
        cb = clip01(F32(0.5) + (bottom - y) * nb * s)
        # The thickness cap makes coincident curves paint exactly nothing even when their
        # slopes (and so their normalisations) differ.
        return np.minimum(clip01(ct + cb - F32(1.0)), clip01((bottom - top) * s))

    def paint(self, sl, alpha: np.ndarray, color) -> None:
        """Over-composite a colour (RGB tuple or (h, w, 3) array) with coverage alpha."""
        if not np.any(alpha):  # most soft features miss most windows; skipping is exact
            return
        out = self.rgb[sl]
        col = np.asarray(color, F32)
        a = np.broadcast_to(alpha, out.shape[:2])[..., None]
        out += (col - out) * a

    def to_uint8(self) -> np.ndarray:
        return (clip01(self.rgb) * F32(255.0) + F32(0.5)).astype(np.uint8)
