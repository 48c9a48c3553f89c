"""The audio timeline: every 16 kHz sample the appliance plays, sample 0 = video frame 0."""
from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np


class Timeline:
    """A preallocated ring of the most recent `capacity_s` seconds, with absolute positions.

    One writer (the ingest thread) appends; readers (record sink, tests) copy ranges that are
    still in the ring. `truncate` rewinds the write position for a barge-in.
    """

    def __init__(self, rate: int = 16000, capacity_s: float = 30.0,
                 time_fn: Callable[[], float] = time.monotonic):
        self.rate = rate
        self._ring = np.zeros(int(rate * capacity_s), np.float32)
        self._write = 0
        self._written_at = time_fn()
        self._time = time_fn
        self._lock = threading.Lock()

    @property
    def write_pos(self) -> int:
        return self._write

    def written(self) -> tuple[int, float]:
        """(samples written, monotonic time of the last write): the capture clock's anchor."""
        with self._lock:
            return self._write, self._written_at

    def append(self, samples: np.ndarray) -> None:
        total = len(samples)
        size = len(self._ring)
        if total > size:  # only the newest `size` samples can be kept
            samples = samples[-size:]
        n = len(samples)
        with self._lock:
            start = self._write % size
            first = min(n, size - start)
            self._ring[start:start + first] = samples[:first]
            self._ring[:n - first] = samples[first:]
            self._write += total
            self._written_at = self._time()

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop); positions no longer (or not yet) in the ring read as zeros."""
        out = np.zeros(max(0, stop - start), np.float32)
        with self._lock:
            size = len(self._ring)
            lo, hi = max(start, self._write - size), min(stop, self._write)
            for pos in range(lo, hi, size):
                end = min(hi, pos + size)
                a, b = pos % size, (pos % size) + (end - pos)
                if b <= size:
                    out[pos - start:end - start] = self._ring[a:b]
                else:
                    cut = size - a
                    out[pos - start:pos - start + cut] = self._ring[a:]
                    out[pos - start + cut:end - start] = self._ring[:b - size]
        return out

    def truncate(self, position: int) -> None:
        """Forget samples at and after `position` (never earlier than what was written)."""
        with self._lock:
            self._write = min(self._write, max(0, position))
            self._written_at = self._time()
