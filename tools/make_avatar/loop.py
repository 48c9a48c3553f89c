"""The template loop: the stretch of an idle video that joins itself most seamlessly.

The runtime plays the template frames in a loop, forever; the join must be no larger than the
ordinary change from one frame to the next, or the head jumps every few seconds. For every
stretch [start, start + length) of usable frames with a closed mouth, the seam is how far
frame start is from frame start + length (the frame that would naturally follow the last
one), measured two ways and each divided by its median frame-to-frame change:

    picture    RMS difference of small grey thumbnails (light, clothes, background)
    landmarks  RMS distance of the face mesh, in eye-corner distances (head pose, blinks)

seam ratio = the larger of the two; <= 1 is as smooth as any other frame change. The longest
of the stretches whose ratio is within 10% of the best wins (a long loop repeats less
visibly). Where no stretch joins within SEAM_OK the loop plays forward and back
("pingpong": start .. end, then back without repeating the ends): every frame change is then
an ordinary one, at the price of the motion reversing at the ends.

An idle video where the person talks makes a bad template (the renderer then fights the
template's own mouth): the mouth-open ratio (inner-lip gap / mouth width) across the chosen
stretch is reported, and its spread above TALKING_SPREAD is a warning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tools.faces.lips import (LEFT_CORNER, LEFT_EYE_OUTER, LOWER_INNER, RIGHT_CORNER,
                              RIGHT_EYE_OUTER, UPPER_INNER)

#: A seam ratio up to this plays forward; above it, forward and back.
SEAM_OK = 1.5
#: Spread (95th - 5th percentile) of the mouth-open ratio that says "talking, not idle".
TALKING_SPREAD = 0.08
THUMB_WIDTH = 32


@dataclass(frozen=True)
class LoopChoice:
    start: int
    length: int  # source frames in the stretch
    mode: str  # "forward" or "pingpong"
    seam_ratio: float  # of the forward join (also reported for pingpong: why it was not used)
    open_spread: float
    talking: bool

    def indices(self) -> np.ndarray:
        """Source frame index of every loop frame, in play order."""
        forward = np.arange(self.start, self.start + self.length)
        if self.mode == "forward":
            return forward
        return np.concatenate([forward, forward[-2:0:-1]])

    @property
    def frames(self) -> int:
        return len(self.indices())


def thumbnails(frames, width: int = THUMB_WIDTH) -> np.ndarray:
    """(N, h*w) float32 grey thumbnails, box-averaged (no aliasing of fine texture)."""
    first = np.asarray(frames[0])
    step = max(1, first.shape[1] // width)
    h, w = first.shape[0] // step, first.shape[1] // step
    out = np.empty((len(frames), h * w), np.float32)
    for n, frame in enumerate(frames):
        grey = np.asarray(frame, np.float32)[: h * step, : w * step].mean(axis=2)
        out[n] = grey.reshape(h, step, w, step).mean(axis=(1, 3)).ravel()
    return out


def _pairwise_rms(features: np.ndarray) -> np.ndarray:
    """(N, N) RMS distance between rows, by |a|^2 + |b|^2 - 2ab (one matrix product)."""
    f = features.astype(np.float64)
    sq = (f * f).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * f @ f.T, 0.0)
    return np.sqrt(d2 / f.shape[1])


def open_ratio(points: np.ndarray) -> np.ndarray:
    """(N,) inner-lip gap / mouth width per frame from (N, 478, 2) landmarks (NaN: no face):
    tools/faces/lips.py's `ratio`, on arrays."""
    gap = np.linalg.norm(points[:, UPPER_INNER] - points[:, LOWER_INNER], axis=1)
    width = np.linalg.norm(points[:, LEFT_CORNER] - points[:, RIGHT_CORNER], axis=1)
    return gap / np.where(width > 0, width, np.nan)


def choose_loop(thumbs: np.ndarray, points: np.ndarray, usable: np.ndarray, *,
                min_frames: int, max_frames: int) -> LoopChoice:
    """The best loop of min_frames..max_frames source frames; ValueError if no usable
    stretch is that long (the message says how long the longest one is)."""
    n = len(thumbs)
    eyes = np.linalg.norm(points[:, RIGHT_EYE_OUTER] - points[:, LEFT_EYE_OUTER], axis=1)
    scale = float(np.nanmedian(eyes)) or 1.0
    landmarks = np.nan_to_num(points.reshape(n, -1) / scale)
    d_pic, d_mesh = _pairwise_rms(thumbs), _pairwise_rms(landmarks)
    steps = np.arange(n - 1)
    ok_step = usable[:-1] & usable[1:]
    typical_pic = float(np.median(d_pic[steps, steps + 1][ok_step])) if ok_step.any() else 1.0
    typical_mesh = float(np.median(d_mesh[steps, steps + 1][ok_step])) if ok_step.any() else 1.0
    seam = np.maximum(d_pic / max(typical_pic, 1e-6), d_mesh / max(typical_mesh, 1e-6))

    # Longest run of usable frames ending at each index: a stretch must lie inside one.
    run = np.zeros(n, int)
    for k in range(n):
        run[k] = (run[k - 1] + 1 if k else 1) if usable[k] else 0
    candidates = []
    for start in range(n):
        for length in range(min_frames, max_frames + 1):
            end = start + length  # the frame that would follow the last one
            if end >= n:
                break
            if run[end - 1] < length or not usable[end]:
                continue
            candidates.append((float(seam[start, end]), length, start))
    if not candidates:
        longest = int(run.max()) if n else 0
        if longest >= min_frames:  # only the last frames: the stretch ends the video
            start = int(np.argmax(run)) - longest + 1
            candidates.append((float("inf"), min(longest, max_frames), start))
        else:
            raise ValueError(f"the longest stretch of usable frames is {longest} frames "
                             f"({longest / 25:.1f} s); the loop needs {min_frames} "
                             f"({min_frames / 25:.1f} s)")
    best = min(c[0] for c in candidates)
    near = [c for c in candidates if c[0] <= best * 1.1 + 1e-9]
    ratio, length, start = max(near, key=lambda c: (c[1], -c[0]))
    mode = "forward" if ratio <= SEAM_OK else "pingpong"
    if mode == "pingpong":
        # Appearance no longer matters at the ends: the longest usable stretch, capped.
        longest = [c for c in candidates if c[1] == max(c2[1] for c2 in candidates)]
        _, length, start = min(longest)
    ratios = open_ratio(points[start:start + length])
    spread = float(np.nanpercentile(ratios, 95) - np.nanpercentile(ratios, 5))
    return LoopChoice(start, length, mode, round(ratio, 3), round(spread, 4), spread > TALKING_SPREAD)
