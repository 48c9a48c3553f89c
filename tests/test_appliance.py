"""The whole appliance, end to end, on test fixtures: files in, MP4 out, no torch."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from runtime.audio.wav import write_wav
from runtime.commands.bench import speech_like
from runtime.config.loader import load_config
from runtime.pipeline.appliance import Appliance, ApplianceError, run_to_end

REPO = Path(__file__).resolve().parent.parent


def _config(model_fixtures, tmp_path, *extra):
    audio, bundle = model_fixtures
    return load_config(None, [f"models.audio={audio}", f"avatar.bundle={bundle}",
                              f"display.record.path={tmp_path / 'out.mp4'}", *extra])


def _ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,duration,nb_frames", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}


def test_ten_second_run_records_a_synced_mp4_and_never_imports_torch(model_fixtures, tmp_path):
    speech = tmp_path / "speech.wav"
    write_wav(speech, speech_like(4.0), 16000)
    script = textwrap.dedent(f"""
        import sys
        from runtime.cli import main
        code = main(["run", "--set", "audio.files.playlist=[{speech}, {speech}]",
                     "--set", "audio.files.loop=true", "--set", "display.sink=record",
                     "--set", "display.record.path={tmp_path / 'run.mp4'}",
                     "--set", "run.duration_s=10",
                     "--audio-model", "{model_fixtures[0]}", "--bundle", "{model_fixtures[1]}"])
        heavy = any(name in sys.modules for name in ("torch", "mediapipe", "pnnx"))
        print("TORCH_LOADED", heavy, "CODE", code)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert "TORCH_LOADED False CODE 0" in done.stdout, done.stderr
    streams = _ffprobe(tmp_path / "run.mp4")
    assert int(streams["video"]["nb_frames"]) == 250
    assert float(streams["video"]["duration"]) == pytest.approx(10.0, abs=0.05)
    assert float(streams["audio"]["duration"]) == pytest.approx(10.0, abs=0.1)


def test_bad_playlist_items_are_skipped_and_the_rest_plays(model_fixtures, tmp_path, caplog):
    good = tmp_path / "good.wav"
    at_44k = np.interp(np.arange(44100) / 44100, np.arange(16000) / 16000, speech_like(1.0))
    write_wav(good, np.stack([at_44k, at_44k], axis=1).astype(np.float32), 44100)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    config = _config(model_fixtures, tmp_path, "display.sink=null", "audio.files.gap_s=0",
                     f"audio.files.playlist=[{tmp_path / 'missing.wav'}, {broken}, {good}]",
                     "audio.files.on_end=exit")
    appliance = Appliance(config)
    report = run_to_end(appliance)
    assert "missing.wav" in caplog.text and "broken.wav" in caplog.text
    # The good second of speech played (plus a frame or two of start-up): its frames were
    # shown or, on a box too slow for them (an emulated Pi), dropped on time by the scheduler.
    assert 24 <= report.frames_shown + report.frames_dropped <= 30 and report.frames_shown > 0
    spoken = [appliance.track.get(k)[0] for k in range(25)]
    assert max(spoken) > 0.5


def test_barge_in_closes_the_mouth_at_once(model_fixtures, tmp_path):
    speech = tmp_path / "speech.wav"
    write_wav(speech, speech_like(8.0), 16000)
    config = _config(model_fixtures, tmp_path, "display.sink=null", f"audio.files.playlist=[{speech}]",
                     "run.duration_s=2.0")
    appliance = Appliance(config)
    appliance.load()
    appliance.open()
    import threading
    timer = threading.Timer(1.0, appliance.barge_in)
    timer.start()
    try:
        appliance.run()
    finally:
        timer.cancel()
        appliance.close()
    # From the frame after the barge-in on, nothing is said: mouth closed.
    cut = int(1.0 * 25) + 4
    after = np.array([appliance.track.get(k) for k in range(cut, 50)])
    before = np.array([appliance.track.get(k) for k in range(5, 25)])
    assert before[:, 0].max() > 0.5
    assert after[:, 0].max() < 0.05


def test_missing_default_models_exit_78_with_one_line(tmp_path):
    config = load_config(None, [f"models.audio={tmp_path / 'none.yaml'}",
                                f"avatar.bundle={tmp_path / 'nobundle'}"])
    appliance = Appliance(config)
    with pytest.raises(ApplianceError) as err:
        appliance.load()
    assert err.value.exit_code == 78
    assert "avatar.yaml" in str(err.value) and "\n" not in str(err.value)


def test_runtime_sources_never_import_torch_or_mediapipe():
    offenders = [str(p) for p in (REPO / "runtime").rglob("*.py")
                 if any(line.lstrip().startswith(("import torch", "from torch", "import pnnx",
                                                  "import mediapipe", "from mediapipe"))
                        for line in p.read_text().splitlines())]
    assert offenders == []


def test_sigterm_stops_cleanly_and_the_recording_plays(model_fixtures, tmp_path):
    import signal
    import time
    speech = tmp_path / "speech.wav"
    write_wav(speech, speech_like(3.0), 16000)
    out = tmp_path / "stopped.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "--audio-model", str(model_fixtures[0]),
         "--bundle", str(model_fixtures[1]), "--set", f"audio.files.playlist=[{speech}]",
         "--set", "audio.files.loop=true", "--set", "display.sink=record",
         "--set", f"display.record.path={out}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    streams = _ffprobe(out)
    assert float(streams["video"]["duration"]) > 1.0
    assert abs(float(streams["video"]["duration"]) - float(streams["audio"]["duration"])) < 0.1


def test_the_speaker_is_the_master_clock(model_fixtures, tmp_path):
    from fake_pyaudio import FakeBackend
    from runtime.audio.playback import Player
    speech = tmp_path / "speech.wav"
    write_wav(speech, speech_like(3.0), 16000)
    config = _config(model_fixtures, tmp_path, "display.sink=null", f"audio.files.playlist=[{speech}]",
                     "audio.playback.enabled=true", "run.duration_s=2.0")
    backend = FakeBackend()

    class WithFakeSpeaker(Appliance):
        def _make_speaker(self):
            return Player(device="HDMI", extra_latency_ms=0, pyaudio_module=backend)

    appliance = WithFakeSpeaker(config)
    report = run_to_end(appliance)
    assert appliance.clock.name == "playback"
    # Every frame of the 2 s is accounted for, shown or counted as dropped (the one due at
    # the very end may fall after the run; the offsets are timings: bench and soak report them).
    assert report.frames_shown > 0 and report.frames_shown + report.frames_dropped >= 49
    # Everything the picture showed was played: the speaker got the timeline in order.
    assert appliance.speaker.written_samples >= 2.0 * 16000


def test_devices_lists_fake_hardware(capsys):
    from unittest import mock
    import fake_pyaudio
    from runtime.cli import main
    with mock.patch.dict(sys.modules, {"pyaudio": fake_pyaudio.FakeBackend()}):
        assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "USB PnP Sound Device" in out and "HDMI Speaker" in out
    assert "Thermal sensors:" in out
