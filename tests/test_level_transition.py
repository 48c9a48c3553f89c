"""Level switches without a pop: a step down waits for a near-rest mouth (bounded), and every
switch cross-fades the two levels' mouth changes over a few frames."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from runtime.quality.levels import Quality
from runtime.quality.transition import NEAR_REST, LevelTransition, RenderPlan, TransitionSettings

OPEN = np.array([0.7, 0.2, 0.0, 0.0, 0.0, 0.1], np.float32)
REST = np.zeros(6, np.float32)


def test_steady_level_renders_plainly():
    t = LevelTransition(Quality.FULL)
    assert [t.plan(Quality.FULL, OPEN) for _ in range(3)] == [RenderPlan(Quality.FULL)] * 3


def test_step_down_waits_for_a_near_rest_mouth_then_blends():
    t = LevelTransition(Quality.COARSE)
    plans = [t.plan(Quality.PASS, OPEN) for _ in range(3)]  # mid-syllable: wait
    assert plans == [RenderPlan(Quality.COARSE)] * 3 and t.deferred_frames == 3
    near_rest = np.full(6, NEAR_REST / 2, np.float32)
    blend = [t.plan(Quality.PASS, near_rest) for _ in range(5)]
    assert [p.blend_from for p in blend[:4]] == [Quality.COARSE] * 4
    assert [p.weight for p in blend[:4]] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert blend[4] == RenderPlan(Quality.PASS)


def test_a_step_down_never_waits_longer_than_max_wait_frames():
    t = LevelTransition(Quality.FULL, TransitionSettings(blend_frames=2, max_wait_frames=10))
    plans = [t.plan(Quality.COARSE, OPEN) for _ in range(14)]
    assert all(p == RenderPlan(Quality.FULL) for p in plans[:10])
    assert plans[10] == RenderPlan(Quality.COARSE, Quality.FULL, pytest.approx(1 / 3))
    assert plans[12] == RenderPlan(Quality.COARSE)


def test_step_up_blends_at_once():
    t = LevelTransition(Quality.COARSE)
    first = t.plan(Quality.FULL, OPEN)
    assert first.level == Quality.FULL and first.blend_from == Quality.COARSE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Quality)), st.floats(0, 1)), min_size=1,
                max_size=200))
def test_any_sequence_settles_and_weights_stay_in_range(steps):
    t = LevelTransition(Quality.FULL)
    for target, amount in steps:
        plan = t.plan(target, np.full(6, amount, np.float32))
        assert 0.0 < plan.weight <= 1.0
        assert plan.blend_from != plan.level
    last = steps[-1][0]
    for _ in range(20):  # held long enough, the target is reached and the blend ends
        plan = t.plan(last, OPEN)
    assert plan == RenderPlan(last)
