"""Level changes a viewer does not notice: wait for a near-rest mouth, then blend.

The governor decides *that* the level changes; this decides *when* and *how* the picture
follows. Stepping down in mid-syllable would snap an open mouth to a smaller (or no) one,
so a step down waits up to `max_wait_frames` for a frame whose mouth is near rest; then, in
either direction, the two levels' mouth changes are cross-faded over `blend_frames` frames
(the renderer adds both changes, weighted, onto the template: runtime/render/renderer.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .levels import Quality

#: A mouth whose parameters are all below this is near rest: a switch there is not seen.
NEAR_REST = 0.12


@dataclass(frozen=True)
class RenderPlan:
    level: Quality  # what this frame renders (in a blend: the level it blends towards)
    blend_from: Quality | None = None  # in a blend: the level it blends away from
    weight: float = 1.0  # of `level`; `blend_from` gets 1 - weight

    @property
    def blended(self) -> bool:
        return self.blend_from is not None


@dataclass(frozen=True)
class TransitionSettings:
    blend_frames: int = 4  # 160 ms at 25 fps: longer than a frame, shorter than a syllable
    max_wait_frames: int = 10  # 400 ms: about two syllables; then switch anyway


class LevelTransition:
    """Turns the policy's level per frame into a RenderPlan."""

    def __init__(self, start: Quality, settings: TransitionSettings = TransitionSettings()):
        self.settings = settings
        self._current = start
        self._previous: Quality | None = None
        self._step = 0  # frames into the blend
        self._waited = 0
        self.deferred_frames = 0  # frames a step down waited for a near-rest mouth (total)

    @property
    def current(self) -> Quality:
        return self._current

    def plan(self, target: Quality, params: np.ndarray) -> RenderPlan:
        if target != self._current:
            waiting = (target < self._current and self._waited < self.settings.max_wait_frames
                       and float(np.max(params)) >= NEAR_REST)
            if waiting:
                self._waited += 1
                self.deferred_frames += 1
            else:
                self._previous, self._current = self._current, target
                self._step, self._waited = 0, 0
        else:
            self._waited = 0
        if self._previous is None:
            return RenderPlan(self._current)
        self._step += 1
        frames = self.settings.blend_frames
        if self._step > frames:
            self._previous = None
            return RenderPlan(self._current)
        return RenderPlan(self._current, self._previous, self._step / (frames + 1))
