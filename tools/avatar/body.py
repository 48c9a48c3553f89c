"""Background (a blurred hotel/shop lobby) and the body: sweater, shirt collar and neck.

All coordinates are design pixels of the 720x1280 frame; `lift` is the breathing offset in
pixels (negative = chest and shoulders up).
"""
from __future__ import annotations

import logging

import numpy as np

from .canvas import F32, Canvas, clip01, ellipse, polygon, rounded_box, segment, smin, smooth01, soft
from .palette import Palette

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 720, 1280
CENTER_X = 360.0
BODY_Y = -38.0  # the body's drawing sits this much higher than its sketch coordinates below


def _mix(a, b, t: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    return a + (b - a) * t[..., None]


def draw_background(canvas: Canvas, pal: Palette) -> None:
    """Static: drawn once per (palette, scale) and cached by the scene."""
    win = canvas.window((0, 0, WIDTH, HEIGHT))
    if win is None:
        return
    sl, x, y = win
    t = smooth01(clip01(y * F32(1.0 / HEIGHT)))
    canvas.paint(sl, np.ones_like(x * y), _mix(pal.bg_top, pal.bg_bottom, t + 0 * x))
    # A tall window on the left and a second, farther one: big, very soft shapes read as
    # "lobby out of focus" without competing with the face.
    canvas.paint(sl, F32(0.55) * soft(rounded_box(x - F32(95), y - F32(470), 125, 360, 30), 70), pal.bg_light)
    canvas.paint(sl, F32(0.35) * soft(rounded_box(x - F32(300), y - F32(300), 60, 210, 20), 60), pal.bg_light)
    # Reception counter behind the shoulders: a darker horizontal band.
    canvas.paint(sl, F32(0.18) * soft(rounded_box(x - F32(360), y - F32(1000), 420, 90, 20), 50), pal.bg_accent)
    # A plant on the right: overlapping leaf blobs, blurred.
    for cx, cy, rx, ry, a in ((640, 760, 90, 150, 0.55), (590, 660, 70, 90, 0.45), (690, 600, 60, 110, 0.5),
                              (610, 880, 110, 80, 0.5)):
        canvas.paint(sl, F32(a) * soft(ellipse(x - F32(cx), y - F32(cy), rx, ry), 80), pal.bg_accent)
    # Warm ceiling lights (bokeh).
    for cx, cy, r, a in ((470, 120, 26, 0.5), (585, 190, 20, 0.45), (230, 90, 18, 0.4), (660, 70, 30, 0.4),
                         (60, 150, 22, 0.35)):
        canvas.paint(sl, F32(a) * soft(ellipse(x - F32(cx), y - F32(cy), r, r), 14), (1.0, 0.93, 0.78))
    # Gentle vignette keeps the eye on the character.
    vx, vy = (x - F32(CENTER_X)) * F32(1 / 520), (y - F32(620)) * F32(1 / 900)
    canvas.paint(sl, F32(0.16) * clip01(vx * vx + vy * vy - F32(0.35)), (0.25, 0.25, 0.3))


def neck_shape(x: np.ndarray, y: np.ndarray, neck_x: float, lift: float) -> np.ndarray:
    return rounded_box(x - F32(neck_x), y - F32(700 + lift / 2), 62, 150 - lift / 2, 40)


def draw_torso(canvas: Canvas, pal: Palette, lift: float) -> None:
    lift = lift + BODY_Y
    win = canvas.window((0, 720 + lift, WIDTH, HEIGHT))
    if win is None:
        return
    sl, x, y = win
    cx = x - F32(CENTER_X)
    yl = y - F32(lift)
    # Shoulders: a broad low dome for the deltoids, a narrow high one for the trapezius.
    # Trapezius slope from the neck, rounded deltoids at the shoulder points, then the arms
    # straight down from the deltoids' widest point.
    body = smin(ellipse(cx, yl - F32(858), 250, 100), ellipse(np.abs(cx) - F32(252), yl - F32(915), 100, 118), 70)
    body = smin(body, ellipse(cx, yl - F32(1000), 300, 180), 40)
    body = np.minimum(body, rounded_box(cx, yl - F32(1120), 352, 205, 1))
    # Cylinder shading across the chest, light from the upper left, darker toward the waist.
    across = cx * F32(1 / 340)
    shade = F32(1.0) - F32(0.22) * across * across - F32(0.07) * across - F32(0.08) * clip01((yl - F32(850)) / F32(430))
    col = np.asarray(pal.sweater, F32) * shade[..., None]
    canvas.paint(sl, canvas.cov(body), col)
    # Sleeve seams: soft darker curves where the shoulders turn into the arms.
    for side in (-1.0, 1.0):
        seam = segment(x, yl, (CENTER_X + side * 225, 820), (CENTER_X + side * 262, 1280)) - F32(1.5)
        canvas.paint(sl, F32(0.22) * soft(seam, 6) * canvas.cov(body), np.asarray(pal.sweater, F32) * F32(0.6))
    # Soft folds: fabric gathers from the armpits toward the chest, and the left shoulder
    # catches the key light.
    for side in (-1.0, 1.0):
        fold = segment(x, yl, (CENTER_X + side * 250, 960), (CENTER_X + side * 120, 1180)) - F32(6)
        canvas.paint(sl, F32(0.16) * soft(fold, 40) * canvas.cov(body), np.asarray(pal.sweater, F32) * F32(0.55))
    shoulder = ellipse(cx + F32(215), yl - F32(868), 130, 42)
    canvas.paint(sl, F32(0.07) * soft(shoulder, 90) * canvas.cov(body), (1.0, 1.0, 1.0))
    # V-neck: the shirt shows through; a ribbed border frames it.
    vee = [(CENTER_X - 72, 760 + lift), (CENTER_X + 72, 760 + lift), (CENTER_X, 935 + lift)]
    d_vee = polygon(x, y, vee)
    rib = np.abs(d_vee + F32(0)) - F32(9)
    canvas.paint(sl, canvas.cov(rib) * canvas.cov(body) * clip01((y - F32(770 + lift)) * F32(0.2)),
                 np.asarray(pal.sweater, F32) * F32(0.82))
    shirt = np.asarray(pal.shirt, F32) * (F32(0.93) - F32(0.05) * clip01((y - F32(780 + lift)) / F32(150)))[..., None]
    canvas.paint(sl, canvas.cov(d_vee + F32(7)), shirt)


def draw_neck(canvas: Canvas, pal: Palette, neck_x: float, lift: float) -> tuple | None:
    """Paints the neck; returns its window and coverage so the head can shade it (chin shadow)."""
    lift = lift + BODY_Y
    win = canvas.window((neck_x - 68, 520, neck_x + 62, 870 + lift))
    if win is None:
        return None
    sl, x, y = win
    d = neck_shape(x, y, neck_x, lift)
    # Open collar: the neck skin ends in a V inside the shirt.
    d = np.maximum(d, polygon(x, y, [(neck_x - 80, 500), (neck_x + 80, 500), (neck_x + 80, 770 + lift),
                                     (neck_x, 862 + lift), (neck_x - 80, 770 + lift)]))
    across = (x - F32(neck_x)) * F32(1 / 62)
    t = F32(0.35) + F32(0.25) * clip01(across * F32(0.5) + F32(0.5)) + F32(0.12) * across * across
    cov = canvas.cov(d)
    canvas.paint(sl, cov, _mix(pal.skin, pal.skin_shade, clip01(t)))
    return sl, x, y, cov


def draw_collar(canvas: Canvas, pal: Palette, neck_x: float, lift: float) -> None:
    lift = lift + BODY_Y
    win = canvas.window((CENTER_X - 130, 730 + lift, CENTER_X + 130, 920 + lift))
    if win is None:
        return
    sl, x, y = win
    shirt = np.asarray(pal.shirt, F32)
    for side in (-1.0, 1.0):
        n = CENTER_X + side * 0.0
        flap = [(n + side * 58, 748 + lift), (n + side * 98, 800 + lift), (n + side * 20, 905 + lift),
                (n + side * 6, 868 + lift), (neck_x + side * 54, 790 + lift)]
        d = polygon(x, y, flap) + F32(1.0)
        # Shadow the flap casts on the sweater and shirt, then the flap, lit from the left.
        canvas.paint(sl, F32(0.28) * soft(polygon(x - F32(3 * side + 2), y - F32(5), flap), 10), (0.1, 0.1, 0.15))
        lit = F32(0.98) - F32(0.06) * clip01((y - F32(760 + lift)) / F32(140)) - F32(0.04 if side > 0 else 0.0)
        canvas.paint(sl, canvas.cov(d), shirt * lit[..., None])
        edge = np.abs(d + F32(1.5)) - F32(0.7)
        canvas.paint(sl, F32(0.25) * canvas.cov(edge), shirt * F32(0.7))
