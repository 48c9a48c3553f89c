"""A thin-plate-spline warp in numpy: the mouth model's lips, jaw and chin move by it.

Backward mapping: the spline is fitted from where control points go (target) to where they
were (source), and every output pixel samples the source there, bilinearly. Opening a closed
mouth tears it (the upper and lower inner lip start at one line and part); backward mapping
handles that without folds: the pixels of the new gap all map onto the old lip line, and the
mouth model paints the inside of the mouth over them.
"""
from __future__ import annotations

import numpy as np


def _kernel(d2: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r^2 (0 at r = 0), on squared distances."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = d2 * np.log(d2)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) squared distances by |a|^2 + |b|^2 - 2ab: one small matrix product."""
    d2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)


def fit_tps(target: np.ndarray, source: np.ndarray, regularise: float = 1e-3) -> tuple:
    """Spline taking (K, 2) target points to (K, 2) source points. `regularise` (in units of
    the points' spread squared) keeps near-duplicate points (a closed mouth's inner lips)
    solvable and lets the fit pass near, not exactly through, each point."""
    target = np.asarray(target, np.float64)
    source = np.asarray(source, np.float64)
    scale = float(np.ptp(target, axis=0).max()) or 1.0
    t = target / scale
    k = len(t)
    system = np.zeros((k + 3, k + 3))
    system[:k, :k] = _kernel(_sq_dist(t, t)) + regularise * np.eye(k)
    system[:k, k] = 1.0
    system[:k, k + 1:] = t
    system[k, :k] = 1.0
    system[k + 1:, :k] = t.T
    rhs = np.zeros((k + 3, 2))
    rhs[:k] = source / scale
    coeffs = np.linalg.solve(system, rhs)
    return t, coeffs, scale


def apply_tps(spline: tuple, points: np.ndarray) -> np.ndarray:
    """(M, 2) points through the spline (target -> source)."""
    t, coeffs, scale = spline
    p = np.asarray(points, np.float64) / scale
    k = len(t)
    out = _kernel(_sq_dist(p, t)) @ coeffs[:k] + coeffs[k] + p @ coeffs[k + 1:]
    return out * scale


def sample_bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """image (H, W, C) at float coordinates xy (..., 2) = (x, y), edges clamped."""
    h, w = image.shape[:2]
    x = np.clip(xy[..., 0], 0, w - 1.001)
    y = np.clip(xy[..., 1], 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    img = image.astype(np.float32)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def edge_fade(size: int, fade: float) -> np.ndarray:
    """(size, size) weight: 0 on the box edge, rising smoothly to 1 at `fade` of the side."""
    t = np.clip(np.minimum(np.arange(size), np.arange(size)[::-1]) / max(1.0, fade * size), 0, 1)
    ramp = t * t * (3 - 2 * t)
    return np.minimum(ramp[:, None], ramp[None, :])


def warp_region(frame: np.ndarray, box: tuple[int, int, int], target: np.ndarray,
                source: np.ndarray, step: int = 4, fade: float = 0.1) -> np.ndarray:
    """The (size, size, 3) float32 box at (x, y) of `frame`, warped so that the source control
    points (frame coordinates) land on the target ones. The spline is smooth, so it is
    evaluated every `step` pixels and the map interpolated between (16x fewer evaluations).
    The displacement fades to 0 over the outer `fade` of the box: a spline is global, and
    fixed points on the edge alone still let the pixels between them move; this way the
    box's edge is the frame's, exactly."""
    x, y, size = box
    spline = fit_tps(target, source)
    coarse = np.arange(0, size + step, step, dtype=np.float64)
    cy, cx = np.meshgrid(coarse, coarse, indexing="ij")
    grid = np.stack([cx.ravel() + x, cy.ravel() + y], axis=1)
    mapped = apply_tps(spline, grid).reshape(len(coarse), len(coarse), 2)
    fine = np.arange(size, dtype=np.float64) / step
    dense = sample_bilinear(mapped, np.stack(np.meshgrid(fine, fine, indexing="xy"), axis=-1))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    identity = np.stack([xx + x, yy + y], axis=-1)
    dense = identity + (dense - identity) * edge_fade(size, fade)[..., None]
    return sample_bilinear(frame, dense)
