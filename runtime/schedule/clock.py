"""Audio clocks: what audio time (timeline seconds) the viewer hears now.

Video frame k shows audio time k/25 s, so the frame loop never keeps time of its own: it
asks one of these. Every clock is clamped to never run backwards (device position
estimates jitter), which keeps frame indices monotonic.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Protocol

from runtime import SAMPLE_RATE


class AudioClock(Protocol):
    name: str

    def now_s(self) -> float:
        """Timeline seconds being heard now (0 = the start of the run)."""


class _Monotonic:
    """Clamp a raw reading so the clock never goes backwards."""

    def __init__(self) -> None:
        self._last = 0.0
        self._lock = threading.Lock()

    def _clamped(self, value: float) -> float:
        with self._lock:
            if value > self._last:
                self._last = value
            return self._last


class MonotonicClock(_Monotonic):
    """Free-running: used when nothing is played and nothing is captured (files, stream).

    A gap of more than `pause_s` between two readings means the whole process was stopped
    (SIGSTOP, a suspended VM, a swap storm: the frame loop reads it every 40 ms): the clock
    pauses for the excess instead of jumping, so the sound resumes where it stopped. A
    jump would have the ingest race through the skipped seconds of a playlist unheard.
    """

    name = "monotonic"

    def __init__(self, time_fn: Callable[[], float] = time.monotonic, pause_s: float = 0.5):
        super().__init__()
        self._time = time_fn
        self._t0 = time_fn()
        self._pause_s = pause_s
        self._previous = self._t0
        self._paused_s = 0.0  # seconds the process spent stopped, taken out of the clock

    def now_s(self) -> float:
        with self._lock:
            now = self._time()
            gap = now - self._previous
            if gap > self._pause_s:
                self._paused_s += gap - self._pause_s
            self._previous = max(self._previous, now)
            value = now - self._t0 - self._paused_s
        return self._clamped(value)


class PlaybackClock(_Monotonic):
    """The speaker is the master: samples the listener has heard, output latency included."""

    name = "playback"

    def __init__(self, heard_samples: Callable[[], float]):
        super().__init__()
        self._heard = heard_samples

    def now_s(self) -> float:
        return self._clamped(self._heard() / SAMPLE_RATE)


class CaptureClock(_Monotonic):
    """Microphone mirroring: the capture is the master.

    Time = end of the last captured sample + time since it arrived (so the picture moves
    smoothly between chunks), minus `delay_s`, which covers the audio model's look-ahead and
    capture jitter so the mouth parameters for the due frame are computed in time. Anchored
    on the sample count at every chunk, it cannot drift from the microphone's crystal.
    `max_extrapolate_s` bounds the guess when chunks stop; the ingest then fills silence.
    """

    name = "capture"

    def __init__(self, written: Callable[[], tuple[int, float]], delay_s: float,
                 time_fn: Callable[[], float] = time.monotonic, max_extrapolate_s: float = 0.1):
        super().__init__()
        self._written = written
        self._delay = delay_s
        self._time = time_fn
        self._max_extrapolate = max_extrapolate_s

    def now_s(self) -> float:
        samples, written_at = self._written()
        ahead = min(max(self._time() - written_at, 0.0), self._max_extrapolate)
        return self._clamped(samples / SAMPLE_RATE + ahead - self._delay)
