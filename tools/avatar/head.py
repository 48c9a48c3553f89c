"""The head: hair (a bob that covers the ears), face with a jaw that drops, eyes that blink, brows, nose, mouth.

Head-local coordinates: origin between the eyes, x right, y down, in design pixels; the
scene places the head with a Rigid transform (sway and tilt). Only the jaw warp and the
mouth depend on the mouth parameters, and both stay inside mouth.REACH / JAW_REACH around
the mouth, which is what keeps a parameter change inside the crop box.
"""
from __future__ import annotations

import logging

import numpy as np

from .canvas import F32, Canvas, Rigid, clip01, ellipse, segment, smax, smin, smooth01, soft
from .mouth import MOUTH_Y, REACH, MouthShape, draw_mouth
from .palette import Palette

log = logging.getLogger(__name__)

HEAD_BBOX = (-190.0, -250.0, 190.0, 290.0)  # local bounds of everything the head draws
JAW_HALF = 84.0          # the jaw warp fades to zero at +-JAW_HALF from the centre line
JAW_TOP = MOUTH_Y        # ... and above the mouth line
JAW_REACH = (-JAW_HALF, JAW_TOP, JAW_HALF, 245.0)
EYE_X, EYE_HALF, EYE_UP, EYE_DOWN = 60.0, 27.0, 15.0, 8.5


def _mix(a, b, t: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    return a + (b - a) * t[..., None]


def jaw_shift(x: np.ndarray, y: np.ndarray, jaw: float) -> np.ndarray:
    """Downward displacement of the lower face: full at the chin, zero at the jaw hinges and
    above the mouth line (compact support, so nothing outside the mouth box moves)."""
    if jaw == 0.0:
        return np.zeros_like(x * y)
    q = (x * F32(1.0 / JAW_HALF)) ** 2
    wx = clip01(F32(1.0) - q * q)  # flat in the middle: the chin moves down without a point
    wy = smooth01(clip01((y - F32(JAW_TOP)) * F32(1.0 / 55.0)))
    return F32(jaw) * wx * wx * wy


def face_sdf(x: np.ndarray, y: np.ndarray, jaw: float) -> np.ndarray:
    ys = y - jaw_shift(x, y, jaw)
    cranium = ellipse(x, ys + F32(18), 136, 165)
    jawline = ellipse(x, ys - F32(86), 104, 112)
    cheeks = ellipse(x, ys - F32(48), 126, 92)
    return smin(smin(cranium, cheeks, 30), jawline, 34)


def hair_back_sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A chin-length bob: the crown plus two side masses that flare a little at the ends."""
    crown = ellipse(x, y + F32(46), 172, 192)
    sides = np.minimum(ellipse(x - F32(116), y - F32(78), 74, 108), ellipse(x + F32(116), y - F32(78), 74, 108))
    return smin(crown, sides, 46)


def hair_front_sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cap = smax(ellipse(x - F32(2), y + F32(48), 166, 186), y - F32(95), 24)
    # The uncovered forehead is an ellipse shifted left: the fringe sweeps to the right.
    face_open = ellipse(x + F32(17), y - F32(55), 125, 150)  # clears the left cheek: no notch
    return smax(cap, -face_open, 14)


def _local_window(canvas: Canvas, rig: Rigid, box):
    win = canvas.window(rig.frame_bbox(box))
    if win is None:
        return None
    sl, X, Y = win
    u, v = rig.to_local(X, Y)
    return sl, u, v


def draw_hair_back(canvas: Canvas, pal: Palette, rig: Rigid) -> None:
    win = _local_window(canvas, rig, (-195, -245, 195, 192))
    if win is None:
        return
    sl, u, v = win
    d = hair_back_sdf(u, v)
    cov = canvas.cov(d)
    t = clip01((v + F32(40)) * F32(1 / 220))
    canvas.paint(sl, cov, _mix(pal.hair, np.asarray(pal.hair, F32) * F32(0.6), t))
    # Long strands down the side masses (arcs of big circles), a lit one on each side, and
    # the ends curling under (darker rim along the bottom edge).
    for side in (-1.0, 1.0):
        for r, a, lit in ((300.0, 0.22, False), (322.0, 0.18, False), (346.0, 0.2, False), (312.0, 0.3, True)):
            ring = np.sqrt((u * F32(side) + F32(190)) ** 2 + (v - F32(60)) ** 2)
            arc = np.abs(ring - F32(r)) - F32(2.5 if lit else 0.8)
            colour = pal.hair_light if lit else np.asarray(pal.hair, F32) * F32(0.5)
            canvas.paint(sl, soft(arc, 3 if not lit else 7) * cov * clip01((v + F32(20)) * F32(0.02)) * F32(a), colour)
    ends = soft(d + F32(10), 20) * clip01((v - F32(110)) * F32(1 / 50))
    canvas.paint(sl, ends * cov * F32(0.35), np.asarray(pal.hair, F32) * F32(0.45))


def draw_chin_shadow(canvas: Canvas, rig: Rigid, neck, m: MouthShape, pal: Palette) -> None:
    """Ambient occlusion the chin casts on the neck; follows the jaw."""
    if neck is None:
        return
    sl, X, Y, cov = neck
    u, v = rig.to_local(X, Y)
    # The contact shade follows the jaw; the wide, faint one stays put (it would otherwise
    # reach past the mouth box, where the runtime cannot change pixels).
    a = soft(face_sdf(u, v, m.jaw) - F32(4), 34) * F32(0.55) + soft(face_sdf(u, v, 0.0) - F32(30), 60) * F32(0.2)
    canvas.paint(sl, a * cov, np.asarray(pal.skin_shade, F32) * F32(0.8))


def draw_face(canvas: Canvas, pal: Palette, rig: Rigid, m: MouthShape, blink: float,
              gaze: tuple[float, float]) -> None:
    win = _local_window(canvas, rig, (-175, -200, 175, 250))
    if win is None:
        return
    sl, u, v = win
    d = face_sdf(u, v, m.jaw)
    # Rim shading: the face turns away near its outline; the right side (away from the key
    # light) darker. Forehead shade under the fringe; blush on the cheeks.
    rim = soft(d + F32(16), 44)
    side = clip01(u * F32(1 / 280) + F32(0.5))
    shade = rim * (F32(0.32) + F32(0.38) * side) + F32(0.1) * side
    fringe = hair_front_sdf(u, v)
    shade = shade + F32(0.5) * soft(fringe - F32(8), 26) * clip01((F32(80) - v) * F32(1 / 60))
    skin = _mix(pal.skin, pal.skin_shade, clip01(shade))
    for sx in (-1.0, 1.0):
        blush = soft(ellipse(u - F32(sx * 80), v - F32(78), 32, 19), 40) * F32(0.26)
        skin = skin + (np.asarray(pal.blush, F32) - skin) * blush[..., None]
    canvas.paint(sl, canvas.cov(d), skin)

    # Small features are painted in their own windows (bounds hold all their non-zero
    # alpha): a mouth-box render then skips the eyes entirely, and frames get faster too.
    sub = _local_window(canvas, rig, (-122, 6, -22, 78))
    if sub is not None:  # key light from the upper left on the cheekbone
        ssl, su, sv = sub
        canvas.paint(ssl, soft(ellipse(su + F32(72), sv - F32(42), 30, 16), 36) * F32(0.18), (1.0, 0.96, 0.92))
    sub = _local_window(canvas, rig, (-24, 8, 30, 92))
    if sub is not None:
        _draw_nose(canvas, *sub, pal)
    for sx in (-1.0, 1.0):
        sub = _local_window(canvas, rig, (sx * EYE_X - 48, -40, sx * EYE_X + 48, 24))
        if sub is not None:
            ssl, su, sv = sub
            # Soft shade in the eye socket gives the eye depth.
            socket = soft(ellipse(su - F32(sx * (EYE_X + 2)), sv + F32(7), 34, 17), 22)
            canvas.paint(ssl, socket * F32(0.28), pal.skin_shade)
            _draw_eye(canvas, ssl, su - F32(sx * EYE_X), sv, pal, sx, blink, gaze)
        sub = _local_window(canvas, rig, (min(sx * 18, sx * 106), -64, max(sx * 18, sx * 106), -22))
        if sub is not None:
            ssl, su, sv = sub
            _draw_brow(canvas, ssl, su * F32(sx), sv, pal)

    msub = _local_window(canvas, rig, (REACH[0], MOUTH_Y + REACH[1], REACH[2], MOUTH_Y + REACH[3]))
    if msub is not None:
        msl, mu, mv = msub
        draw_mouth(canvas, msl, mu, mv, pal, m)


def _draw_nose(canvas: Canvas, sl, u, v, pal: Palette) -> None:
    bridge = segment(u, v, (10.0, 16.0), (16.0, 60.0)) - F32(3.5)
    canvas.paint(sl, soft(bridge, 14) * F32(0.38), pal.skin_shade)
    side = segment(u, v, (-11.0, 30.0), (-14.0, 62.0)) - F32(1.5)
    canvas.paint(sl, soft(side, 10) * F32(0.15), pal.skin_shade)
    under = ellipse(u - F32(2), v - F32(80), 17, 5)
    canvas.paint(sl, soft(under, 8) * F32(0.55), np.asarray(pal.skin_shade, F32) * F32(0.9))
    for sx in (-1.0, 1.0):
        nostril = ellipse(u - F32(sx * 8.5), v - F32(79), 4.3, 2.4)
        canvas.paint(sl, soft(nostril, 3) * F32(0.5), np.asarray(pal.skin_shade, F32) * F32(0.62))
        wing = np.abs(ellipse(u - F32(sx * 12), v - F32(74), 7.5, 7)) - F32(0.6)
        canvas.paint(sl, soft(wing, 2.5) * clip01((v - F32(72)) * F32(0.3)) * F32(0.35), pal.skin_shade)
    tip = ellipse(u + F32(3), v - F32(63), 6, 5)
    canvas.paint(sl, soft(tip, 8) * F32(0.3), (1.0, 0.97, 0.94))


def _draw_eye(canvas: Canvas, sl, x, v, pal: Palette, side: float, blink: float, gaze) -> None:
    """x is relative to this eye's centre; `side` +1 for the character's left (screen right)."""
    xn = x * F32(1.0 / EYE_HALF)
    q = clip01(F32(1.0) - xn * xn)
    tilt = F32(1.0) + F32(0.18) * xn * F32(-side)  # the upper lid peaks toward the nose
    h_up = EYE_UP - (EYE_UP + EYE_DOWN) * blink
    lower = F32(EYE_DOWN) * q * (F32(1.0) + F32(0.1) * xn * F32(side))
    upper_open = -F32(EYE_UP) * q * tilt
    upper = -F32(h_up) * q * tilt
    if blink >= 1.0:
        upper = lower
    eye = canvas.band(v, upper, lower, F32(2.0) * xn, F32(1.2) * xn)
    # Sclera, shaded under the lid; iris with a darker rim and a lit lower half; pupil; lights.
    sclera = np.asarray((0.97, 0.96, 0.95), F32) * (F32(1.0) - F32(0.22) * soft(v - upper - F32(4), 9))[..., None]
    canvas.paint(sl, eye, sclera)
    ix, iy = x - F32(gaze[0]), v - F32(1.5 + gaze[1])
    r = np.sqrt(ix * ix + iy * iy)
    iris_t = clip01(r * F32(1 / 12.5))
    light = clip01(iy * F32(1 / 12) + F32(0.4))
    iris_col = _mix(np.asarray(pal.iris, F32) * F32(1.25), np.asarray(pal.iris, F32) * F32(0.55), iris_t * iris_t)
    iris_col = iris_col * (F32(0.85) + F32(0.3) * light)[..., None]
    canvas.paint(sl, canvas.cov(r - F32(12.5)) * eye, np.minimum(iris_col, F32(1.0)))
    canvas.paint(sl, canvas.cov(r - F32(5.2)) * eye, (0.08, 0.06, 0.06))
    lid_shadow = soft(v - upper - F32(3), 8) * eye * F32(0.35)
    canvas.paint(sl, lid_shadow, (0.2, 0.15, 0.15))
    for hx, hy, hr, a in ((-4.0, -4.5, 3.2, 0.95), (4.5, 3.5, 1.5, 0.7)):
        hl = canvas.cov(ellipse(ix - F32(hx), iy - F32(hy), hr, hr)) * eye
        canvas.paint(sl, hl * F32(a), (1.0, 1.0, 1.0))
    # Moving lid skin (slightly shaded) between the open lid line and the current one.
    lid = canvas.band(v, upper_open - q, upper)  # q: zero thickness beyond the corners
    canvas.paint(sl, lid * F32(0.5), _mix(pal.skin, pal.skin_shade, F32(0.45) + 0 * x))
    # Lash line: thick along the upper lid, heavier toward the outer corner, with a flick.
    out = clip01(xn * F32(side) * F32(0.5) + F32(0.5))
    th = (F32(1.3) + F32(2.6) * out) * (F32(0.35) + F32(0.65) * np.sqrt(q))
    lash = canvas.band(v, upper - th, upper + F32(0.9), F32(2.0) * xn, F32(2.0) * xn)
    lash = lash * canvas.cov(np.abs(x) - F32(EYE_HALF + 1.0))
    dark = np.asarray(pal.hair, F32) * F32(0.35)
    canvas.paint(sl, lash, dark)
    tip_y = float(-EYE_UP * 0.0 + (EYE_DOWN * blink) * 0.6)
    flick = segment(x, v, (side * (EYE_HALF - 4.0), tip_y - 1.0), (side * (EYE_HALF + 3.5), tip_y - 4.0 + 3.0 * blink))
    canvas.paint(sl, canvas.cov(flick - F32(1.1)), dark)
    lower_line = canvas.band(v, lower - F32(0.4), lower + F32(0.9)) * canvas.cov(np.abs(x) - F32(EYE_HALF - 2))
    canvas.paint(sl, lower_line * F32(0.25), dark)
    crease = canvas.band(v, upper_open - F32(9.5), upper_open - F32(8.3))
    canvas.paint(sl, crease * canvas.cov(np.abs(x) - F32(EYE_HALF - 4)) * F32(0.22), pal.skin_shade)


def _draw_brow(canvas: Canvas, sl, x, v, pal: Palette) -> None:
    """x mirrored so the brow is drawn for the right half; inner end thick, outer end thin."""
    x0, x1 = 24.0, 100.0
    t = clip01((x - F32(x0)) * F32(1.0 / (x1 - x0)))
    centre = F32(-38.0) - F32(13.0) * (F32(1.0) - (t * F32(2.0) - F32(0.85)) ** 2) + F32(4.0) * t
    th = F32(4.8) - F32(3.2) * t
    brow = canvas.band(v, centre - th, centre + th, F32(-0.5) + t, F32(-0.5) + t)
    caps = soft(F32(x0 + 3) - x, 8) * canvas.cov(x - F32(x1))  # soft inner end, crisp tail
    canvas.paint(sl, brow * caps * F32(0.92), np.asarray(pal.hair, F32) * F32(0.8))


def draw_hair_front(canvas: Canvas, pal: Palette, rig: Rigid) -> None:
    win = _local_window(canvas, rig, (-175, -240, 175, 110))
    if win is None:
        return
    sl, u, v = win
    d = hair_front_sdf(u, v)
    cov = canvas.cov(d)
    t = clip01((v + F32(60)) * F32(1 / 150))
    col = _mix(pal.hair, np.asarray(pal.hair, F32) * F32(0.7), t)
    canvas.paint(sl, cov, col)
    # Sheen: a broad soft glow along the crown plus a few thin glossy strands in it,
    # strongest upper left (the key light).
    crown = ellipse(u + F32(10), v + F32(40), 140, 160)
    mask = clip01(F32(0.6) - u * F32(1 / 220)) * clip01((F32(-20) - v) * F32(0.02)) * cov
    canvas.paint(sl, soft(np.abs(crown + F32(28)) - F32(10), 26) * mask * F32(0.3), pal.hair_light)
    # Each strand is a short streak: an arc faded out along its length around u = centre.
    for offset, width, alpha, centre, half in ((20.0, 1.2, 0.4, -70.0, 60.0), (27.0, 1.8, 0.5, -40.0, 75.0),
                                               (34.0, 1.0, 0.35, -95.0, 45.0), (41.0, 1.4, 0.35, -20.0, 55.0)):
        strand = soft(np.abs(crown + F32(offset)) - F32(width), 2.5)
        along = clip01(F32(1.0) - ((u - F32(centre)) * F32(1.0 / half)) ** 2)
        canvas.paint(sl, strand * along * mask * F32(alpha), pal.hair_light)
    # Strands: a few arcs sweeping with the fringe.
    for cx, cy, r, a in ((-260, 140, 330, 0.2), (-235, 165, 342, 0.14), (-215, 195, 326, 0.16)):
        arc = np.abs(np.sqrt((u - F32(cx)) ** 2 + (v - F32(cy)) ** 2) - F32(r)) - F32(0.7)
        canvas.paint(sl, soft(arc, 2.5) * cov * soft(d + F32(6), 12) * F32(a), np.asarray(pal.hair, F32) * F32(0.55))
    # Crown shadow line where the fringe meets the forehead.
    edge = soft(np.abs(d + F32(2.5)) - F32(1.2), 3) * clip01(v + F32(200))
    canvas.paint(sl, edge * cov * F32(0.3), np.asarray(pal.hair, F32) * F32(0.5))
