"""The quality governor on a fake clock with fake sensors: thermal ramps (with noise), slow
frames, own-cost and pre-empted drops, throttle flags, a busy CPU, stale estimates and broken
sensors. No sleeping. Each scenario pins the exact sequence of switches."""
from __future__ import annotations

import dataclasses
import math
import random

import pytest

from runtime.config.loader import load_config
from runtime.quality.governor import Governor
from runtime.quality.levels import DropLedger, FrameCost, Quality
from runtime.quality.sensors import Reading

FRAME_S = 0.04
FAST_S = 0.005  # a comfortable frame cost


def settings(**changes):
    base = load_config().governor
    fixed = dict(hot_c=80.0, critical_c=85.0, cool_c=70.0, window_s=2.0, step_down_cost=0.8,
                 step_up_cost=0.5, step_down_drops=3, pass_after_s=10.0, dwell_s=3.0,
                 thermal_dwell_s=10.0, refractory_s=3.0, warmup_s=2.0, retry_after_s=60.0)
    return dataclasses.replace(base, **{**fixed, **changes})


class Box:
    """A fake clock and fake sensors; `run` plays frames at 25 fps through a governor, with
    drops split by the frame loop's own DropLedger."""

    def __init__(self, **changes):
        self.t = 0.0
        self.temperature = None  # C, or a function of t
        self.throttled: tuple[str, ...] = ()
        self.cpu_other = None
        self.dropped = 0
        self.sample_s = 1.0  # sensors are sampled once a second, like the real thread
        self.noise = None
        self._reading = Reading()
        self._sampled_at = -math.inf
        self.governor = Governor(settings(**changes), self.read, clock=lambda: self.t)
        self.ledger = DropLedger(self.governor.settings.step_up_cost * FRAME_S)

    def read(self) -> Reading:
        if self.t - self._sampled_at >= self.sample_s:
            temp = self.temperature(self.t) if callable(self.temperature) else self.temperature
            if temp is not None and self.noise is not None:
                temp += self.noise.uniform(-2.0, 2.0)
            self._reading = Reading(at=self.t, temperature_c=temp, throttled=self.throttled,
                                    cpu_other_percent=self.cpu_other)
            self._sampled_at = self.t
        return self._reading

    def run(self, seconds: float, cost=FAST_S, drop_every: int = 0, wall=None,
            fixed=None) -> None:
        """`cost`: CPU seconds per frame, or a function of the level rendered; `wall`: the
        frame's wall time when another process stretched it (default: its CPU time).
        `drop_every`: every n-th frame the scheduler skips one (caused by the frame before).
        `fixed`: the part of `cost` every level pays (the display); None: not reported."""
        for k in range(round(seconds / FRAME_S)):
            self.t = round(self.t + FRAME_S, 6)
            if drop_every and k % drop_every == 0:
                self.dropped += 1
            cpu = cost(self.level) if callable(cost) else cost
            own, preempted = self.ledger.split(self.dropped)
            self.ledger.shown(cpu)
            render = None if fixed is None else max(0.0, cpu - fixed)
            self.governor.observe(FrameCost(cpu if wall is None else wall, cpu, own, preempted,
                                            render_cpu_s=render))

    @property
    def level(self) -> Quality:
        return self.governor.level()

    def switches(self) -> list[tuple[str, str]]:
        return [(s.from_level.label, s.to_level.label) for s in self.governor.switches]


def ramp_60_86_65(t: float) -> float:
    """60 C for 10 s, +1 C/s to 86 (t=36), hold to 40, -1 C/s to 65 (t=61), then hold."""
    if t < 10:
        return 60.0
    if t < 36:
        return 60.0 + (t - 10)
    if t < 40:
        return 86.0
    return max(65.0, 86.0 - (t - 40))


EXPECTED_RAMP = [("full", "coarse"), ("coarse", "pass"), ("pass", "coarse"), ("coarse", "full")]


def test_thermal_ramp_gives_exactly_the_expected_levels():
    box = Box()
    box.temperature = ramp_60_86_65
    box.run(120)
    assert box.switches() == EXPECTED_RAMP
    down_hot, down_critical, up1, up2 = box.governor.switches
    # Each switch comes with the first once-a-second sample past its threshold.
    assert 30.0 <= down_hot.t <= 31.0 and "hot 80 C" in down_hot.reason
    assert 35.0 <= down_critical.t <= 36.0 and "critical 85 C" in down_critical.reason
    cool_at = 56.0  # 86 - (t - 40) <= 70
    assert cool_at + 10.0 <= up1.t <= cool_at + 12.0, up1
    assert up2.t - up1.t >= 10.0 and up2.t <= up1.t + 12.0, up2
    assert box.level == Quality.FULL
    spent = box.governor.time_at_level_s()
    assert sum(spent.values()) == pytest.approx(120 - FRAME_S, abs=0.05)
    assert spent["coarse"] > 0 and spent["pass"] > 20


@pytest.mark.parametrize("seed", range(5))
def test_noisy_ramp_does_not_flap(seed):
    box = Box()
    box.temperature = ramp_60_86_65
    box.noise = random.Random(seed)
    box.run(120)
    assert box.switches() == EXPECTED_RAMP


@pytest.mark.parametrize("centre", [70.0, 80.0, 85.0])
def test_noise_around_a_threshold_for_ten_minutes_stays_bounded(centre):
    box = Box()
    box.temperature = centre
    box.noise = random.Random(7)
    box.run(600)
    # One hot spell: at most a step down per threshold it touches, never back and forth.
    assert box.governor.switch_count <= 2
    levels = [s.to_level for s in box.governor.switches]
    assert levels == sorted(levels, reverse=True), "only steps down"


def test_own_cost_burst_steps_down_once_and_recovers_within_seconds():
    box = Box()
    box.run(20)  # calm and warm
    assert box.level == Quality.FULL
    # 15 frames of 60 ms CPU, each making the next one drop. Two are not enough to step
    # down (neither by own-cost drops nor by the p95 of a 2 s window); the third is.
    box.run(0.08, cost=0.06, drop_every=1)
    assert box.level == Quality.FULL
    box.run(0.04, cost=0.06, drop_every=1)
    assert box.level == Quality.COARSE
    box.run(0.48, cost=0.06, drop_every=1)
    burst_end = box.t
    box.run(20)
    # COARSE is the floor: the burst never reaches PASS, however many frames it drops.
    assert box.switches() == [("full", "coarse"), ("coarse", "full")]
    up = box.governor.switches[-1]
    # Back once the slow frames left the 2 s window and the 3 s dwell held: seconds, not a
    # minute (t counts from the first frame, 40 ms after the box's clock started).
    assert 2.0 + 3.0 <= up.t + FRAME_S - burst_end <= 2.0 + 3.0 + 0.5, up
    # The first drop followed a cheap frame: pre-empted; the other 14 are the burst's own.
    assert box.governor.drops_own == 14 and box.governor.drops_preempted == 1


def test_preempted_frames_never_step_down():
    box = Box()
    box.cpu_other = 97.0
    # A minute of frames that another process stretched to 70 ms, each making the next drop,
    # while their own work took 5 ms of CPU: rendering less would not give the core back.
    box.run(60, cost=FAST_S, wall=0.07, drop_every=1)
    assert box.switches() == []
    assert box.governor.drops_preempted == 1500 and box.governor.drops_own == 0
    state = box.governor.snapshot()
    assert state["drops_preempted"] == 1500 and state["time_at_level_s"]["full"] > 59


def test_one_stall_never_steps_down():
    box = Box()
    box.run(20)
    box.run(0.04, cost=0.15)  # one frame of 150 ms of its own CPU (a GC pause) ...
    box.dropped += 3  # ... skips three frames at once
    box.run(30)
    assert box.switches() == []
    assert box.governor.drops_own == 3


def test_a_drop_is_blamed_on_the_frame_before_it():
    ledger = DropLedger(own_cost_s=0.02)
    assert ledger.split(0) == (0, 0)
    ledger.shown(0.03)  # a frame that used 30 ms itself
    assert ledger.split(2) == (2, 0)  # the next frame sees two drops: own cost
    ledger.shown(0.004)
    assert ledger.split(3) == (0, 1)  # a cheap frame was late anyway: pre-empted
    ledger.restart()  # a new scheduler counts from 0 again; the totals go on
    assert ledger.split(1) == (0, 1)
    assert (ledger.own, ledger.preempted) == (2, 2)


def test_quiet_box_with_occasional_preemption_never_switches():
    box = Box()
    rng = random.Random(3)
    for _ in range(600):  # ten minutes, a second at a time
        costs = [0.004 + rng.uniform(0, 0.004) for _ in range(25)]
        box.run(1.0, cost=lambda level, it=iter(costs): next(it),
                drop_every=25 if rng.random() < 0.2 else 0)
    assert box.switches() == []


def test_slow_frames_without_drops_step_down_on_p95_cpu_cost():
    box = Box()
    box.run(20)
    start = box.t
    box.run(1.0, cost=0.035)  # 35 ms > 0.8 x 40 ms of CPU, yet no frame dropped
    assert box.level == Quality.COARSE
    (switch,) = box.governor.switches
    assert switch.t - start <= 0.2 and "p95 CPU cost 35.0 ms > 32 ms" in switch.reason


def test_a_display_that_alone_overruns_the_budget_never_takes_the_mouth_away():
    box = Box()
    box.run(20)
    # 40 ms a frame of which 36 ms is the present: stepping down would save 4 ms and miss.
    box.run(30, cost=0.040, fixed=0.036, drop_every=2)
    assert box.switches() == [] and box.level == Quality.FULL
    assert box.governor.display_bound and box.governor.snapshot()["display_bound"]
    box.run(10, cost=0.006, fixed=0.002)  # a faster display path: bound no more, still FULL
    assert not box.governor.display_bound and box.switches() == []


def test_render_cost_over_budget_still_steps_down_when_the_display_fits():
    box = Box()
    box.run(20)
    start = box.t
    box.run(1.0, cost=0.035, fixed=0.010)  # 25 ms of render that a lower level removes
    assert box.level == Quality.COARSE
    (switch,) = box.governor.switches
    assert switch.t - start <= 0.2 and "p95 CPU cost 35.0 ms" in switch.reason
    assert not box.governor.display_bound


def test_busy_cpu_that_only_stretches_wall_time_does_not_step_down():
    box = Box()
    box.cpu_other = 90.0
    box.run(60, cost=0.008, wall=0.036)  # other processes make frames slow, not our work
    assert box.switches() == []


def test_coarse_goes_to_pass_only_when_it_cannot_keep_its_budget_for_pass_after_s():
    box = Box()
    box.run(20)
    costs = {Quality.FULL: 0.05, Quality.COARSE: 0.035, Quality.PASS: 0.001}
    box.run(30, cost=costs.get, drop_every=1)
    first, second = list(box.governor.switches)[:2]
    assert (first.to_level, second.to_level) == (Quality.COARSE, Quality.PASS)
    # COARSE over budget from its first full window (refractory 3 s, window filled) + 10 s.
    assert second.t - first.t >= 10.0 and "for 10 s" in second.reason
    assert box.governor.drops_own > 0


def test_coarse_is_the_floor_for_heat_throttling_and_own_drops():
    box = Box()
    box.run(20)
    box.temperature = 82.0  # hot, not critical
    box.run(5)
    box.throttled = ("frequency capped",)
    box.run(5)
    box.throttled = ("frequency capped", "throttled")  # a second flag
    box.run(5, cost=0.03, drop_every=1)  # and own-cost drops on top
    assert box.switches() == [("full", "coarse")]
    box.temperature = 90.0
    box.run(1.5)
    assert box.level == Quality.PASS, "critical is the one thermal reason for PASS"


def test_warmup_ignores_slow_first_frames():
    box = Box()
    box.run(1.5, cost=0.09, drop_every=2)
    box.run(5)
    assert box.governor.switch_count == 0


def test_critical_temperature_overrides_the_refractory_window():
    box = Box()
    box.run(20)
    box.run(0.2, cost=0.06, drop_every=1)
    assert box.level == Quality.COARSE
    box.temperature = 90.0
    box.sample_s = 0.0
    box.run(0.1)
    assert box.level == Quality.PASS
    assert box.governor.switches[-1].t - box.governor.switches[0].t < 0.5


def test_new_throttle_flag_steps_down_once_and_blocks_step_up():
    box = Box()
    box.run(20)
    box.throttled = ("frequency capped",)
    box.run(60)
    assert box.switches() == [("full", "coarse")]
    assert "frequency capped" in box.governor.switches[0].reason
    box.throttled = ("frequency capped", "throttled")  # a second flag appears: COARSE holds
    box.run(2)
    assert box.level == Quality.COARSE
    box.throttled = ()
    clear_at = box.t
    box.run(30)
    assert box.switches() == [("full", "coarse"), ("coarse", "full")]
    assert 10.0 <= box.governor.switches[-1].t - clear_at <= 11.5, "the thermal dwell"


def test_throttle_flags_toggling_at_their_limit_do_not_flap():
    box = Box()
    box.run(20)
    for second in range(120):  # the firmware sets and clears "soft limit" every other second
        box.throttled = ("soft temperature limit",) if second % 2 == 0 else ()
        box.run(1)
    assert box.switches() == [("full", "coarse")]
    box.throttled = ()
    box.run(25)  # clear for the thermal dwell: the spell is over, and the level goes back up
    assert box.switches() == [("full", "coarse"), ("coarse", "full")]
    box.throttled = ("soft temperature limit",)
    box.run(1)
    assert box.level == Quality.COARSE, "a new spell steps down again"


def test_recovery_does_not_wait_for_a_busy_cpu_to_calm():
    box = Box()
    box.run(20)
    box.cpu_other = 97.0
    box.run(0.2, cost=0.06, drop_every=1)  # own-cost drops: FULL -> COARSE
    end = box.t
    box.run(10, wall=0.02)  # the box stays busy, but our own frames are cheap again
    assert box.switches() == [("full", "coarse"), ("coarse", "full")]
    assert box.governor.switches[-1].t - end <= 2.0 + 3.0 + 0.5


def test_a_box_too_slow_for_full_probes_it_ever_less_often_and_never_flaps():
    box = Box()
    box.run(20)
    # FULL costs 25 ms of CPU: within the step-down bar, but a drop every 10th frame is its
    # own doing (25 ms > the 20 ms headroom) and its estimate does not fit a step up.
    costs = {Quality.FULL: 0.025, Quality.COARSE: 0.008, Quality.PASS: 0.001}
    box.run(600, cost=costs.get, drop_every=10)
    assert set(box.switches()) == {("full", "coarse"), ("coarse", "full")}
    ups = [s.t for s in box.governor.switches if s.to_level > s.from_level]
    gaps = [later - earlier for earlier, later in zip(ups, ups[1:])]
    assert ups and min(gaps, default=60.0) >= 60.0, ups  # only when the estimate is stale
    assert len(ups) <= 10
    assert box.governor.time_at_level_s()["coarse"] > 500


def test_failed_probes_double_the_dwell():
    box = Box(retry_after_s=30.0)
    # A frame loop that blames every late FULL frame (12 ms of CPU) on its own cost, while
    # FULL's p95 stays within the step-up bar: each step up fails again, and each failure
    # doubles the next dwell (3, 6, 12, 24 s, then no longer).
    box.ledger.own_cost_s = 0.01
    box.run(20, cost=lambda level: 0.012 if level == Quality.FULL else 0.004)
    box.run(150, drop_every=8, cost=lambda level: 0.012 if level == Quality.FULL else 0.004)
    downs = [s for s in box.governor.switches if s.to_level < s.from_level]
    ups = [s for s in box.governor.switches if s.to_level > s.from_level]
    waits = [round(up.t - down.t, 1) for down, up in zip(downs, ups)]
    assert set(box.switches()) == {("full", "coarse"), ("coarse", "full")}
    # Each wait: 1 s for the window to hold enough frames, then the dwell.
    assert len(waits) >= 5 and waits[0] < waits[1] < waits[2] < waits[3], waits
    assert waits[3] >= 24.0 and waits[4] == pytest.approx(waits[3], abs=1.0), waits


def test_level_above_that_did_not_fit_is_retried_only_when_stale():
    box = Box()
    box.run(20, cost=0.03)  # FULL runs, 30 ms: over the step-up headroom of 20 ms
    box.run(0.2, cost=0.03, drop_every=1)
    assert box.level == Quality.COARSE
    down_at = box.t
    box.run(50)  # COARSE is cheap, but FULL did not fit the last time it ran
    assert box.level == Quality.COARSE
    box.run(20)
    assert box.level == Quality.FULL
    assert box.governor.switches[-1].t - down_at >= 60.0 - 0.3
    assert "full p95 30.0 ms" in box.governor.switches[-1].reason


def test_blended_and_deferred_frames_are_not_evidence():
    box = Box()
    box.run(20)
    t = box.t
    for _ in range(100):  # a blend renders two levels: its cost is no evidence of either
        t = box.t = round(t + FRAME_S, 6)
        box.governor.observe(FrameCost(0.036, 0.036, blended=True))
        box.governor.observe(FrameCost(0.036, 0.036, level=Quality.PASS))
    assert box.switches() == []


def test_failing_sensor_reader_never_raises_out_of_the_governor(caplog):
    def broken():
        raise PermissionError("denied")

    t = [0.0]
    governor = Governor(settings(), broken, clock=lambda: t[0])
    for k in range(100):
        t[0] += FRAME_S
        governor.observe(FrameCost(FAST_S, FAST_S))
    assert governor.level() == Quality.FULL
    assert sum("reading the sensors failed" in r.message for r in caplog.records) == 1
    governor2 = Governor(settings(), lambda: "garbage", clock=lambda: t[0])
    governor2.observe(FrameCost(FAST_S, FAST_S))
    assert governor2.reading.temperature_c is None


def test_snapshot_lists_switches_and_time_at_level():
    box = Box()
    box.run(20)
    box.run(0.2, cost=0.06, drop_every=1)
    state = box.governor.snapshot()
    assert state["level"] == "coarse" and state["switch_count"] == 1
    (switch,) = state["switches"]
    assert set(switch) == {"t", "from", "to", "reason"}
    assert list(state["time_at_level_s"]) == ["full", "coarse", "pass"]


def test_never_above_its_top_level():
    t = [0.0]
    governor = Governor(settings(dwell_s=0.0), clock=lambda: t[0], top=Quality.COARSE)
    for _ in range(500):
        t[0] += FRAME_S
        governor.observe(FrameCost(FAST_S, FAST_S))
    assert governor.level() == Quality.COARSE and governor.switch_count == 0
