"""The quality seam: who picks FULL / COARSE / PASS for each frame, and what a frame cost.

`render.quality: auto` puts the governor here (runtime/quality/governor.py: temperature, throttling,
the appliance's own frame cost); a fixed level is a FixedQuality. The frame loop reports
every shown frame through `observe(FrameCost)`: its busy wall time, the CPU time the frame
thread spent on it, and the frames dropped before it, split by `DropLedger` into those the
appliance's own cost explains and those another process caused by holding the core.

`Quality` lives here, not in the renderer, so the policy side never imports ncnn.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from runtime import FPS

#: The frame budget at 25 fps.
BUDGET_S = 1.0 / FPS


class Quality(enum.IntEnum):
    PASS = 0
    COARSE = 1
    FULL = 2

    @classmethod
    def parse(cls, name: str) -> Quality:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


#: Values of render.quality: a fixed level, or "auto" (the governor decides).
QUALITY_SETTINGS = ("auto", *(level.label for level in sorted(Quality, reverse=True)))


@dataclass(frozen=True)
class FrameCost:
    """One shown frame, as the frame loop measured it."""

    wall_s: float  # busy wall time: render + composite + present (not the wait for its slot)
    cpu_s: float  # CPU time of the frame thread over the same work (time.thread_time)
    own_drops: int = 0  # frames dropped just before this one that the previous frame's cost explains
    preempted_drops: int = 0  # ... that it does not: the core was taken from us
    level: Quality | None = None  # the level rendered (None: what the policy said)
    blended: bool = False  # a blend between two levels: their cost together is no evidence
    #: CPU of the part a lower level removes (render and composite of the mouth); the rest
    #: (the sink's present, the mouth track) is paid at every level. None: all of it counts.
    render_cpu_s: float | None = None

    @property
    def fixed_cpu_s(self) -> float:
        """What the frame would cost at PASS: no level can save it."""
        return 0.0 if self.render_cpu_s is None else max(0.0, self.cpu_s - self.render_cpu_s)


class QualityPolicy(Protocol):
    def level(self) -> Quality: ...

    def observe(self, cost: FrameCost) -> None: ...


class FixedQuality:
    def __init__(self, level: Quality):
        self._level = level

    def level(self) -> Quality:
        return self._level

    def observe(self, cost: FrameCost) -> None:
        pass


class DropLedger:
    """Splits the scheduler's drops into own-cost and pre-empted ones.

    The scheduler counts a drop when it picks the next frame, so the drops seen before frame
    k were caused by frame k-1 (or by a wait between the two). They count against the level
    only when frame k-1 spent more than `own_cost_s` of CPU time itself: a frame whose own
    work fits well inside the budget and was late anyway was pre-empted by another process,
    and rendering less would not have given the core back.
    """

    def __init__(self, own_cost_s: float):
        self.own_cost_s = own_cost_s
        self.own = 0
        self.preempted = 0
        self._last_dropped = 0
        self._last_cpu_s: float | None = None

    def split(self, dropped_total: int) -> tuple[int, int]:
        """(own, pre-empted) of the drops since the last call; a new scheduler restarts at 0."""
        new = max(0, dropped_total - self._last_dropped)
        self._last_dropped = dropped_total
        if not new:
            return 0, 0
        if self._last_cpu_s is not None and self._last_cpu_s > self.own_cost_s:
            self.own += new
            return new, 0
        self.preempted += new
        return 0, new

    def shown(self, cpu_s: float) -> None:
        """The CPU cost of the frame just shown: the next drops are judged by it."""
        self._last_cpu_s = cpu_s

    def restart(self) -> None:
        """A new frame loop (a new scheduler, counting from 0); the totals go on."""
        self._last_dropped = 0
        self._last_cpu_s = None
