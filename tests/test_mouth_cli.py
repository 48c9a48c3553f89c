"""`edgemate mouth` and the shipped audio model in the runtime (no torch needed)."""
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from runtime import SAMPLE_RATE
from runtime.audio.wav import read_wav, write_wav
from runtime.cli import main
from runtime.commands.mouth import analyze_samples
from runtime.speech.audio_model import MOUTH_PARAMS, AudioModel
from runtime.speech.mouth_track import MouthAnalyzer, MouthTrack

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "audio" / "audio.yaml"
HELLO = Path(__file__).parent / "data" / "hello_espeak_16k.wav"
needs_shipped = pytest.mark.skipif(not SHIPPED.exists(), reason="shipped audio model not built")


def _speech_then_silence(seconds_silence: float = 3.0) -> np.ndarray:
    speech, rate = read_wav(HELLO)
    assert rate == SAMPLE_RATE
    return np.concatenate([np.zeros(SAMPLE_RATE // 4, np.float32), speech[:, 0],
                           np.zeros(int(seconds_silence * SAMPLE_RATE), np.float32)])


def test_mouth_json_has_a_row_per_40ms_frame(model_fixtures, tmp_path, capsys):
    wav = tmp_path / "clip.wav"
    audio = _speech_then_silence(1.0)
    write_wav(wav, np.stack([audio, audio], axis=1), SAMPLE_RATE)
    assert main(["mouth", str(wav), "--audio-model", str(model_fixtures[0])]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fps"] == 25 and doc["names"] == list(MOUTH_PARAMS)
    assert len(doc["frames"]) == int(np.ceil(len(audio) / SAMPLE_RATE * 25))
    assert all(len(row) == 6 and all(0 <= v <= 1 for v in row) for row in doc["frames"])


def test_mouth_csv_at_another_rate_matches_the_frame_count(model_fixtures, tmp_path, capsys):
    wav = tmp_path / "clip44.wav"
    audio = _speech_then_silence(0.5)
    t = np.arange(int(len(audio) * 44100 / SAMPLE_RATE)) / 44100
    write_wav(wav, np.interp(t, np.arange(len(audio)) / SAMPLE_RATE, audio).astype(np.float32), 44100)
    assert main(["mouth", str(wav), "--format", "csv", "--audio-model", str(model_fixtures[0])]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["frame", "time_s", *MOUTH_PARAMS]
    assert len(rows) - 1 == int(np.ceil(len(t) / 44100 * 25))
    assert rows[2][:2] == ["1", "0.04"]


def test_mouth_bad_files_give_one_line_and_exit_1(model_fixtures, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav at all")
    for path in (bad, tmp_path / "missing.wav"):
        assert main(["mouth", str(path), "--audio-model", str(model_fixtures[0])]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and str(path.name) in err
    assert main(["mouth", str(bad), "--audio-model", str(tmp_path / "none.yaml")]) == 1
    assert "sidecar not found" in capsys.readouterr().err


@needs_shipped
def test_shipped_model_is_not_a_fixture_and_carries_its_recipe():
    model = AudioModel(SHIPPED)
    assert not model.sidecar.fixture
    recipe = model.sidecar.extra["recipe"]
    assert recipe["command"].startswith("python -m tools.audio_model.train")
    assert model.step_ms == 40 and model.lookahead_steps * 40 + 15 <= 80
    assert model.sidecar.extra["network"]["parameters"] <= 1_000_000
    assert model.sidecar.extra["network"]["macs_per_step"] <= 1_000_000


def _track(audio: np.ndarray, chunk_ms: int) -> np.ndarray:
    track = MouthTrack(capacity=1024)
    analyzer = MouthAnalyzer(AudioModel(SHIPPED), track)
    step = SAMPLE_RATE * chunk_ms // 1000
    for first in range(0, len(audio), step):
        analyzer.accept(audio[first:first + step])
    return np.array([track.get(k) for k in range(track.newest + 1)])


@needs_shipped
def test_shipped_model_output_does_not_depend_on_chunk_size():
    audio = _speech_then_silence(1.0)
    small, large = _track(audio, 10), _track(audio, 500)
    assert len(small) == len(large) >= 60
    assert np.array_equal(small, large)


@needs_shipped
def test_shipped_model_moves_in_speech_and_closes_in_silence():
    audio = _speech_then_silence(3.0)
    rng = np.random.default_rng(0)
    audio = audio + rng.normal(0, 10 ** (-60 / 20), len(audio)).astype(np.float32)  # a quiet room
    params = analyze_samples([audio[:, None]], SAMPLE_RATE, 1, AudioModel(SHIPPED))
    speech_frames = params[6:6 + 37]  # 0.25 s lead-in, ~1.47 s of speech
    assert speech_frames[:, 0].max() > 0.4
    silence_start = int(np.ceil((len(audio) / SAMPLE_RATE - 3.0) * 25))
    settled = params[silence_start + 3:]  # from 120 ms into the silence to the end
    assert np.all(settled[:, 0] < 0.05)
