"""The quality seam: who picks FULL / COARSE / PASS for each frame.

`render.quality: auto` puts the governor here (runtime/governor.py: temperature, throttling,
CPU load, frame cost); a fixed level is a FixedQuality. The frame loop reports every frame's
busy time and the scheduler's cumulative drop count through `observe`.
"""
from __future__ import annotations

from typing import Protocol

from .render.renderer import Quality


class QualityPolicy(Protocol):
    def level(self) -> Quality: ...

    def observe(self, frame_cost_s: float, dropped: int) -> None: ...


class FixedQuality:
    def __init__(self, level: Quality):
        self._level = level

    def level(self) -> Quality:
        return self._level

    def observe(self, frame_cost_s: float, dropped: int) -> None:
        pass
