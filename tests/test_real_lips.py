"""The real-lip yardstick: mouth measures from mesh landmarks, lagged correlation, and (where
the external footage and its measured lips are present) the audio model against real lips."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tools.audio_model.real_lips import MAX_LAG, best_lag, lagged_r
from tools.faces.lips import (LEFT_CORNER, LEFT_EYE_OUTER, LOWER_INNER, RIGHT_CORNER,
                              RIGHT_EYE_OUTER, UPPER_INNER, measure_frame)

REPO = Path(__file__).resolve().parent.parent
EXTERNAL = REPO.parent / "shared" / "data" / "external"
LIPS = Path.home() / ".cache" / "edgemate" / "lips"


def test_mouth_measures_are_in_eye_corner_units_whatever_the_frame_size():
    points = [SimpleNamespace(x=0.5, y=0.5) for _ in range(478)]
    points[LEFT_EYE_OUTER], points[RIGHT_EYE_OUTER] = SimpleNamespace(x=0.3, y=0.4), SimpleNamespace(x=0.7, y=0.4)
    points[LEFT_CORNER], points[RIGHT_CORNER] = SimpleNamespace(x=0.4, y=0.7), SimpleNamespace(x=0.6, y=0.7)
    points[UPPER_INNER], points[LOWER_INNER] = SimpleNamespace(x=0.5, y=0.68), SimpleNamespace(x=0.5, y=0.72)
    small, big = measure_frame(points, (100, 100)), measure_frame(points, (1000, 1000))
    assert small == big
    assert small["width"] == pytest.approx(0.5) and small["gap"] == pytest.approx(0.1)
    assert small["ratio"] == pytest.approx(0.2)


def test_the_best_lag_is_found_and_its_sign_says_the_model_is_late():
    rng = np.random.default_rng(3)
    real = np.convolve(rng.standard_normal(300), np.ones(4) / 4, mode="same")
    late = np.roll(real, 2)  # model[k + 2] == real[k]
    mask = np.ones(300, bool)
    lag, r = best_lag(late, real, mask)
    assert lag == 2 and r > 0.99
    assert lagged_r(late, real, mask, 0) < r
    assert abs(lag) <= MAX_LAG


def test_frames_outside_the_mask_do_not_count():
    real = np.tile([0.0, 1.0], 100)
    model = real.copy()
    model[:100] = 1.0 - model[:100]  # anti-correlated where masked out
    mask = np.zeros(200, bool)
    mask[100:] = True
    assert lagged_r(model, real, mask, 0) == pytest.approx(1.0)


@pytest.mark.skipif(not (EXTERNAL / "talk_aoc_512_25fps.mp4").is_file()
                    or not (LIPS / "talk_aoc.lips.json").is_file(),
                    reason="external footage or its measured lips (tools.faces.lips) absent")
def test_the_shipped_model_against_real_lips_runs_end_to_end():
    from runtime.speech.audio_model import AudioModel
    from tools.audio_model.evaluate import run_model
    from tools.audio_model.real_lips import evaluate_clip
    model = AudioModel(REPO / "models" / "audio" / "audio.yaml")
    result = evaluate_clip(model, EXTERNAL / "talk_aoc_512_25fps.mp4", LIPS / "talk_aoc.lips.json",
                           run_model)
    assert result["frames"] == 200 and result["speech_frames"] > 100
    for name in ("open", "wide", "round"):
        assert -1.0 <= result["r"][name]["best"] <= 1.0
    assert 0.0 <= result["open_share"]["real"] <= 1.0
