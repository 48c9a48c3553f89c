"""The demo clip tool (tools/make_demo_speech): timing, real pauses, level, determinism; and
the shipped clip agrees with its sidecar."""
from __future__ import annotations

import ctypes.util
import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from runtime.audio.wav import WavReader, read_wav
from tools.audio_model.demo_voices import parse_voice
from tools.audio_model.make_demo_speech import SCRIPT, build, main

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "avatars" / "default" / "demo.wav"
# espeak-ng, not the shipped festival voice: it is in the test system packages and fast.
TEST_VOICE = "espeak:en-us+f3,rate=170"

needs_espeak = pytest.mark.skipif(ctypes.util.find_library("espeak-ng") is None,
                                  reason="espeak-ng library not installed")


def _check_clip(wav: Path, side: dict) -> None:
    """Sidecar and WAV agree: format, sha256, duration, silent gaps, level."""
    with WavReader(wav) as reader:
        assert (reader.format.sample_format, reader.format.channels, reader.rate) == ("s16le", 1, 16000)
    samples = read_wav(wav)[0][:, 0]
    assert hashlib.sha256(wav.read_bytes()).hexdigest() == side["sha256"]
    assert len(samples) / 16000 == pytest.approx(side["duration_s"], abs=1e-3)
    assert 20 * np.log10(np.abs(samples).max()) == pytest.approx(-3.0, abs=0.05)
    sentences = side["sentences"]
    for this, after in zip(sentences, sentences[1:]):
        gap = after["start_s"] - this["end_s"]
        assert 0.4 <= gap <= 1.2 and gap == pytest.approx(this["pause_after_s"], abs=1e-3)
        # Real silence between sentences, and speech inside each one.
        assert not samples[round(this["end_s"] * 16000):round(after["start_s"] * 16000)].any()
    for sentence in sentences:
        spoken = samples[round(sentence["start_s"] * 16000):round(sentence["end_s"] * 16000)]
        assert np.sqrt(np.mean(spoken ** 2)) > 0.01, sentence["text"]
    assert not samples[:round(sentences[0]["start_s"] * 16000)].any()
    assert not samples[round(sentences[-1]["end_s"] * 16000):].any()


@needs_espeak
def test_two_sentences_have_a_real_pause_and_the_same_bytes_twice(tmp_path):
    pytest.importorskip("tqdm")  # tools.audio_model.synth_corpus reports progress with it
    side = build(tmp_path / "a" / "demo.wav", parse_voice(TEST_VOICE), sentences=2)
    assert [s["text"] for s in side["sentences"]] == [line.text for line in SCRIPT[:2]]
    assert side["recipe"].endswith(f"--voice {parse_voice(TEST_VOICE).spec} --sentences 2")
    assert side["measured"]["clipped_samples"] == 0
    _check_clip(tmp_path / "a" / "demo.wav", yaml.safe_load((tmp_path / "a" / "demo.yaml").read_text()))
    # espeak-ng keeps state between utterances: only a fresh process per sentence makes a
    # rebuild in the same process give the same clip. Its noise comes from libc's rand(),
    # whose state a fork inherits: whatever the parent drew from it before (here on purpose;
    # in a test suite, any C library) must not change the speech. Bytes are not compared:
    # in a long test process a rebuild once differed in its last bits (a correct build may).
    import ctypes
    libc = ctypes.CDLL(None)
    for _ in range(1000):
        libc.rand()
    build(tmp_path / "b" / "demo.wav", parse_voice(TEST_VOICE), sentences=2)
    side_a, side_b = (yaml.safe_load((tmp_path / n / "demo.yaml").read_text()) for n in "ab")
    for key in ("duration_s", "sentences", "peak_dbfs", "voice"):
        assert side_a[key] == side_b[key], key
    a, b = (read_wav(tmp_path / n / "demo.wav")[0][:, 0] for n in "ab")
    assert len(a) == len(b)
    frames = len(a) // 640  # the loudness envelope per 40 ms video frame
    env = [20 * np.log10(np.sqrt(np.mean(x[:frames * 640].reshape(frames, 640) ** 2, axis=1)) + 1e-6)
           for x in (a, b)]
    assert np.corrcoef(env[0], env[1])[0, 1] > 0.99
    assert np.sqrt(np.mean((a - b) ** 2)) < 0.05 * np.sqrt(np.mean(a ** 2))
    assert not list(tmp_path.glob("*/*.part"))


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped demo clip")
def test_shipped_clip_matches_its_sidecar():
    side = yaml.safe_load(SHIPPED.with_suffix(".yaml").read_text())
    assert 19.0 <= side["duration_s"] <= 22.0 and 5 <= len(side["sentences"]) <= 7
    assert side["recipe"].startswith("python -m tools.audio_model.make_demo_speech --out models/avatars/default/demo.wav")
    _check_clip(SHIPPED, side)


def test_bad_voices_get_one_line_errors(capsys):
    with pytest.raises(ValueError, match="unknown knob 'speed' for espeak"):
        parse_voice("espeak:en-us,speed=3")
    with pytest.raises(ValueError, match="HTS voices ignore stretch"):
        parse_voice("festival:cmu_us_slt_arctic_hts,stretch=1.2")
    assert main(["--out", "/nonexistent/x.wav", "--voice", "piper:amy"]) == 1
    assert "must be espeak:NAME" in capsys.readouterr().err
