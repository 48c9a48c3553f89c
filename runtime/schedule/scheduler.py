"""The frame scheduler: render the frame that will be due when it is shown, never a late one.

Frame k is on screen during audio time [k/fps, (k+1)/fps). Before rendering, the scheduler
picks the frame that will be due when rendering ends (now + the recent worst render cost),
so it can be presented in its own slot; if rendering fell behind, indices are skipped and
the skipped ones counted as drops. Audio is never delayed or stretched to help video.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from runtime import FPS


@dataclass
class SchedulerStats:
    shown: int = 0
    dropped: int = 0
    #: Largest |picture-to-sound offset| at presentation: the audio time heard minus the
    #: middle of the shown frame's slot. At most half a frame when each frame is shown in
    #: its own slot; "within one frame" means below 1/fps.
    max_av_offset_s: float = 0.0
    #: Frames presented after their slot had ended (the render took longer than expected).
    late_presents: int = 0


class FrameScheduler:
    """Clock-driven frame picking. `clock` returns audio seconds; `sleep` waits real seconds."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None] = time.sleep,
                 fps: int = FPS, cost_window: int = 12):
        self._clock = clock
        self._sleep = sleep
        self.fps = fps
        self.frame_s = 1.0 / fps
        self._costs: deque[float] = deque(maxlen=cost_window)
        # Until a render has been timed, assume it takes a whole frame (pessimistic: early
        # frames are held until due, late ones would be shown out of their slot).
        self._first_cost_s = self.frame_s
        self._last_shown = -1
        self._render_started = 0.0
        self.stats = SchedulerStats()

    def due_frame(self, at_s: float | None = None) -> int:
        """Index of the frame whose slot contains audio time `at_s` (default: now)."""
        return math.floor((self._clock() if at_s is None else at_s) * self.fps + 1e-9)

    def _expected_cost_s(self) -> float:
        # The recent worst cost, not the mean: a frame presented after its slot is worse
        # than one shown a little early and held.
        return max(self._costs) * 1.1 + 0.0005 if self._costs else self._first_cost_s

    def next_frame(self) -> int:
        """Wait until a frame newer than the last shown is due; return the one to render."""
        while True:
            now = self._clock()
            target = self.due_frame(now + self._expected_cost_s())
            if target > self._last_shown:
                break
            # Sleep to the start of the next slot, in small steps so a clock change is seen.
            wait = (self._last_shown + 1) * self.frame_s - now - self._expected_cost_s()
            self._sleep(min(max(wait, 0.0005), 0.02))
        if self._last_shown >= 0 or self.stats.shown:
            self.stats.dropped += max(0, target - self._last_shown - 1)
        self._render_started = now
        return target

    @property
    def last_shown(self) -> int:
        """The number of the frame shown last (-1 before the first): with drops, not `shown`."""
        return self._last_shown

    def present_at(self, frame: int) -> float:
        """Wait until `frame`'s slot starts (rendering may finish early); return the signed
        picture-to-sound offset (audio now minus the middle of the frame's slot).

        Call right before showing the frame; then call `shown(frame)`.
        """
        now = self._clock()
        self._costs.append(max(0.0, now - self._render_started))
        while (early := frame * self.frame_s - now) > 0:
            self._sleep(min(early, 0.02))
            now = self._clock()
        return now - (frame + 0.5) * self.frame_s

    def shown(self, frame: int, offset_s: float) -> None:
        self._last_shown = frame
        self.stats.shown += 1
        self.stats.max_av_offset_s = max(self.stats.max_av_offset_s, abs(offset_s))
        if offset_s >= self.frame_s / 2:
            self.stats.late_presents += 1

