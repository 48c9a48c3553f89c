"""The quality governor on a fake clock with fake sensors: thermal ramps (with noise), slow
frames, drops, throttle flags, a busy CPU, stale estimates and broken sensors. No sleeping."""
from __future__ import annotations

import dataclasses
import math
import random

import pytest

from runtime.config import load_config
from runtime.governor import Governor
from runtime.render.renderer import Quality
from runtime.sensors import Reading

FRAME_S = 0.04
FAST_S = 0.005  # a comfortable frame cost


def settings(**changes):
    base = load_config().governor
    fixed = dict(hot_c=80.0, critical_c=85.0, cool_c=70.0, window_s=2.0, step_down_cost=0.8,
                 step_up_cost=0.5, step_down_drops=1, busy_cpu_percent=80.0, dwell_s=10.0,
                 refractory_s=3.0, warmup_s=2.0, retry_after_s=60.0)
    return dataclasses.replace(base, **{**fixed, **changes})


class Box:
    """A fake clock and fake sensors; `run` plays frames at 25 fps through a governor."""

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

    def read(self) -> Reading:
        if self.t - self._sampled_at >= self.sample_s:
            temp = self.temperature(self.t) if callable(self.temperature) else self.temperature
            if temp is not None and self.noise is not None:
                temp += self.noise.uniform(-2.0, 2.0)
            self._reading = Reading(at=self.t, temperature_c=temp, throttled=self.throttled,
                                    cpu_other_percent=self.cpu_other)
            self._sampled_at = self.t
        return self._reading

    def run(self, seconds: float, cost=FAST_S, drop_every: int = 0) -> None:
        """`cost`: seconds per frame, or a function of the level rendered."""
        for k in range(round(seconds / FRAME_S)):
            self.t = round(self.t + FRAME_S, 6)
            if drop_every and k % drop_every == 0:
                self.dropped += 1
            self.governor.observe(cost(self.level) if callable(cost) else cost, self.dropped)

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


def test_slow_frame_burst_steps_down_within_a_second_and_recovers_after_dwell():
    box = Box()
    box.run(20)  # calm and warm
    assert box.level == Quality.FULL
    burst_at = box.t
    box.run(0.6, cost=0.06, drop_every=1)  # 15 frames of 60 ms: each one drops a frame
    burst_end = box.t
    box.run(40)
    assert box.switches() == [("full", "coarse"), ("coarse", "pass"), ("pass", "coarse"),
                              ("coarse", "full")]
    down1, down2, up1, up2 = box.governor.switches
    # Drops step down at once, the refractory window notwithstanding (the frame right
    # after a switch is not blamed: its drops came from the frame before the switch).
    assert down1.t - burst_at <= 0.05 and down2.t - down1.t <= 0.1
    assert up1.t - burst_end >= 10.0, "recovers only after the dwell time"
    assert up1.t - burst_end <= 10.0 + 2.0 + 0.2  # dwell + a window to measure
    assert up2.t - up1.t >= 10.0


def test_one_stall_is_one_step_down():
    box = Box()
    box.run(20)
    box.dropped += 3  # one 150 ms stall: the scheduler skips three frames at once
    box.run(30)
    assert box.switches() == [("full", "coarse"), ("coarse", "full")]
    down, up = box.governor.switches
    assert down.reason == "3 frames dropped in 2 s" and up.t - down.t >= 10.0


def test_slow_frames_without_drops_step_down_on_p95_cost():
    box = Box()
    box.run(20)
    start = box.t
    box.run(1.0, cost=0.035)  # 35 ms > 0.8 x 40 ms, yet no frame dropped
    assert box.level == Quality.COARSE
    (switch,) = box.governor.switches
    assert switch.t - start <= 0.2 and "p95 frame cost" in switch.reason


def test_a_busy_cpu_lowers_the_cost_bar_to_the_step_up_headroom():
    box = Box()
    box.run(20, cost=0.025)  # 25 ms: fine on a calm box (bar 32 ms)
    assert box.governor.switch_count == 0
    box.cpu_other = 90.0
    box.run(2, cost=0.025)
    assert box.switches() == [("full", "coarse")]


def test_refractory_window_spaces_cost_step_downs():
    box = Box()
    box.run(20)
    box.run(10, cost=0.035)
    first, second = box.governor.switches
    assert second.to_level == Quality.PASS
    assert second.t - first.t >= 3.0


def test_warmup_ignores_slow_first_frames():
    box = Box()
    box.run(1.5, cost=0.09, drop_every=2)
    box.run(5)
    assert box.governor.switch_count == 0


def test_critical_temperature_overrides_the_refractory_window():
    box = Box()
    box.run(20)
    box.run(0.1, cost=0.06, drop_every=1)
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
    box.throttled = ("frequency capped", "throttled")  # a second flag appears
    box.run(2)
    assert box.level == Quality.PASS
    box.throttled = ()
    box.run(30)
    assert box.level == Quality.FULL


def test_throttle_flags_toggling_at_their_limit_do_not_flap():
    box = Box()
    box.run(20)
    for second in range(120):  # the firmware sets and clears "soft limit" every other second
        box.throttled = ("soft temperature limit",) if second % 2 == 0 else ()
        box.run(1)
    assert box.switches() == [("full", "coarse")]
    box.throttled = ()
    box.run(25)  # clear for the dwell: the spell is over, and the level goes back up
    assert box.switches() == [("full", "coarse"), ("coarse", "full")]
    box.throttled = ("soft temperature limit",)
    box.run(1)
    assert box.level == Quality.COARSE, "a new spell steps down again"


def test_busy_cpu_holds_step_up_for_the_dwell_after_it_calms():
    box = Box()
    box.run(20)
    box.cpu_other = 97.0
    box.run(0.04, cost=0.06, drop_every=1)  # one stall: FULL -> COARSE
    box.run(30)
    assert box.level == Quality.COARSE  # no step up within a load burst
    box.cpu_other = 12.0
    calm_at = box.t
    box.run(15)
    assert box.level == Quality.FULL
    up = box.governor.switches[-1]
    assert 10.0 <= up.t - calm_at <= 11.5 and up.reason.startswith("10 s calm")


def test_always_busy_cpu_is_probed_every_retry_after_not_stuck():
    box = Box()
    box.run(20)
    box.cpu_other = 97.0
    box.run(0.04, cost=0.06, drop_every=1)
    box.run(55)
    assert box.level == Quality.COARSE
    box.run(10)
    assert box.level == Quality.FULL, "a box that is always busy must not stay down for good"
    assert "on a busy CPU" in box.governor.switches[-1].reason


def test_level_that_fails_on_an_always_busy_cpu_is_retried_at_most_every_retry_after():
    box = Box()
    box.run(20)
    box.cpu_other = 97.0
    costs = {Quality.FULL: 0.025, Quality.COARSE: 0.01, Quality.PASS: 0.001}
    box.run(600, cost=costs.get)  # FULL at 25 ms: over the 20 ms bar of a busy CPU
    # FULL -> COARSE, then probes of FULL, each stepping straight back down; every failed
    # probe doubles the wait before the next (60, 120, 240 s ...).
    assert set(box.switches()) == {("full", "coarse"), ("coarse", "full")}
    ups = [s.t for s in box.governor.switches if s.to_level > s.from_level]
    gaps = [later - earlier for earlier, later in zip(ups, ups[1:])]
    assert len(ups) == 3 and gaps[0] >= 120.0 and gaps[1] >= 240.0, ups
    box.cpu_other = 10.0  # the CPU calms: FULL is tried again after the dwell, and holds
    calm_at = box.t
    box.run(30, cost=costs.get)
    assert box.level == Quality.FULL and box.governor.switches[-1].t - calm_at <= 12.0


def test_level_above_that_did_not_fit_is_retried_only_when_stale():
    box = Box()
    box.run(20, cost=0.03)  # FULL runs, 30 ms: over the step-up headroom of 20 ms
    box.run(0.04, cost=0.03, drop_every=1)
    assert box.level == Quality.COARSE
    down_at = box.t
    box.run(50)  # COARSE is cheap, but FULL did not fit the last time it ran
    assert box.level == Quality.COARSE
    box.run(20)
    assert box.level == Quality.FULL
    assert box.governor.switches[-1].t - down_at >= 60.0 - 0.3
    assert "full p95 30.0 ms" in box.governor.switches[-1].reason


def test_estimate_measured_on_a_busy_cpu_is_retried_once_it_is_calm():
    box = Box()
    box.run(20)
    box.cpu_other = 100.0  # a browser takes every core: FULL frames get slow
    box.run(1.0, cost=0.03)
    assert box.level == Quality.COARSE
    assert "> 20 ms with other processes at 100% CPU" in box.governor.switches[0].reason
    box.run(20, cost=0.012)
    box.cpu_other = 5.0
    calm_at = box.t
    box.run(15)
    assert box.level == Quality.FULL
    up = box.governor.switches[-1]
    assert up.t - calm_at < 10.0 + 2.0 + 1.0 and "on a busy CPU" in up.reason


def test_failing_sensor_reader_never_raises_out_of_the_governor(caplog):
    def broken():
        raise PermissionError("denied")

    t = [0.0]
    governor = Governor(settings(), broken, clock=lambda: t[0])
    for k in range(100):
        t[0] += FRAME_S
        governor.observe(FAST_S, 0)
    assert governor.level() == Quality.FULL
    assert sum("reading the sensors failed" in r.message for r in caplog.records) == 1
    governor2 = Governor(settings(), lambda: "garbage", clock=lambda: t[0])
    governor2.observe(FAST_S, 0)
    assert governor2.reading.temperature_c is None


def test_snapshot_lists_switches_and_time_at_level():
    box = Box()
    box.run(20)
    box.run(0.04, cost=0.06, drop_every=1)
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
        governor.observe(FAST_S, 0)
    assert governor.level() == Quality.COARSE and governor.switch_count == 0
