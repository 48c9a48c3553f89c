"""Live figures of the frame loop, and the typed status the service reads.

`LiveStats` is written by the frame loop (one writer) and read from control threads: every
reading copies what it needs first, so a read never sees a half-updated window.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: Frames over which the live frame rate is measured (2 s at 25 fps).
FPS_WINDOW = 50
#: Seconds of per-second picture-to-sound offset maxima kept for the status.
OFFSET_WINDOW_S = 60


@dataclass(frozen=True)
class ApplianceStatus:
    """One appliance's state for the service's status, STATUS= and /metrics."""

    source: str | None = None
    pushed: str | None = None
    level: str | None = None
    clock: str | None = None
    sink: str | None = None
    sink_note: str | None = None  # why a fallback sink is in use
    display_path: str | None = None  # the window sink's screen path and why it was taken
    fps: float = 0.0
    frames_shown: int = 0
    drops: int = 0
    preempted: int = 0
    drops_own_cost: int = 0
    late_presents: int = 0
    #: Frames shown before the audio model had produced their mouth (shown at rest).
    mouth_missing: int = 0
    max_av_offset_ms: float = 0.0
    recent_max_av_offset_ms: float = 0.0
    barge_ins: int = 0
    barge_in_latency_ms: float | None = None
    temperature_c: float | None = None
    throttled: tuple[str, ...] = ()
    cpu_other_percent: float | None = None
    governor: dict | None = None
    last_error: str | None = None


class LiveStats:
    """Frame rate over the last 2 s, the largest picture-to-sound offset of each of the last
    60 s, and the barge-in measurement (request -> first frame after the cut shown).

    `now` is the clock (monotonic seconds); tests pass a fake one."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._shown_at: deque[float] = deque(maxlen=FPS_WINDOW)
        # (whole second, max |offset| s in it): the recent picture-to-sound offset.
        self._offsets: deque[list] = deque(maxlen=OFFSET_WINDOW_S)
        self.last_offset_s = 0.0  # picture-to-sound offset of the last shown frame
        self.barge_ins = 0
        self.barge_in_latency_ms: float | None = None
        self._barge_at: float | None = None  # when a barge-in waits for its first cut frame
        self._barge_cut = 0  # the first frame index after the cut
        self._mouth_closed = threading.Event()  # set when that frame is shown

    def frame_shown(self, frame: int, offset_s: float) -> None:
        """From the frame loop, after frame `frame` was presented `offset_s` off its sound."""
        now = self._now()
        self.last_offset_s = offset_s
        self._shown_at.append(now)
        second = int(now)
        if self._offsets and self._offsets[-1][0] == second:
            self._offsets[-1][1] = max(self._offsets[-1][1], abs(offset_s))
        else:
            self._offsets.append([second, abs(offset_s)])
        if self._barge_at is not None and frame >= self._barge_cut:
            self.barge_in_latency_ms = round((now - self._barge_at) * 1000, 1)
            self._barge_at = None
            self._mouth_closed.set()

    def barge_in(self, cut_frame: int, requested_at: float | None) -> None:
        """A barge-in cut the speech: frames from `cut_frame` on show the flushed state."""
        self.barge_ins += 1
        self._mouth_closed.clear()
        self._barge_cut = cut_frame
        self._barge_at = self._now() if requested_at is None else requested_at

    def wait_mouth_closed(self, timeout_s: float) -> float | None:
        """ms from the barge-in request to its first cut frame on screen, or None if no such
        frame was shown within timeout_s."""
        if self._mouth_closed.wait(timeout_s):
            return self.barge_in_latency_ms
        return None

    def fps(self) -> float:
        shown = list(self._shown_at)
        if len(shown) < 2 or self._now() - shown[-1] > 1.0:
            return 0.0  # nothing shown for a second: the loop is not running
        return (len(shown) - 1) / (shown[-1] - shown[0])

    def recent_max_offset_ms(self) -> float:
        since = self._now() - OFFSET_WINDOW_S
        return round(max((value for second, value in list(self._offsets) if second >= since),
                         default=0.0) * 1000, 2)
