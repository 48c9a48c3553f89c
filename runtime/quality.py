"""The quality seam: who picks FULL / COARSE / PASS for each frame.

The governor issue plugs a thermal/CPU governor in here; until then the level is fixed by
the config. The frame loop reports every frame's cost and drops through `observe`.
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
