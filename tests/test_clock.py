"""The audio clocks."""
from __future__ import annotations

import pytest


def test_monotonic_clock_pauses_over_a_process_stop_instead_of_jumping():
    """After SIGSTOP for 15 s the sound resumes where it stopped: the clock takes out all
    of a gap but the first pause_s, so the ingest does not race through 15 s of a playlist
    that nobody hears."""
    from runtime.schedule.clock import MonotonicClock
    now = [100.0]
    clock = MonotonicClock(lambda: now[0], pause_s=0.5)
    readings = []
    for _ in range(50):  # two seconds of frames
        now[0] += 0.04
        readings.append(clock.now_s())
    assert readings[-1] == pytest.approx(2.0)
    now[0] += 15.0  # stopped
    assert clock.now_s() == pytest.approx(2.5)
    now[0] += 0.04
    assert clock.now_s() == pytest.approx(2.54)  # and on it goes at the normal rate
