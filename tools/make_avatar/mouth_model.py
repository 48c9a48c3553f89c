"""The explicit mouth model: a closed-mouth face made to say any six mouth parameters.

For a template frame and its 478-point mesh, `MouthModel.render(params)` gives the mouth box
as it would look with those parameters (the contract in ../shared/DESIGN.md): lips, jaw and
chin moved by a thin-plate-spline warp (warp.py) from where the mesh says they are to where
the parameters put them, and the inside of the mouth painted: a dark cavity, upper and lower
teeth and a tongue, coloured from this face (lip colour, skin brightness) and shaded by how
far the mouth opens. These (template crop, params, target crop) pairs train the renderer
(tools/renderer) exactly as the procedural character's do.

Displacements are in units of the mouth width W (corner to corner, landmarks 61-291), so the
model does not depend on the face's size; each parameter's share is named below. `press`
closes what `open` opens (p, b, m), `bite` tucks the lower lip under the upper teeth (f, v).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tools.faces.geometry import polygon_mask

from .warp import warp_region

OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LOWER = (146, 91, 181, 84, 17, 314, 405, 321, 375)  # corners are in OUTER_UPPER
INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER = (95, 88, 178, 87, 14, 317, 402, 318, 324)
JAW = (172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397)
#: Points that stay put: nose, cheeks, eyes' lower lids (anchors of the warp).
FIXED = (1, 2, 98, 327, 203, 423, 205, 425, 36, 266, 50, 280, 187, 411, 123, 352)
CORNERS = (61, 291, 78, 308)

#: How far each parameter moves things at 1.0, in mouth widths.
JAW_DROP = 0.42  # open: the chin and lower lip
WIDEN = 0.13  # wide: each corner outwards
ROUND = 0.20  # round: each corner inwards
LIP_THIN_WIDE = 0.25  # wide: lips thinner (share of their thickness)
LIP_THIN_PRESS = 0.40  # press: lips pressed thinner
BITE_LIFT = 0.08  # bite: lower lip up under the upper teeth
UPPER_LIFT = 0.06  # open: the upper inner lip rises this share of the drop
CORNERS_IN_OPEN = 0.05  # open: each corner drawn in
LIP_FULL_ROUND = 0.25  # round: lips fuller (share of their thickness)


def _along(xs: np.ndarray, line: np.ndarray) -> np.ndarray:
    """The y of a lip line (K, 2) at each x, whichever way its points run."""
    order = np.argsort(line[:, 0])
    return np.interp(xs, line[order, 0], line[order, 1])


@dataclass(frozen=True)
class MouthColours:
    lip: np.ndarray  # (3,) float RGB, median of the lips
    skin: np.ndarray  # (3,) median of the box outside the lips

    @property
    def light(self) -> float:
        """Scene brightness from the skin (1.0 = a well-lit face)."""
        return float(np.clip(self.skin.mean() / 170.0, 0.45, 1.25))


class MouthModel:
    """One template frame's mouth, ready to be posed by parameters."""

    def __init__(self, frame: np.ndarray, points: np.ndarray, box: tuple[int, int, int]):
        self.frame = frame
        self.points = points.astype(np.float64)
        self.box = box
        self.width = float(np.linalg.norm(self.points[291] - self.points[61]))
        self.centre = (self.points[61] + self.points[291]) / 2
        self.lip_line = float((self.points[13][1] + self.points[14][1]) / 2)
        self.colours = self._colours()

    def _colours(self) -> MouthColours:
        x, y, size = self.box
        crop = self.frame[y:y + size, x:x + size].astype(np.float64)
        outer = self._to_box(self.points[list(OUTER_UPPER) + list(OUTER_LOWER)[::-1]])
        lips = polygon_mask(outer, size, supersample=1) > 0.5
        lip = np.median(crop[lips], axis=0) if lips.any() else np.array([170.0, 90, 90])
        skin = np.median(crop[~lips], axis=0)
        return MouthColours(lip, skin)

    def _to_box(self, pts: np.ndarray) -> np.ndarray:
        return pts - np.array(self.box[:2], np.float64)

    def posed_points(self, params: np.ndarray) -> dict[int, np.ndarray]:
        """Where each moving landmark goes for these parameters (frame coordinates)."""
        open_, wide, round_, press, bite, _ = (float(v) for v in np.clip(params, 0, 1))
        opened = open_ * (1.0 - press)  # press closes what open opens
        W, cx = self.width, float(self.centre[0])
        drop = JAW_DROP * W * opened
        lower = set(OUTER_LOWER) | set(INNER_LOWER) | {14, 17}
        upper_inner = set(INNER_UPPER) - set(CORNERS)
        moved: dict[int, np.ndarray] = {}
        for index in set(OUTER_UPPER) | lower | set(INNER_UPPER) | set(JAW):
            p = self.points[index].copy()
            u = float(np.clip((p[0] - cx) / (W / 2), -1.5, 1.5))  # -1 left corner, +1 right
            dx = dy = 0.0
            if index in JAW:
                reach = max(0.0, 1.0 - (abs(p[0] - cx) / (1.4 * W)) ** 2)
                dy += drop * reach
            elif index in CORNERS:
                dy += 0.45 * drop
                dx += np.sign(u) * W * (WIDEN * wide - ROUND * round_ - CORNERS_IN_OPEN * opened)
            else:
                # the lower lip bows: its middle drops most, tapering to the corners
                along = max(0.0, 1.0 - min(1.0, u * u)) ** 0.6
                if index in lower:
                    dy += drop * along
                elif index in upper_inner:
                    dy -= UPPER_LIFT * drop * (1 - min(1.0, u * u))
                # wide stretches the lips along their line, round gathers them
                dx += u * W * (WIDEN * wide - ROUND * round_) * 0.9
                # thickness about the lip line: thinner when wide or pressed, fuller when round
                off = p[1] - self.lip_line
                dy -= off * (LIP_THIN_WIDE * wide + LIP_THIN_PRESS * press - LIP_FULL_ROUND * round_)
                if round_ > 0 and index in lower:
                    dy += 0.05 * W * round_ * along  # an "o" opens a little
                if round_ > 0 and index in upper_inner:
                    dy -= 0.03 * W * round_
                if bite > 0 and index in lower:
                    dy -= BITE_LIFT * W * bite * along  # lower lip up under the upper teeth
                if bite > 0 and index in upper_inner:
                    dy -= 0.04 * W * bite  # upper lip lifts: the teeth show
            moved[index] = p + np.array([dx, dy]) * self._edge_window(p)
        return moved

    def _edge_window(self, p: np.ndarray) -> float:
        """1 inside the box, falling smoothly to 0 within 15% of its side from the edge: a
        point near the edge (a jaw corner) must not drag the box edge with it."""
        x, y, size = self.box
        inner = min(p[0] - x, x + size - p[0], p[1] - y, y + size - p[1]) / (0.15 * size)
        t = float(np.clip(inner, 0.0, 1.0))
        return t * t * (3 - 2 * t)

    def render(self, params: np.ndarray) -> np.ndarray:
        """(size, size, 3) uint8: the mouth box with these parameters."""
        x, y, size = self.box
        moved = self.posed_points(params)
        source = [self.points[i] for i in moved] + [self.points[i] for i in FIXED]
        target = [moved[i] for i in moved] + [self.points[i] for i in FIXED]
        # The box edge stays where it is (warp_region also fades the displacement out
        # towards it): 6 fixed points per side keep the spline from bending out there.
        for t in np.linspace(0, size - 1, 6):
            for edge in ((t, 0), (t, size - 1), (0, t), (size - 1, t)):
                anchor = np.array(edge) + (x, y)
                source.append(anchor)
                target.append(anchor)
        warped = warp_region(self.frame, self.box, np.array(target), np.array(source))
        return np.clip(self._paint_inside(warped, moved, params) + 0.5, 0, 255).astype(np.uint8)

    def _paint_inside(self, crop: np.ndarray, moved: dict, params: np.ndarray) -> np.ndarray:
        open_, wide, round_, press, bite, teeth = (float(v) for v in np.clip(params, 0, 1))
        size = crop.shape[0]
        upper = self._to_box(np.array([moved[i] for i in INNER_UPPER]))
        lower = self._to_box(np.array([moved[i] for i in INNER_LOWER]))
        gap = float(moved[14][1] - moved[13][1])  # the inner-lip gap in the middle, px
        added = gap - float(self.points[14][1] - self.points[13][1])
        show_bite = bite * (1.0 - open_)
        if added < 0.5 and show_bite < 0.05:
            return crop  # at rest the template stays as it is (lips parted or not)
        cavity = polygon_mask(np.concatenate([upper, lower[::-1]]), size)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
        mid = self._to_box(self.centre[None])[0]
        u = np.clip((xs - mid[0]) / (self.width / 2), -1, 1)
        light = self.colours.light
        top, bottom = _along(xs, upper), _along(xs, lower)  # the inner lips above/below each column
        depth = np.clip((ys - top) / np.maximum(bottom - top, 1.0), 0, 1)
        # Dark cavity from the lip colour, darkest in the middle and towards the corners.
        dark = self.colours.lip * (0.30 + 0.10 * (1 - open_)) * light
        inside = np.broadcast_to(dark, crop.shape) * (1 - 0.35 * np.sin(np.pi * depth)[..., None])
        inside = inside * (1 - 0.5 * u[..., None] ** 2)
        # Upper teeth: a band under the upper lip, as tall as `teeth` and the gap allow.
        white = (0.88 * np.array([238.0, 234, 224]) + 0.12 * self.colours.skin) * light
        band = (0.2 + 0.8 * teeth) * min(max(gap, 0.0), 0.14 * self.width) + 0.05 * self.width * show_bite
        upper_teeth = np.clip((top + band - ys) / 1.2, 0, 1) * (ys >= top - 1)
        shade = (1 - 0.55 * u ** 2)[..., None] * (0.8 + 0.2 * (1 - depth))[..., None]
        inside = inside * (1 - upper_teeth[..., None]) + white * shade * upper_teeth[..., None]
        # Lower teeth, a hint above the lower lip once the mouth is well open.
        low_band = 0.35 * band * np.clip((open_ - 0.3) / 0.4, 0, 1)
        lower_teeth = np.clip((ys - (bottom - low_band)) / 1.2, 0, 1) * (low_band > 0.5)
        inside = inside * (1 - lower_teeth[..., None]) + 0.85 * white * shade * lower_teeth[..., None]
        # Tongue: a soft reddish mound at the bottom of a wide-open mouth.
        tongue_h = 0.4 * max(gap - band, 0.0) * np.clip((open_ - 0.35) / 0.4, 0, 1)
        if tongue_h > 1.0:
            rise = np.clip((ys - (bottom - tongue_h * (1 - 0.6 * u ** 2))) / 2.0, 0, 1)
            tongue = self.colours.lip * 0.72 * light
            inside = inside * (1 - rise[..., None]) + tongue * rise[..., None]
        if show_bite > 0.05:
            # f/v: the upper teeth rest on the lower lip even with no gap between the lips.
            rest = np.clip((top + 0.06 * self.width * show_bite - ys) / 1.2, 0, 1) * (ys >= top)
            rest *= (np.abs(u) < 0.7)
            crop = crop * (1 - rest[..., None]) + white * shade * rest[..., None]
        return crop * (1 - cavity[..., None]) + inside * cavity[..., None]
