"""The quality governor: FULL / COARSE / PASS from temperature, throttling and own frame cost.

It sits behind the quality seam (runtime/quality/levels.py): the frame loop asks `level()` before
each frame and reports what the frame cost to `observe()`, where every decision is made (on
the frame thread, so a level never changes mid-frame). Sensors are read elsewhere
(runtime/quality/sensors.py, a thread): `read_sensors` only returns the latest reading. Time comes
from `clock`, so a test runs an hour of history in milliseconds.

Cost is the CPU time the frame thread spent on a frame, not its wall time. A frame that was
late because another process held the core did not cost more, and rendering less would not
give the core back: such drops are counted as pre-empted (runtime/quality/levels.py: DropLedger),
reported, and never a reason to step down. COARSE is the floor: PASS shows no mouth at all.

Down, one level at once, to COARSE at the lowest:
    temperature reaches hot_c (once per hot spell: it ends at cool_c); a new throttle flag
    (once per flag until the flags stay clear for thermal_dwell_s); step_down_drops frames
    within window_s that were too slow for their slot by their own CPU cost (each made the
    next frame drop: one stall is one such frame, and one never steps down); the window's
    p95 CPU cost above step_down_cost x 40 ms. Drops and cost wait out refractory_s after
    any switch and warmup_s at the start. Neither counts while the part of the cost that
    every level pays (the display's present: FrameCost.fixed_cpu_s) is itself over that
    budget in the window: stepping down would take the mouth away and not save the frames
    (a slow display path is reported as display_bound instead).
To PASS, from any level:
    temperature reaches critical_c; or COARSE's p95 CPU cost stays above step_down_cost x
    40 ms for pass_after_s (even the cheapest neural level cannot keep its budget).
Up, one level:
    after dwell_s with every condition good (thermal_dwell_s while recovering from a hot
    spell or throttling): no hot spell, no throttle flag (it does not hold PASS), no own-cost
    drop in the window, this level's p95 within step_up_cost, and the level above fits: its
    p95 from the last time it ran is within step_up_cost, or it is older than retry_after_s,
    or there is none. A level left again for its own cost within retry_after_s of a step up
    doubles the dwell before its next try (up to 8x): a box too slow for FULL is probed
    ever less often, and a box that was only busy for a moment is back within dwell_s.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from runtime import FPS
from .levels import BUDGET_S, FrameCost, Quality
from .sensors import NO_READING, Reading

if TYPE_CHECKING:  # the settings come from the config, which sits a layer above
    from runtime.config.schema import GovernorConfig

log = logging.getLogger(__name__)

#: Costs kept per level for its estimate: 5 s of frames.
_HISTORY_FRAMES = 5 * FPS
#: Switches kept for status and bench (a kiosk runs for months; the count goes on).
_MAX_SWITCHES = 1000
#: Longest back-off of a level that keeps failing: dwell_s x 2**3.
_MAX_BACKOFF_DOUBLINGS = 3


@dataclass(frozen=True)
class Switch:
    t: float  # seconds since the governor's first frame
    from_level: Quality
    to_level: Quality
    reason: str

    def as_dict(self) -> dict:
        return {"t": round(self.t, 2), "from": self.from_level.label,
                "to": self.to_level.label, "reason": self.reason}


def p95(values) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


class Governor:
    """A QualityPolicy that switches levels; see the module docstring for the rules."""

    def __init__(self, settings: GovernorConfig,
                 read_sensors: Callable[[], Reading] = lambda: NO_READING,
                 clock: Callable[[], float] = time.monotonic, top: Quality = Quality.FULL):
        self.settings = settings
        self._read_sensors = read_sensors
        self._clock = clock
        self.top = top
        self._level = top
        self._started: float | None = None  # the first observed frame
        self._level_since = 0.0
        self._time_at = {level: 0.0 for level in Quality}
        self._costs: deque[tuple[float, float]] = deque()  # (t, CPU cost) at this level, in window
        self._fixed: deque[tuple[float, float]] = deque()  # (t, cost every level pays), in window
        #: True while the display alone costs more than the budget (then nothing steps down).
        self.display_bound = False
        self._own_drops: deque[tuple[float, int]] = deque()  # (t, own-cost drops) in window
        self._history = {level: deque(maxlen=_HISTORY_FRAMES) for level in Quality}
        self._history_at = {level: -math.inf for level in Quality}
        self._fresh_run = True  # the next cost starts this level's history anew
        self._good_since: float | None = None  # every step-up condition held since
        self._over_since: float | None = None  # COARSE over its budget since (towards PASS)
        self._entered_up: tuple[Quality, float] | None = None  # the last step up, to judge it
        self._failed_probes = {level: 0 for level in Quality}
        self._last_switch = -math.inf
        self._thermal = "normal"  # normal, hot or critical: a hot spell ends at cool_c
        self._thermal_recovery = False  # stepped down for heat or throttling: long dwell up
        self._throttle_spell: set[str] = set()  # flags seen since they were last clear
        self._flags_clear_since: float | None = None
        self.reading = NO_READING
        self._reader_failed = False
        self.switches: deque[Switch] = deque(maxlen=_MAX_SWITCHES)
        self.switch_count = 0
        self.drops_own = 0
        self.drops_preempted = 0
        self._lock = threading.Lock()  # snapshot() runs on the control/status threads
        self._min_samples = max(5, int(settings.window_s * FPS * 0.5))

    # -- the QualityPolicy seam ---------------------------------------------------------
    def level(self) -> Quality:
        return self._level

    def observe(self, cost: FrameCost) -> None:
        """One shown frame: what it cost and the drops just before it."""
        now = self._clock()
        if self._started is None:
            self._started = self._level_since = now
        self.drops_own += cost.own_drops
        self.drops_preempted += cost.preempted_drops
        warm = now - self._started >= self.settings.warmup_s  # warm-up frames say nothing
        # A frame rendered at another level (a switch waiting for a near-rest mouth) or
        # blending two levels is not evidence about the current one.
        evidence = not cost.blended and (cost.level is None or cost.level == self._level)
        if warm:
            self._fixed.append((now, cost.fixed_cpu_s))
            while self._fixed and self._fixed[0][0] < now - self.settings.window_s:
                self._fixed.popleft()
        if warm and evidence:
            self._record(now, cost.cpu_s)
        if warm and cost.own_drops:
            self._own_drops.append((now, cost.own_drops))
        horizon = now - self.settings.window_s
        while self._own_drops and self._own_drops[0][0] < horizon:
            self._own_drops.popleft()
        self.reading = self._safe_reading()
        self._decide(now, self.reading)

    # -- bookkeeping ----------------------------------------------------------------------
    def _safe_reading(self) -> Reading:
        try:
            reading = self._read_sensors()
            return reading if isinstance(reading, Reading) else NO_READING
        except Exception:  # noqa: BLE001 - sensors are optional; a bug there must not stop frames
            if not self._reader_failed:  # once, not 25 tracebacks a second
                self._reader_failed = True
                log.exception("reading the sensors failed; deciding without them")
            return NO_READING

    def _record(self, now: float, cpu_s: float) -> None:
        horizon = now - self.settings.window_s
        self._costs.append((now, cpu_s))
        while self._costs and self._costs[0][0] < horizon:
            self._costs.popleft()
        if self._fresh_run:
            self._history[self._level].clear()
            self._fresh_run = False
        self._history[self._level].append(cpu_s)
        self._history_at[self._level] = now

    def _display_bound(self) -> bool:
        """Is the cost every level pays over the step-down budget (a display path too slow)?"""
        budget = self.settings.step_down_cost * BUDGET_S
        fixed = p95(cost for _, cost in self._fixed) if len(self._fixed) >= self._min_samples else 0.0
        bound = fixed > budget
        if bound and not self.display_bound:
            log.warning("the frame's cost at every level (display present) is p95 %.1f ms, over "
                        "the %.0f ms budget: stepping down would not help; quality stays",
                        fixed * 1000, budget * 1000)
        self.display_bound = bound
        return bound

    def _window_p95(self) -> float | None:
        if len(self._costs) < self._min_samples:
            return None
        return p95(cost for _, cost in self._costs)

    def _switch(self, now: float, to: Quality, reason: str) -> None:
        previous = self._level
        switch = Switch(now - self._started, previous, to, reason)
        with self._lock:
            self._time_at[previous] += now - self._level_since
            self._level_since = now
            self._level = to
            self.switches.append(switch)
            self.switch_count += 1
        self._last_switch = now
        self._good_since = None
        self._over_since = None
        self._costs.clear()  # the window now measures the new level
        self._own_drops.clear()
        self._fresh_run = True
        if to >= self.top:
            self._thermal_recovery = False
        (log.warning if to < previous else log.info)(
            "quality %s -> %s: %s", previous.label, to.label, reason)

    def _step_down(self, now: float, reason: str, *, thermal: bool = False) -> None:
        if thermal:
            self._thermal_recovery = True
        elif self._entered_up is not None and self._entered_up[0] == self._level \
                and now - self._entered_up[1] < self.settings.retry_after_s:
            self._failed_probes[self._level] += 1  # a step up that did not hold
        self._entered_up = None
        self._switch(now, Quality(self._level - 1), reason)

    # -- the rules ------------------------------------------------------------------------
    def _decide(self, now: float, reading: Reading) -> None:
        if self._step_down_thermal(now, reading):
            return
        s = self.settings
        warm = now - self._started >= s.warmup_s
        if warm and self._display_bound():
            self._over_since = None
            self._step_up(now, reading)
            return
        if warm and self._level > Quality.COARSE and now - self._last_switch >= s.refractory_s:
            # Counted per late frame, not per dropped frame: one stall that skips three
            # frames is one event, and one event never steps down.
            late = len(self._own_drops)
            if late >= s.step_down_drops:
                dropped = sum(count for _, count in self._own_drops)
                self._step_down(now, f"{late} frames too slow for their slot in "
                                     f"{s.window_s:g} s by their own CPU cost "
                                     f"({_plural(dropped, 'frame')} dropped)")
                return
            cost = self._window_p95()
            if cost is not None and cost > s.step_down_cost * BUDGET_S:
                self._step_down(now, f"p95 CPU cost {cost * 1000:.1f} ms > "
                                     f"{s.step_down_cost * BUDGET_S * 1000:.0f} ms")
                return
        if warm and self._level == Quality.COARSE and self._step_to_pass(now):
            return
        self._step_up(now, reading)

    def _step_to_pass(self, now: float) -> bool:
        """COARSE -> PASS only when COARSE cannot keep its budget for pass_after_s on end."""
        s = self.settings
        cost = self._window_p95()
        if cost is None or cost <= s.step_down_cost * BUDGET_S:
            self._over_since = None
            return False
        if self._over_since is None:
            self._over_since = now
        if now - self._over_since < s.pass_after_s:
            return False
        self._step_down(now, f"coarse p95 CPU cost {cost * 1000:.1f} ms > "
                             f"{s.step_down_cost * BUDGET_S * 1000:.0f} ms for "
                             f"{s.pass_after_s:g} s")
        return True

    def _step_down_thermal(self, now: float, reading: Reading) -> bool:
        s, temp = self.settings, reading.temperature_c
        # A throttle spell, like a hot spell, steps down once per flag: firmware flags toggle
        # around their limit, and each toggle must not cost a level. It ends after
        # thermal_dwell_s clear.
        new_flags = [flag for flag in reading.throttled if flag not in self._throttle_spell]
        self._throttle_spell.update(reading.throttled)
        if reading.throttled:
            self._flags_clear_since = None
        elif self._flags_clear_since is None:
            self._flags_clear_since = now
        elif self._throttle_spell and now - self._flags_clear_since >= s.thermal_dwell_s:
            self._throttle_spell.clear()
        if temp is not None:
            if temp >= s.critical_c:
                self._thermal = "critical"
                if self._level != Quality.PASS:
                    self._thermal_recovery = True
                    self._entered_up = None
                    self._switch(now, Quality.PASS,
                                 f"temperature {temp:.1f} C >= critical {s.critical_c:g} C")
                    return True
            elif temp >= s.hot_c and self._thermal == "normal":
                self._thermal = "hot"  # one step per hot spell: it ends at cool_c
                if self._level > Quality.COARSE:
                    self._step_down(now, f"temperature {temp:.1f} C >= hot {s.hot_c:g} C",
                                    thermal=True)
                    return True
            elif temp <= s.cool_c and self._thermal != "normal":
                self._thermal = "normal"
                log.info("temperature %.1f C <= cool %g C: the hot spell is over", temp, s.cool_c)
        if new_flags and self._level > Quality.COARSE:
            self._step_down(now, "throttle: " + ", ".join(new_flags), thermal=True)
            return True
        return False

    def _dwell_s(self, level: Quality) -> float:
        s = self.settings
        if self._thermal_recovery:
            return s.thermal_dwell_s
        return s.dwell_s * 2 ** min(self._failed_probes[level], _MAX_BACKOFF_DOUBLINGS)

    def _step_up(self, now: float, reading: Reading) -> None:
        s = self.settings
        if self._entered_up is not None and now - self._entered_up[1] >= s.retry_after_s:
            self._failed_probes[self._entered_up[0]] = 0  # it held: the probe succeeded
            self._entered_up = None
        if self._level >= self.top:
            return
        cost = self._window_p95()
        # Throttling holds FULL back, not the mouth itself: PASS -> COARSE ignores it.
        throttled = bool(reading.throttled) and self._level >= Quality.COARSE
        good = ((self._thermal == "normal" or reading.temperature_c is None)
                and not throttled and not self._own_drops
                and now - self._started >= s.warmup_s
                and cost is not None and cost <= s.step_up_cost * BUDGET_S)
        if not good:
            self._good_since = None
            return
        if self._good_since is None:
            self._good_since = now
        higher = Quality(self._level + 1)
        wait_s = self._dwell_s(higher)
        if now - self._good_since < wait_s:
            return
        history = self._history[higher]
        # A level that ran only a few frames left no p95 to go by: try it.
        estimate = p95(history) if len(history) >= self._min_samples else None
        stale = now - self._history_at[higher] >= s.retry_after_s
        if estimate is not None and estimate > s.step_up_cost * BUDGET_S and not stale:
            return  # the level above did not fit the last time it ran; wait or retry later
        temp = ("no temperature" if reading.temperature_c is None
                else f"{reading.temperature_c:.1f} C")
        above = "untried" if estimate is None else f"{estimate * 1000:.1f} ms"
        self._switch(now, higher, f"{wait_s:g} s good ({temp}, no own-cost drops, p95 CPU "
                                  f"{cost * 1000:.1f} ms; {higher.label} p95 {above})")
        self._entered_up = (higher, now)

    # -- reporting ------------------------------------------------------------------------
    def time_at_level_s(self) -> dict[str, float]:
        with self._lock:
            spent = dict(self._time_at)
            if self._started is not None:
                spent[self._level] += self._clock() - self._level_since
        return {level.label: round(spent[level], 2) for level in sorted(Quality, reverse=True)}

    def snapshot(self, last: int | None = 10) -> dict:
        """For status, metrics and bench; `last` switches (None = all kept)."""
        with self._lock:
            switches = list(self.switches)
            count = self.switch_count
        shown = switches if last is None else switches[-last:]
        reading = self.reading
        return {"level": self._level.label, "switch_count": count,
                "switches": [switch.as_dict() for switch in shown],
                "time_at_level_s": self.time_at_level_s(),
                "drops_own_cost": self.drops_own, "drops_preempted": self.drops_preempted,
                "display_bound": self.display_bound,
                "thermal_state": self._thermal,
                "temperature_c": reading.temperature_c,
                "throttled": list(reading.throttled),
                "cpu_other_percent": reading.cpu_other_percent}
