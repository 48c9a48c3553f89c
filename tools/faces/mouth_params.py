"""The six mouth parameters (../shared/DESIGN.md) measured from a face mesh, frame by frame.

One measurement for everything that reads parameters off real faces: the avatar builder's
talking footage (real frames become training targets for the parameters measured here), the
held-out comparison of `python -m tools.eval_avatar --truth`, and the audio model's real-lip
figures (which correlate the same landmark distances, tools/faces/lips.py).

Every distance is in eye-corner distances (landmarks 33-263), relative to the person's own
mouth at rest (`Rest`: the most closed frames of the same footage), and scaled so that a
parameter of 1 moves the lips as far as the explicit mouth model moves them at 1
(tools/make_avatar/mouth_model.py), so measured and synthesised pairs agree. W0 is the mouth
width at rest (corners 61-291).

    open   inner-lip gap (13-14) above rest, in units of 0.445 W0: the mouth model drops the
           lower inner lip 0.42 W and lifts the upper 0.025 W at open = 1
    wide   corners spread: half the width change over W0, plus the 0.05 W the model draws
           them in by per unit of open, in units of 0.13 (the model's corner shift at wide = 1)
    round  the same change inwards, in units of 0.20 (the model's corner shift at round = 1)
    press  lips thinner than at rest (outer to inner lip, 0-13 plus 14-17) with the mouth
           shut, after what wide (0.25) and round (-0.25) do to thickness, in units of 0.40
    bite   0: a lower lip tucked under the teeth is not visible to the mesh
    teeth  0: nor are teeth; the real frames themselves show them (that is what they teach)

A frame without a usable mesh (NaN points) gets NaN parameters: never a guess.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tools.make_avatar.mouth_model import (CORNERS_IN_OPEN, JAW_DROP, LIP_FULL_ROUND,
                                           LIP_THIN_PRESS, LIP_THIN_WIDE, ROUND, UPPER_LIFT,
                                           WIDEN)
from .lips import (LEFT_CORNER, LEFT_EYE_OUTER, LOWER_INNER, RIGHT_CORNER, RIGHT_EYE_OUTER,
                   UPPER_INNER)

EYES = (LEFT_EYE_OUTER, RIGHT_EYE_OUTER)
GAP = (UPPER_INNER, LOWER_INNER)
CORNERS = (LEFT_CORNER, RIGHT_CORNER)
UPPER = (0, UPPER_INNER)  # outer to inner upper lip, mid-line
LOWER = (LOWER_INNER, 17)

# The mouth model's own geometry (mouth_model.py), so that measured and drawn parameters agree.
OPEN_GAP = JAW_DROP * (1 + UPPER_LIFT)  # inner-lip gap gained at open = 1: 0.445 mouth widths
OPEN_CORNER_IN = CORNERS_IN_OPEN
WIDE_SHIFT = WIDEN
ROUND_SHIFT = ROUND
PRESS_THIN, WIDE_THIN, ROUND_FULL = LIP_THIN_PRESS, LIP_THIN_WIDE, LIP_FULL_ROUND


def _dist(points: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    return np.linalg.norm(points[..., pair[0], :] - points[..., pair[1], :], axis=-1)


def distances(points: np.ndarray) -> dict[str, np.ndarray]:
    """gap, width, thickness of (N, 478, 2) meshes, in eye-corner distances."""
    eyes = _dist(points, EYES)
    return {"gap": _dist(points, GAP) / eyes, "width": _dist(points, CORNERS) / eyes,
            "thick": (_dist(points, UPPER) + _dist(points, LOWER)) / eyes}


@dataclass(frozen=True)
class Rest:
    """The mouth at rest: medians over the most closed frames (all in eye-corner distances)."""

    gap: float
    width: float
    thick: float
    frames: int  # how many frames it came from

    def as_dict(self) -> dict:
        return {"gap": round(self.gap, 5), "width": round(self.width, 5),
                "thick": round(self.thick, 5), "frames": self.frames}


def rest_from(points: np.ndarray, share: float = 0.15) -> Rest:
    """The `share` of usable frames with the smallest inner-lip gap (at least 3)."""
    d = distances(points)
    ok = np.flatnonzero(np.isfinite(d["gap"]))
    if ok.size == 0:
        raise ValueError("no frame with a face to measure the mouth at rest")
    count = max(min(3, ok.size), int(round(share * ok.size)))
    closed = ok[np.argsort(d["gap"][ok])[:count]]
    return Rest(float(np.median(d["gap"][closed])), float(np.median(d["width"][closed])),
                float(np.median(d["thick"][closed])), int(closed.size))


def measure(points: np.ndarray, rest: Rest) -> np.ndarray:
    """(N, 6) float32 parameters in [0, 1] (NaN rows where the mesh is NaN)."""
    d = distances(points)
    w0 = rest.width
    open_ = np.clip((d["gap"] - rest.gap) / (OPEN_GAP * w0), 0, 1)
    shift = (d["width"] - w0) / (2 * w0) + OPEN_CORNER_IN * open_
    wide = np.clip(shift / WIDE_SHIFT, 0, 1)
    round_ = np.clip(-shift / ROUND_SHIFT, 0, 1)
    thinner = 1 - d["thick"] / rest.thick - WIDE_THIN * wide + ROUND_FULL * round_
    press = np.clip(thinner / PRESS_THIN, 0, 1) * (open_ < 0.05)
    zeros = np.zeros_like(open_)
    params = np.stack([open_, wide, round_, press, zeros, zeros], axis=-1).astype(np.float32)
    params[~np.isfinite(d["gap"])] = np.nan
    return params
