"""The mouth model: six parameters in [0, 1] -> lips, interior, teeth, tongue and jaw drop.

Parameters (docs/ARCHITECTURE.md): open, wide, round, press, bite, teeth. Every shape quantity below is
a polynomial in the parameters, and every region is a band between two curves whose coverage
is exactly zero at zero thickness (Canvas.band), so the mouth changes continuously with the
parameters and all zeros is the closed resting mouth that the template loop is drawn with.

Curves are functions of x in head-local pixels relative to the mouth centre, y grows down.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .canvas import F32, Canvas, clip01, ellipse, soft
from .palette import Palette

log = logging.getLogger(__name__)

PARAM_NAMES = ("open", "wide", "round", "press", "bite", "teeth")
MOUTH_Y = 128.0          # mouth centre in head-local coordinates (origin between the eyes)
UPPER_TEETH_HALF = 28.0  # teeth are fixed to the skull and jaw: their width never changes
LOWER_TEETH_HALF = 25.0
REACH = (-62.0, -36.0, 62.0, 74.0)  # local bbox (relative to the centre) of everything drawn here


@dataclass(frozen=True)
class MouthShape:
    """Scalar shape of the mouth for one parameter vector (pixels at the 720x1280 design size)."""

    half_width: float    # lip corners at +-half_width
    corner_y: float      # corner height relative to the centre line (negative = up, a smile)
    lift_upper: float    # upper inner lip raise at the centre
    drop_lower: float    # lower inner lip drop at the centre (negative: tucked up, bite)
    jaw: float           # jaw drop: lower teeth, tongue and chin move down by this much
    upper_thick: float   # visible red of the upper lip at the centre
    lower_thick: float
    roundness: float     # 0..1 opening profile: flat ellipse-ish -> round
    bite_overlap: float  # how far the upper teeth reach over the lower lip
    tongue_up: float     # tongue tip raise toward the upper teeth
    press: float
    pucker: float

    @staticmethod
    def from_params(params) -> "MouthShape":
        o, w, r, p, b, t = (min(max(float(v), 0.0), 1.0) for v in params)
        close = 1.0 - 0.85 * p           # pressed lips hold the mouth shut
        jaw = (26.0 * o + 4.0 * t + 3.0 * r * o) * close
        return MouthShape(
            half_width=36.0 * (1.0 + 0.30 * w - 0.12 * w * r) * (1.0 - 0.32 * r) * (1.0 - 0.07 * o * (1 - w)),
            corner_y=-2.5 - 3.0 * w + 2.0 * r + 1.0 * p + 0.12 * jaw,
            lift_upper=(0.24 * jaw + 3.5 * t + 2.5 * w * o) * close + 3.0 * b,
            drop_lower=jaw + 4.0 * t * close + 2.0 * w * o * close - 4.0 * b,
            jaw=jaw,
            upper_thick=9.0 * (1.0 - 0.5 * p) * (1.0 - 0.3 * w) * (1.0 + 0.45 * r),
            lower_thick=12.5 * (1.0 - 0.45 * p) * (1.0 - 0.3 * w) * (1.0 + 0.4 * r) * (1.0 - 0.1 * b),
            roundness=min(1.0, max(0.0, 0.45 + 0.55 * r - 0.3 * w)),
            bite_overlap=6.0 * b,
            tongue_up=t * (0.6 + 0.4 * o),
            press=p,
            pucker=r,
        )


def _slope(f, x: np.ndarray) -> np.ndarray:
    # Central difference over half a design pixel: elementwise, so still exact per pixel.
    h = F32(0.5)
    return (f(x + h) - f(x - h)) * F32(1.0)


class MouthCurves:
    """The lip curves of one MouthShape, evaluated on head-local pixel coordinates."""

    def __init__(self, m: MouthShape) -> None:
        self.m = m
        self.inner_w = m.half_width * (0.9 - 0.12 * m.roundness)

    def xn(self, x):
        return x * F32(1.0 / self.m.half_width)

    def seam(self, x):
        xn = self.xn(x)
        return F32(self.m.corner_y) * xn * xn

    def opening(self, x):
        """0..1 profile of the opening across the mouth: mixes a parabola with an ellipse."""
        q = clip01(F32(1.0) - (x * F32(1.0 / self.inner_w)) ** 2)
        k = F32(self.m.roundness)
        return q + (np.sqrt(q) - q) * k

    def lip_profile(self, x):
        q = clip01(F32(1.0) - self.xn(x) ** 2)
        return q * (F32(0.55) + F32(0.45) * np.sqrt(q))

    def upper_inner(self, x):
        return self.seam(x) - F32(self.m.lift_upper) * self.opening(x)

    def lower_inner(self, x):
        return self.seam(x) + F32(self.m.drop_lower) * self.opening(x)

    def upper_outer(self, x):
        xn = self.xn(x)
        # Cupid's bow: a dip at the centre between two peaks.
        bow = F32(1.0) - F32(0.28) / (F32(1.0) + (xn * F32(1.0 / 0.16)) ** 2)
        lift = F32(0.7 * self.m.lift_upper) * self.opening(x)
        return self.seam(x) - lift - F32(self.m.upper_thick) * self.lip_profile(x) * bow

    def lower_outer(self, x):
        return self.lower_inner(x) + F32(self.m.lower_thick) * self.lip_profile(x)

    def upper_teeth_bottom(self, x):
        xt = x * F32(1.0 / UPPER_TEETH_HALF)
        arch = F32(-1.0) + F32(3.0) * xt * xt  # fixed to the skull: the jaw does not move it
        reach = F32(self.m.bite_overlap) * clip01(F32(1.0) - xt * xt)
        return np.minimum(arch, self.lower_inner(x)) + reach

    def lower_teeth_top(self, x):
        xt = x * F32(1.0 / LOWER_TEETH_HALF)
        return F32(1.5 + self.m.jaw) + F32(3.0) * xt * xt


def draw_mouth(canvas: Canvas, sl, u: np.ndarray, v: np.ndarray, pal: Palette, m: MouthShape) -> None:
    """Paint the mouth into canvas[sl]; (u, v) are head-local coordinates of those pixels."""
    c = MouthCurves(m)
    x, y = u, v - F32(MOUTH_Y)
    band = canvas.band

    # Skin around the lips: pushed-forward lips cast a ring of shade, pressed lips bulge.
    ring = soft(ellipse(x, y - F32(4), m.half_width + 12, 22), 22) * F32(0.10 * m.pucker + 0.05 * m.press)
    canvas.paint(sl, ring, np.asarray(pal.skin_shade, F32))
    lo_c = float(m.drop_lower + m.lower_thick)
    chin_shadow = soft(ellipse(x, y - F32(lo_c + 6.0), 0.62 * m.half_width, 5.5), 9)
    canvas.paint(sl, chin_shadow * F32(0.24 + 0.15 * m.pucker + 0.12 * m.press),
                 np.asarray(pal.skin_shade, F32) * F32(0.92))

    ui, li = c.upper_inner(x), c.lower_inner(x)
    s_ui, s_li = _slope(c.upper_inner, x), _slope(c.lower_inner, x)
    inside = band(y, ui, li, s_ui, s_li)
    depth = clip01((y - ui) / (np.maximum(li - ui, F32(0.0)) + F32(1.0)))  # 0 at the upper lip, 1 at the lower
    dark = F32(0.55) + F32(0.45) * np.abs(depth - F32(0.35)) * F32(1.4)
    canvas.paint(sl, inside, np.asarray(pal.mouth, F32) * dark[..., None])

    # Tongue: rests low in the jaw; "teeth" raises its tip behind the upper teeth.
    ty = m.jaw * 0.75 + 9.0 - m.tongue_up * (m.jaw * 0.55 + 6.0)
    tongue = canvas.cov(ellipse(x, y - F32(ty), 0.62 * m.half_width, 8.0 + 0.2 * m.jaw)) * inside
    tshade = F32(0.8) + F32(0.2) * clip01((y - F32(ty - 8.0)) * F32(1 / 12))
    canvas.paint(sl, tongue, np.asarray(pal.tongue, F32) * tshade[..., None])

    teeth = np.asarray(pal.teeth, F32)
    lt = c.lower_teeth_top(x)
    lower_teeth = band(y, lt, li + F32(1.0), _slope(c.lower_teeth_top, x), s_li) * inside
    lower_teeth = lower_teeth * canvas.cov(np.abs(x) - F32(LOWER_TEETH_HALF))
    canvas.paint(sl, lower_teeth, teeth * (F32(0.86) - F32(0.12) * (x * F32(1 / LOWER_TEETH_HALF)) ** 2)[..., None])

    # Lower lip, then the upper teeth (which reach over it when biting), then the upper lip.
    lo = c.lower_outer(x)
    lower = band(y, li, lo, s_li, _slope(c.lower_outer, x))
    lt_pos = clip01((y - li) / (np.maximum(lo - li, F32(0.0)) + F32(0.5)))
    lower_col = np.asarray(pal.lip_shade, F32) + (np.asarray(pal.lip, F32) - np.asarray(pal.lip_shade, F32)) * \
        (F32(0.35) + F32(0.65) * np.sqrt(lt_pos))[..., None]
    canvas.paint(sl, lower, lower_col)
    shine = soft(ellipse(x + F32(4), y - (li + F32(0.45 * m.lower_thick)), 0.38 * m.half_width,
                         0.2 * m.lower_thick + 0.6), 4) * lower
    canvas.paint(sl, shine * F32(0.28 * (1 - 0.5 * m.press)), (1.0, 0.95, 0.93))

    ub = c.upper_teeth_bottom(x)
    # The teeth start 1.5 px up under the upper lip, so the lip edge, not a seam between two
    # anti-aliased edges, is what shows.
    upper_teeth = band(y, ui - F32(1.5), ub, s_ui, _slope(c.upper_teeth_bottom, x))
    upper_teeth = upper_teeth * canvas.cov(np.abs(x) - F32(UPPER_TEETH_HALF))
    xt = x * F32(1.0 / UPPER_TEETH_HALF)
    tooth_col = teeth * (F32(0.97) - F32(0.13) * xt * xt - F32(0.10) * clip01((ui + F32(3) - y) * F32(0.3)))[..., None]
    canvas.paint(sl, upper_teeth, tooth_col)
    # Faint gaps between incisors and canines.
    for gx in (0.0, -8.5, 8.5, -16.5, 16.5, -23.0, 23.0):
        gap = (np.abs(x - F32(gx)) - F32(0.35)) * F32(1.0)
        canvas.paint(sl, upper_teeth * canvas.cov(gap) * F32(0.35), teeth * F32(0.7))

    uo = c.upper_outer(x)
    upper = band(y, uo, ui, _slope(c.upper_outer, x), s_ui)
    up_pos = clip01((y - uo) / (np.maximum(ui - uo, F32(0.0)) + F32(0.5)))
    upper_col = np.asarray(pal.lip_shade, F32) + (np.asarray(pal.lip, F32) - np.asarray(pal.lip_shade, F32)) * \
        (F32(0.75) - F32(0.55) * up_pos)[..., None]
    canvas.paint(sl, upper, upper_col)
    # Vermilion border catches light: a thin bright rim along the top of the upper lip.
    rim = band(y, uo, uo + F32(1.6)) * upper
    canvas.paint(sl, rim * F32(0.18), (1.0, 0.92, 0.9))

    # The line where the lips meet; darker and straighter when pressed. It tapers to the
    # corners, which get a small soft dimple (a friendly resting expression).
    mid = (ui + li) * F32(0.5)
    taper = clip01(F32(1.0) - c.xn(x) ** 2)
    line_w = F32(0.7 + 0.3 * m.press) * (F32(0.4) + F32(0.6) * taper)
    line = band(y, mid - line_w, mid + line_w) * canvas.cov(np.abs(x) - F32(m.half_width))
    line = line * clip01(F32(1.0) - (li - ui) * F32(1 / 4))  # an open mouth has no seam line
    canvas.paint(sl, line * F32(0.55 + 0.3 * m.press), np.asarray(pal.lip_shade, F32) * F32(0.45))
    for side in (-1.0, 1.0):
        dimple = soft(ellipse(x - F32(side * (m.half_width + 1.5)), y - F32(m.corner_y + 0.5), 3.5, 2.5), 4)
        canvas.paint(sl, dimple * F32(0.2), np.asarray(pal.lip_shade, F32) * F32(0.8))
