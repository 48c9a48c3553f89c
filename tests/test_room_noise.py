"""The room-noise set: reproducible, at the level it claims, and measurable on any model."""
from __future__ import annotations

import numpy as np
import pytest

from tools.audio_model.room_noise import KINDS, LEVELS_DB, SPEECH_RMS_DBFS, closure_table, noise_clip


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_noise_is_reproducible_and_at_its_level(kind):
    a, b = noise_clip(kind, 25, 2.0, seed=4), noise_clip(kind, 25, 2.0, seed=4)
    assert np.array_equal(a, b) and a.dtype == np.float32 and len(a) == 32000
    assert not np.array_equal(a, noise_clip(kind, 25, 2.0, seed=5))
    loud = np.abs(a) >= np.percentile(np.abs(a), 90)
    level = a[loud] if kind in ("keyboard", "door", "footsteps") else a
    rms_db = 10 * np.log10(np.mean(level.astype(np.float64) ** 2))
    assert rms_db == pytest.approx(SPEECH_RMS_DBFS - 25, abs=0.01)
    assert np.abs(a).max() < 1.0


def test_closure_table_covers_every_kind_and_level(model_fixtures):
    from runtime.speech.audio_model import AudioModel
    from tools.audio_model.evaluate import run_model
    result = closure_table(AudioModel(model_fixtures[0]), run_model, seconds=0.5)
    assert set(result["by_kind"]) == set(KINDS)
    for row in result["by_kind"].values():
        assert set(row) == set(LEVELS_DB) and all(0.0 <= v <= 1.0 for v in row.values())
    assert 0.0 <= result["pooled"] <= 1.0


def test_eval_sections_report_goals_and_skip_in_one_line(tmp_path):
    from tools.audio_model.eval_real import real_lip_section, room_noise_section

    def shut(model, audio):  # a model that never opens the mouth
        return np.zeros((len(audio) // 640 + 1, 6), np.float32)

    lines, doc = room_noise_section(None, shut, seconds=0.5)
    assert doc["pooled"] == 1.0 and any("goal >= 98%: PASS" in line for line in lines)
    assert json_ready(doc)
    lines, doc = real_lip_section(None, tmp_path / "absent", tmp_path, tmp_path, shut)
    assert "skipped" in doc and any(line.startswith("Skipped: no talk_*.mp4") for line in lines)


def json_ready(doc) -> bool:
    import json
    return bool(json.dumps(doc))


def test_speech_in_noise_reports_every_kind_level_and_the_largest_drop():
    from tools.audio_model.room_noise import speech_in_noise
    rng = np.random.default_rng(0)
    frames = 50
    target = np.zeros((frames, 6), np.float32)
    target[10:40, 0] = rng.uniform(0.2, 0.9, 30)
    audio = np.repeat(target[:, 0], 640).astype(np.float32) * rng.normal(0, 0.3, frames * 640).astype(np.float32)

    def loudness(model, audio):  # a "model" that opens with the frame's loudness
        frame_rms = np.sqrt(np.mean(audio[: len(audio) // 640 * 640].reshape(-1, 640) ** 2, axis=1))
        params = np.zeros((len(frame_rms), 6), np.float32)
        params[:, 0] = frame_rms
        return params

    result = speech_in_noise(None, loudness, [(audio, target)])
    assert set(result["by_kind"]) == set(KINDS)
    assert all(set(row) == set(LEVELS_DB) for row in result["by_kind"].values())
    assert result["clean"] > 0.8  # loudness follows this fake speech
    worst = min(min(row.values()) for row in result["by_kind"].values())
    assert result["max_drop"] == pytest.approx(result["clean"] - worst, abs=1e-4)
    # Louder noise hurts loudness more than quieter noise.
    assert result["by_kind"]["room_tone"][10] <= result["by_kind"]["room_tone"][45]
