"""The quality governor: FULL / COARSE / PASS from temperature, throttling, CPU load and cost.

It sits behind the quality seam (runtime/quality.py): the frame loop asks `level()` before
each frame and reports the frame's busy time and the scheduler's drop count to `observe()`,
where every decision is made (on the frame thread, so a level never changes mid-frame).
Sensors are read elsewhere (runtime/sensors.py, a thread): `read_sensors` only returns the
latest reading. Time comes from `clock`, so a test runs an hour of history in milliseconds.

Down, one level at once:  temperature reaches hot_c (once per hot spell), a throttle flag
                          appears (once per flag until the flags stay clear for dwell_s),
                          frames were dropped in the window, or the window's p95
                          cost exceeds step_down_cost x 40 ms (step_up_cost x 40 ms while
                          other processes keep the CPU busy). critical_c: straight to PASS.
                          Cost waits out refractory_s after any switch; cost and drops wait
                          out warmup_s at the start; temperature and throttling never wait.
Up, one level:            after dwell_s with every condition good: no hot spell (it ends at
                          cool_c), no throttle flag, no drops, the current p95 within
                          step_up_cost, other processes below busy_cpu_percent (on a busy
                          CPU: after retry_after_s instead), and the level above fits (its
                          p95 from the last time it ran, unless older than retry_after_s or
                          measured on a busy CPU that is calm now: then try it again).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from . import FPS
from .config_schema import GovernorConfig
from .render.renderer import Quality
from .sensors import NO_READING, Reading

log = logging.getLogger(__name__)

#: The frame budget at 25 fps.
BUDGET_S = 1.0 / FPS
#: Costs kept per level for its estimate: 5 s of frames.
_HISTORY_FRAMES = 5 * FPS
#: Switches kept for status and bench (a kiosk runs for months; the count goes on).
_MAX_SWITCHES = 1000


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
        self._costs: deque[tuple[float, float]] = deque()  # (t, cost) at this level, in window
        self._drops: deque[tuple[float, int]] = deque()  # (t, frames dropped) in window
        self._last_dropped: int | None = None
        self._history = {level: deque(maxlen=_HISTORY_FRAMES) for level in Quality}
        self._history_at = {level: -math.inf for level in Quality}
        # Measured while other processes kept the CPU busy: not to be trusted once it is calm.
        self._history_busy = {level: False for level in Quality}
        self._fresh_run = True  # the next cost starts this level's history anew
        self._after_switch = False
        self._good_since: float | None = None  # every step-up condition held since
        # A step up that fails again within retry_after_s doubles the next wait for that
        # level (up to 8x): a box that stays busy is probed ever less often, not every minute.
        self._entered_up: tuple[Quality, float] | None = None
        self._failed_probes = {level: 0 for level in Quality}
        self._calm_since: float | None = None  # the CPU not busy since
        self._last_switch = -math.inf
        self._thermal = "normal"  # normal, hot or critical: a hot spell ends at cool_c
        self._throttle_spell: set[str] = set()  # flags seen since they were last clear
        self._flags_clear_since: float | None = None
        self.reading = NO_READING
        self._reader_failed = False
        self.switches: deque[Switch] = deque(maxlen=_MAX_SWITCHES)
        self.switch_count = 0
        self._lock = threading.Lock()  # snapshot() runs on the control/status threads
        self._min_samples = max(5, int(settings.window_s * FPS * 0.5))

    # -- the QualityPolicy seam ---------------------------------------------------------
    def level(self) -> Quality:
        return self._level

    def observe(self, frame_cost_s: float, dropped: int) -> None:
        """One shown frame: its busy time and the scheduler's cumulative drop count."""
        now = self._clock()
        if self._started is None:
            self._started = self._level_since = now
            self._last_dropped = dropped
        new_drops = max(0, dropped - (self._last_dropped or 0))  # a new scheduler restarts at 0
        self._last_dropped = dropped
        if self._after_switch:
            # Drops counted before this frame were caused by the one before the switch.
            new_drops, self._after_switch = 0, False
        if now - self._started >= self.settings.warmup_s:  # warm-up frames say nothing
            self._record(now, frame_cost_s, new_drops)
        reading = self._safe_reading()
        if reading.at != self.reading.at and self._busy(reading):
            self._tag_busy(reading.at)
        self.reading = reading
        self._decide(now, reading)

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

    def _record(self, now: float, cost: float, new_drops: int) -> None:
        horizon = now - self.settings.window_s
        self._costs.append((now, cost))
        while self._costs and self._costs[0][0] < horizon:
            self._costs.popleft()
        if new_drops:
            self._drops.append((now, new_drops))
        while self._drops and self._drops[0][0] < horizon:
            self._drops.popleft()
        if self._fresh_run:
            self._history[self._level].clear()
            self._history_busy[self._level] = False
            self._fresh_run = False
        self._history[self._level].append(cost)
        self._history_at[self._level] = now

    def _busy(self, reading: Reading) -> bool:
        limit = self.settings.busy_cpu_percent
        return (limit is not None and reading.cpu_other_percent is not None
                and reading.cpu_other_percent >= limit)

    def _tag_busy(self, sampled_at: float) -> None:
        # A CPU-load sample covers the interval before it: a level that ran in it was
        # measured on a busy box, even if it stopped before the sample came in.
        since = sampled_at - 1.5 * self.settings.sample_interval_s
        for level in Quality:
            if self._history_at[level] >= since:
                self._history_busy[level] = True

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
        self._entered_up = None  # a step up sets it again after this
        self._costs.clear()  # the window now measures the new level
        self._drops.clear()
        self._fresh_run = True
        self._after_switch = True
        (log.warning if to < previous else log.info)(
            "quality %s -> %s: %s", previous.label, to.label, reason)

    # -- the rules ------------------------------------------------------------------------
    def _decide(self, now: float, reading: Reading) -> None:
        if self._step_down_thermal(now, reading):
            return
        s = self.settings
        if self._level > Quality.PASS and now - self._started >= s.warmup_s:
            # Drops step down at once, refractory or not: the picture already stutters.
            dropped = sum(count for _, count in self._drops)
            if dropped >= s.step_down_drops:
                self._note_failed_probe(now)
                self._switch(now, Quality(self._level - 1),
                             f"{dropped} frame{'s' if dropped != 1 else ''} dropped "
                             f"in {s.window_s:g} s")
                return
            if now - self._last_switch >= s.refractory_s and self._step_down_cost(now, reading):
                return
        self._step_up(now, reading)

    def _step_down_cost(self, now: float, reading: Reading) -> bool:
        cost = self._window_p95()
        if cost is None:
            return False
        s = self.settings
        limit, busy = s.step_down_cost * BUDGET_S, ""
        if self._busy(reading):
            # On a contended CPU the cost has a long tail: keep the step-up headroom (the
            # same bar as for stepping up, so this cannot flap: no step up while busy).
            limit = s.step_up_cost * BUDGET_S
            busy = f" with other processes at {reading.cpu_other_percent:.0f}% CPU"
        if cost <= limit:
            return False
        self._note_failed_probe(now)
        self._switch(now, Quality(self._level - 1),
                     f"p95 frame cost {cost * 1000:.1f} ms > {limit * 1000:.0f} ms{busy}")
        return True

    def _step_down_thermal(self, now: float, reading: Reading) -> bool:
        s, temp = self.settings, reading.temperature_c
        # A throttle spell, like a hot spell, steps down once per flag: firmware flags toggle
        # around their limit, and each toggle must not cost a level. It ends after dwell_s clear.
        new_flags = [flag for flag in reading.throttled if flag not in self._throttle_spell]
        self._throttle_spell.update(reading.throttled)
        if reading.throttled:
            self._flags_clear_since = None
        elif self._flags_clear_since is None:
            self._flags_clear_since = now
        elif self._throttle_spell and now - self._flags_clear_since >= s.dwell_s:
            self._throttle_spell.clear()
        if temp is not None:
            if temp >= s.critical_c:
                self._thermal = "critical"
                if self._level != Quality.PASS:
                    self._switch(now, Quality.PASS,
                                 f"temperature {temp:.1f} C >= critical {s.critical_c:g} C")
                    return True
            elif temp >= s.hot_c and self._thermal == "normal":
                self._thermal = "hot"  # one step per hot spell: it ends at cool_c
                if self._level > Quality.PASS:
                    self._switch(now, Quality(self._level - 1),
                                 f"temperature {temp:.1f} C >= hot {s.hot_c:g} C")
                    return True
            elif temp <= s.cool_c and self._thermal != "normal":
                self._thermal = "normal"
                log.info("temperature %.1f C <= cool %g C: the hot spell is over", temp, s.cool_c)
        if new_flags and self._level > Quality.PASS:
            self._switch(now, Quality(self._level - 1), "throttle: " + ", ".join(new_flags))
            return True
        return False

    def _note_failed_probe(self, now: float) -> None:
        if self._entered_up is not None and self._entered_up[0] == self._level \
                and now - self._entered_up[1] < self.settings.retry_after_s:
            self._failed_probes[self._level] += 1

    def _retry_after_s(self, level: Quality) -> float:
        return self.settings.retry_after_s * 2 ** min(self._failed_probes[level], 3)

    def _step_up(self, now: float, reading: Reading) -> None:
        s = self.settings
        busy = self._busy(reading)
        if busy:
            self._calm_since = None
        elif self._calm_since is None:
            self._calm_since = now
            self._failed_probes = {level: 0 for level in Quality}  # they failed on a busy CPU
        if self._entered_up is not None and now - self._entered_up[1] >= s.retry_after_s:
            self._failed_probes[self._entered_up[0]] = 0  # it held: the probe succeeded
            self._entered_up = None
        if self._level >= self.top:
            return
        cost = self._window_p95()
        good = ((self._thermal == "normal" or reading.temperature_c is None)
                and not reading.throttled and not self._drops
                and now - self._started >= s.warmup_s
                and cost is not None and cost <= s.step_up_cost * BUDGET_S)
        if not good:
            self._good_since = None
            return
        if self._good_since is None:
            self._good_since = now
        higher = Quality(self._level + 1)
        if busy:
            # On a busy CPU only probe now and then: never within a short load burst, yet a
            # box that stays busy must not be stuck low for good.
            held_s, wait_s = now - self._good_since, max(s.dwell_s, self._retry_after_s(higher))
        else:
            held_s, wait_s = now - max(self._good_since, self._calm_since), s.dwell_s
        if held_s < wait_s:
            return
        history = self._history[higher]
        # A level that ran only a few frames left no p95 to go by: try it.
        estimate = p95(history) if len(history) >= self._min_samples else None
        stale = (now - self._history_at[higher] >= self._retry_after_s(higher)
                 or (self._history_busy[higher] and not busy))
        if estimate is not None and estimate > s.step_up_cost * BUDGET_S and not stale:
            return  # the level above did not fit the last time it ran; wait or retry later
        temp = ("no temperature" if reading.temperature_c is None
                else f"{reading.temperature_c:.1f} C")
        above = ("untried" if estimate is None else f"{estimate * 1000:.1f} ms"
                 + (" on a busy CPU" if self._history_busy[higher] else ""))
        calm = (f"{now - self._good_since:.0f} s on a busy CPU" if busy
                else f"{s.dwell_s:g} s calm")
        self._switch(now, higher, f"{calm} ({temp}, no drops, p95 "
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
                "thermal_state": self._thermal,
                "temperature_c": reading.temperature_c,
                "throttled": list(reading.throttled),
                "cpu_other_percent": reading.cpu_other_percent}
