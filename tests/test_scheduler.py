"""The frame scheduler against a fake clock and a fake renderer: no sleeping, exact counts."""
import math

import numpy as np
import pytest

from runtime.schedule.scheduler import FrameScheduler


class FakeTime:
    """Real time advances only by sleep() and by the fake render; audio may drift from it."""

    def __init__(self, audio_rate: float = 1.0):
        self.t = 0.0
        self.audio_rate = audio_rate

    def audio(self) -> float:
        return self.t * self.audio_rate

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def run_frames(fake: FakeTime, costs, frames: int):
    scheduler = FrameScheduler(fake.audio, fake.sleep)
    shown = []
    for i in range(frames):
        frame = scheduler.next_frame()
        fake.t += costs(i)  # the fake renderer
        offset = scheduler.present_at(frame)
        # The frame being shown is the one due now.
        assert math.floor(fake.audio() * 25 + 1e-9) == frame
        scheduler.shown(frame, offset)
        shown.append(frame)
    return scheduler, shown


def test_slow_renderer_shows_due_frames_and_counts_drops():
    scheduler, shown = run_frames(FakeTime(), lambda i: 0.060, 500)
    assert shown == sorted(set(shown))
    skipped = shown[-1] - shown[0] + 1 - len(shown)
    assert scheduler.stats.dropped == skipped
    # 60 ms per frame shows 25 * 0.06 = 1.5 slots per render: about a third dropped.
    assert scheduler.stats.dropped == pytest.approx(len(shown) / 2, rel=0.05)
    assert scheduler.stats.max_av_offset_s < 1 / 25


def test_fast_renderer_drops_nothing():
    scheduler, shown = run_frames(FakeTime(), lambda i: 0.010, 500)
    assert scheduler.stats.dropped == 0
    assert shown == list(range(shown[0], shown[0] + 500))
    assert scheduler.stats.max_av_offset_s <= 0.5 / 25 + 1e-9


def test_an_hour_with_jitter_and_clock_drift_stays_within_one_frame():
    rng = np.random.default_rng(7)
    costs = rng.uniform(0.005, 0.035, 25 * 3600)
    # The sound card's crystal runs 150 ppm fast against the monotonic clock.
    fake = FakeTime(audio_rate=1.00015)
    scheduler, shown = run_frames(fake, lambda i: costs[i], 25 * 3600)
    assert scheduler.stats.max_av_offset_s < 1 / 25
    # No drift: after an hour the last frame shown is the one due on the audio clock.
    assert shown[-1] == math.floor(fake.audio() * 25)
    assert scheduler.stats.late_presents == 0
