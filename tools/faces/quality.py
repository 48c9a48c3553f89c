"""Can this frame make an avatar? Checks on one frame's 478-point mesh and pixels, in numpy.

The avatar builder (tools/make_avatar) tracks every frame with mediapipe (tools/faces/track.py)
and asks these checks of each one; a frame that fails is reported and avoided, and an input
where too few frames pass fails with the reason of the most common failure, as one line a
person can act on. Thresholds are in units that do not depend on the video's resolution
where they can be (eye-corner distance), and were set on the external footage: every frame of
the idle video and of aoc passes, katie's 5 most turned frames of 200 do not; a frame of
them darkened, blurred, shrunk, rotated, doubled or with its mouth covered fails for that
reason (tests/test_face_quality.py).

Landmarks are (478, 2) float pixel coordinates (x, y) in the frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .lips import (LEFT_CORNER, LEFT_EYE_OUTER, LOWER_INNER, RIGHT_CORNER,  # noqa: F401
                   RIGHT_EYE_OUTER, UPPER_INNER)

NOSE_TIP = 1
CHIN = 152
#: The mesh's outer and inner lip contours: the lips are between them.
LIP_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181,
             91, 146)
LIP_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178,
             88, 95)


@dataclass(frozen=True)
class FaceLimits:
    """What the builder accepts; the defaults hold for a frontal presenter on a 512 px clip."""

    #: Eye corners at least this far apart (px): below it the mouth box has too few pixels.
    min_eye_px: float = 60.0
    #: Head roll (the eye line against horizontal), degrees.
    max_roll_deg: float = 15.0
    #: Yaw as the nose tip's offset from the eyes' midpoint, in eye distances (~0.3 = 30 deg).
    max_yaw: float = 0.25
    #: Pitch as where the nose tip sits between the eye line (0) and the mouth (1).
    pitch_range: tuple[float, float] = (0.30, 0.80)
    #: Mean luma of the face box (0..255).
    min_luma: float = 45.0
    #: Sharpness: variance of a Laplacian of the face box scaled to 128 px eye-to-chin.
    min_sharpness: float = 12.0
    #: The whole face inside the frame, with this margin in eye distances.
    margin_eyes: float = 0.15
    #: Lips redder than the skin around them, in (R - G) / (R + G + B): a hand, a microphone
    #: or a mask over the mouth is not (the external footage: 0.06 to 0.24 per frame).
    min_lip_contrast: float = 0.03


@dataclass(frozen=True)
class FrameVerdict:
    ok: bool
    reason: str = ""  # a short key: "small", "turned", "tilted", "dark", "blurred", "edge"
    detail: str = ""  # a sentence for people, with the measured value and the limit


#: What a person can do about each failure (the builder's one-line error ends with it).
ADVICE = {
    "none": "no face found: the presenter must face the camera, the whole face in the frame",
    "several": "more than one face: crop the video to the presenter or use a clip with one person",
    "small": "face too small: film closer or at a higher resolution",
    "turned": "face turned away: the presenter must look into the camera",
    "tilted": "head tilted: keep the head level and the camera at eye height",
    "dark": "too dark: add light on the face",
    "blurred": "too blurred: focus on the face, hold the camera still, use a shorter exposure",
    "edge": "face cut by the frame edge: leave room around the head",
    "hidden": "mouth hidden: nothing may cover the mouth (hand, microphone, mask)",
}


def eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[RIGHT_EYE_OUTER] - points[LEFT_EYE_OUTER]))


def head_pose(points: np.ndarray) -> tuple[float, float, float]:
    """(roll degrees, yaw as nose offset in eye distances, pitch as nose position 0..1)."""
    left, right = points[LEFT_EYE_OUTER], points[RIGHT_EYE_OUTER]
    eyes = right - left
    roll = math.degrees(math.atan2(float(eyes[1]), float(eyes[0])))
    scale = float(np.linalg.norm(eyes)) or 1.0
    # In the face's own frame (roll removed): x along the eye line, y down the face.
    c, s = math.cos(math.radians(-roll)), math.sin(math.radians(-roll))
    rotate = np.array([[c, -s], [s, c]])
    mid = (left + right) / 2
    nose = rotate @ (points[NOSE_TIP] - mid) / scale
    mouth = rotate @ ((points[UPPER_INNER] + points[LOWER_INNER]) / 2 - mid) / scale
    pitch = float(nose[1] / mouth[1]) if mouth[1] > 1e-6 else float("nan")
    return roll, float(nose[0]), pitch


def face_box(points: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the mesh, whole pixels."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return int(math.floor(lo[0])), int(math.floor(lo[1])), int(math.ceil(hi[0])), int(math.ceil(hi[1]))


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def sharpness(gray: np.ndarray, face_height: float) -> float:
    """Variance of a 4-neighbour Laplacian after scaling the face to 128 px high (nearest
    sampling: cheap, and the measure must not depend on the video's resolution)."""
    if gray.shape[0] < 8 or gray.shape[1] < 8:
        return 0.0
    step = max(1.0, face_height / 128.0)
    rows = np.arange(0, gray.shape[0], step).astype(int)
    cols = np.arange(0, gray.shape[1], step).astype(int)
    g = gray[np.ix_(rows, cols)].astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def _redness(pixels: np.ndarray) -> float:
    px = pixels.astype(np.float64)
    return float(np.median((px[:, 0] - px[:, 1]) / (px.sum(axis=1) + 1e-6)))


def lip_contrast(points: np.ndarray, rgb: np.ndarray) -> float:
    """How much redder the lips (between the outer and inner contours) are than the skin in
    a square of two mouth widths around them."""
    from .geometry import polygon_mask

    width = float(np.linalg.norm(points[RIGHT_CORNER] - points[LEFT_CORNER]))
    centre = (points[LEFT_CORNER] + points[RIGHT_CORNER]) / 2
    size = max(8, int(round(2 * width)))
    x0, y0 = int(round(centre[0] - width)), int(round(centre[1] - width))
    h, w = rgb.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x0 + size), min(h, y0 + size)
    if cx1 - cx0 < 4 or cy1 - cy0 < 4:
        return 0.0
    offset = np.array([x0, y0], np.float64)
    lips = polygon_mask(points[list(LIP_OUTER)] - offset, size, 1) > 0.5
    inner = polygon_mask(points[list(LIP_INNER)] - offset, size, 1) > 0.5
    window = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    crop = rgb[cy0:cy1, cx0:cx1]
    lip_px = crop[(lips & ~inner)[window]]
    skin_px = crop[(~lips)[window]]
    if len(lip_px) < 10 or len(skin_px) < 10:
        return 0.0
    return _redness(lip_px) - _redness(skin_px)


def check_frame(points: np.ndarray, rgb: np.ndarray, limits: FaceLimits = FaceLimits()) -> FrameVerdict:
    """The first check this frame fails, or ok."""
    height, width = rgb.shape[:2]
    eyes = eye_distance(points)
    if eyes < limits.min_eye_px:
        return FrameVerdict(False, "small", f"eye corners {eyes:.0f} px apart, need >= "
                                            f"{limits.min_eye_px:.0f}")
    x0, y0, x1, y1 = face_box(points)
    margin = limits.margin_eyes * eyes
    if x0 < -margin or y0 < -margin or x1 > width + margin or y1 > height + margin:
        return FrameVerdict(False, "edge", f"face box {x0},{y0}-{x1},{y1} leaves the "
                                           f"{width}x{height} frame")
    roll, yaw, pitch = head_pose(points)
    if abs(roll) > limits.max_roll_deg:
        return FrameVerdict(False, "tilted", f"head rolled {roll:+.0f} deg, at most "
                                             f"{limits.max_roll_deg:.0f}")
    if abs(yaw) > limits.max_yaw:
        return FrameVerdict(False, "turned", f"nose {yaw:+.2f} eye distances off centre, at most "
                                             f"{limits.max_yaw:.2f}")
    lo, hi = limits.pitch_range
    if not lo <= pitch <= hi:
        return FrameVerdict(False, "tilted", f"head pitched (nose at {pitch:.2f} of the way from "
                                             f"eyes to mouth, {lo:.2f} to {hi:.2f} allowed)")
    crop = rgb[max(0, y0):max(0, y1), max(0, x0):max(0, x1)].astype(np.float32)
    gray = luma(crop)
    if gray.size == 0 or float(gray.mean()) < limits.min_luma:
        return FrameVerdict(False, "dark", f"face luma {float(gray.mean()) if gray.size else 0:.0f}, "
                                           f"need >= {limits.min_luma:.0f}")
    sharp = sharpness(gray, float(points[CHIN][1] - min(points[LEFT_EYE_OUTER][1],
                                                         points[RIGHT_EYE_OUTER][1])))
    if sharp < limits.min_sharpness:
        return FrameVerdict(False, "blurred", f"sharpness {sharp:.1f}, need >= "
                                              f"{limits.min_sharpness:.0f}")
    contrast = lip_contrast(points.astype(np.float64), rgb)
    if contrast < limits.min_lip_contrast:
        return FrameVerdict(False, "hidden", f"lips {contrast:+.3f} redder than the skin around "
                                             f"them, need >= {limits.min_lip_contrast:.2f}")
    return FrameVerdict(True)


def smooth_track(points: np.ndarray, valid: np.ndarray, sigma_frames: float = 2.0) -> np.ndarray:
    """Zero-phase Gaussian smoothing of (N, K, 2) landmarks over time, within each run of
    valid frames (a gap is never bridged); invalid frames come back as NaN.

    Offline, so it may look ahead: no lag, unlike a causal filter. sigma 2 frames (80 ms)
    keeps a blink's and a nod's shape and takes out the mesh's frame-to-frame jitter."""
    out = np.full(points.shape, np.nan, np.float64)
    radius = max(1, int(round(3 * sigma_frames)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    n = len(points)
    start = 0
    while start < n:
        if not valid[start]:
            start += 1
            continue
        end = start
        while end < n and valid[end]:
            end += 1
        run = points[start:end].astype(np.float64)
        if len(run) > radius:
            # Odd reflection about each end: a head drifting at a constant speed stays on its
            # line to the last frame (a truncated kernel would pull the ends back).
            head = 2 * run[0] - run[radius:0:-1]
            tail = 2 * run[-1] - run[-2:-radius - 2:-1]
            padded = np.concatenate([head, run, tail])
            weight = np.ones(len(padded))
        else:  # too short to reflect: the taps that fall inside the run, renormalised
            padded = np.zeros((len(run) + 2 * radius,) + run.shape[1:])
            weight = np.zeros(len(run) + 2 * radius)
            padded[radius:radius + len(run)] = run
            weight[radius:radius + len(run)] = 1.0
        acc = np.zeros_like(run)
        norm = np.zeros(len(run))
        for k, tap in enumerate(taps):
            acc += tap * padded[k:k + len(run)]
            norm += tap * weight[k:k + len(run)]
        out[start:end] = acc / norm[:, None, None]
        start = end
    return out
