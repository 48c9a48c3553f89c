"""Per-stage wall-clock timings (ring buffers) for `edgemate bench` and the status report."""
from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Iterator

import numpy as np

#: Pipeline stages in data-flow order; `edgemate bench` reports them under these names.
#: "frame" is the frame thread's whole busy time per shown frame (the stages it runs, the
#: mouth track and the Python between them; not the wait for the frame's slot).
STAGES = ("features", "audio_model", "coarse", "fine", "upscale", "composite", "present", "frame")


class StageTimer:
    def __init__(self, window: int = 2000):
        self._samples: dict[str, deque[float]] = {}
        self._window = window
        self._lock = threading.Lock()

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            ring = self._samples.get(stage)
            if ring is None:
                ring = self._samples[stage] = deque(maxlen=self._window)
            ring.append(seconds)

    def summary_ms(self) -> dict[str, dict[str, float]]:
        """{stage: {p50, p95, n}} in milliseconds, stages in pipeline order."""
        with self._lock:
            snapshot = {name: list(ring) for name, ring in self._samples.items()}
        order = [s for s in STAGES if s in snapshot] + sorted(set(snapshot) - set(STAGES))
        out = {}
        for name in order:
            values = np.asarray(snapshot[name]) * 1000.0
            out[name] = {"p50": round(float(np.percentile(values, 50)), 3),
                         "p95": round(float(np.percentile(values, 95)), 3), "n": int(values.size)}
        return out

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
