"""The record sink: an MP4 locked to the audio timeline, and robust ends (checked with ffprobe)."""
from __future__ import annotations

import errno
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from runtime import SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.display.record import RecordSink, find_ffmpeg
from runtime.display.sink import DisplayError, Picture

FRAME = (160, 288)  # (width, height)
HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="needs ffmpeg and ffprobe")


def gray(level: int) -> np.ndarray:
    return np.full((FRAME[1], FRAME[0], 3), level, np.uint8)


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def probe(path: Path) -> dict[str, dict]:
    """{'video': {...}, 'audio': {...}} with durations (s) and decoded frame counts."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_type,codec_name,pix_fmt,duration,nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, check=True).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def decode_gray_levels(path: Path) -> np.ndarray:
    """Mean luma of every decoded video frame."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, FRAME[1] * FRAME[0]).mean(axis=1)


def decode_audio(path: Path) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1",
                          "-ar", str(SAMPLE_RATE), "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32)


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@needs_ffmpeg
def test_two_seconds_with_an_index_gap_and_a_tone(tmp_path):
    target = tmp_path / "out.mp4"
    sink = RecordSink(target, queue_frames=64)  # room for every frame: nothing dropped
    sink.open(FRAME)
    audio = tone(2.0)
    skipped = range(20, 25)  # the scheduler dropped these
    for k in range(50):
        if k not in skipped:
            sink.present(Picture(gray(40 + 3 * k)), k)
        sink.feed_audio(audio[k * SAMPLES_PER_FRAME:(k + 1) * SAMPLES_PER_FRAME])
    message = sink.close()
    assert message == (f"recording saved to {target} (50 frames, 2.0 s: 45 shown; 5 repeat "
                       "the previous picture for frames not shown)")
    assert sink.drop_count == 0
    streams = probe(target)
    assert int(streams["video"]["nb_read_frames"]) == 50
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["pix_fmt"] == "yuv420p"
    assert abs(float(streams["video"]["duration"]) - 2.0) <= 0.1
    assert streams["audio"]["codec_name"] == "aac"
    assert abs(float(streams["audio"]["duration"]) - 2.0) <= 0.1
    levels = decode_gray_levels(target)
    # The skipped indices hold the last picture before the gap; later frames are in place.
    assert np.allclose(levels[20:25], levels[19], atol=1.5)
    assert abs(levels[25] - levels[19]) > 10 and abs(levels[49] - levels[0]) > 100
    sound = decode_audio(target)
    spectrum = np.abs(np.fft.rfft(sound[SAMPLE_RATE // 4: SAMPLE_RATE // 4 + SAMPLE_RATE]))
    assert abs(np.argmax(spectrum) - 440) <= 2  # 1 s window: 1 Hz bins
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # temporaries gone


@needs_ffmpeg
@pytest.mark.parametrize("audio_s", [0.6, 1.7])
def test_audio_is_padded_or_trimmed_to_the_video(tmp_path, audio_s):
    target = tmp_path / "out.mp4"
    sink = RecordSink(target, queue_frames=64)
    sink.open(FRAME)
    sink.feed_audio(tone(audio_s))
    for k in range(25):
        sink.present(Picture(gray(100)), k)
    sink.close()
    streams = probe(target)
    assert abs(float(streams["audio"]["duration"]) - 1.0) <= 0.1
    assert int(streams["video"]["nb_read_frames"]) == 25


@needs_ffmpeg
def test_no_audio_gives_a_video_only_file_and_odd_sizes_work(tmp_path):
    target = tmp_path / "silent.mp4"
    sink = RecordSink(target, queue_frames=16)
    sink.open((161, 287))
    for k in range(10):
        sink.present(Picture(np.zeros((287, 161, 3), np.uint8)), k)
    assert sink.close().startswith("recording saved")
    streams = probe(target)
    assert "audio" not in streams and int(streams["video"]["nb_read_frames"]) == 10


@needs_ffmpeg
def test_a_slow_encoder_drops_frames_but_keeps_the_count(tmp_path, monkeypatch):
    original = RecordSink._write_frame

    def slow(self, buf):
        time.sleep(0.01)
        original(self, buf)

    monkeypatch.setattr(RecordSink, "_write_frame", slow)
    target = tmp_path / "slow.mp4"
    sink = RecordSink(target, queue_frames=2)
    sink.open(FRAME)
    for k in range(40):
        sink.present(Picture(gray(k * 5)), k)  # far faster than the writer
    assert sink.close().startswith("recording saved")
    assert sink.drop_count > 0
    assert int(probe(target)["video"]["nb_read_frames"]) == 40


def test_missing_ffmpeg_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("runtime.display.record_ffmpeg.shutil.which", lambda name: None)
    with mock.patch.dict(sys.modules, {"imageio_ffmpeg": None}):
        with pytest.raises(DisplayError) as caught:
            RecordSink(tmp_path / "x.mp4").open(FRAME)
    reason = str(caught.value)
    assert "apt install ffmpeg" in reason and "pip install imageio-ffmpeg" in reason
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_auto_falls_back_to_the_imageio_ffmpeg_binary(monkeypatch):
    fake = mock.Mock(get_ffmpeg_exe=lambda: "/opt/ffmpeg-from-wheel")
    monkeypatch.setattr("runtime.display.record_ffmpeg.shutil.which", lambda name: None)
    with mock.patch.dict(sys.modules, {"imageio_ffmpeg": fake}):
        assert find_ffmpeg("auto") == "/opt/ffmpeg-from-wheel"


def test_a_configured_ffmpeg_path_that_does_not_exist(tmp_path):
    with pytest.raises(DisplayError, match="not an executable"):
        RecordSink(tmp_path / "x.mp4", ffmpeg=str(tmp_path / "nope" / "ffmpeg")).open(FRAME)


def test_missing_folder_is_a_display_error(tmp_path):
    if not HAVE_FFMPEG:
        pytest.skip("needs ffmpeg")
    with pytest.raises(DisplayError, match="does not exist"):
        RecordSink(tmp_path / "no" / "x.mp4").open(FRAME)


@needs_ffmpeg
def test_disk_full_stops_recording_once_and_keeps_what_was_written(tmp_path, monkeypatch, caplog):
    original = RecordSink._write_frame

    def filling(self, buf):
        if self.frames_written >= 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, buf)

    monkeypatch.setattr(RecordSink, "_write_frame", filling)
    target = tmp_path / "full.mp4"
    sink = RecordSink(target, queue_frames=64)
    sink.open(FRAME)
    with caplog.at_level(logging.ERROR, logger="runtime.display.record"):
        for k in range(20):
            sink.present(Picture(gray(k * 10)), k)
            sink.feed_audio(tone(0.04))
        wait_for(lambda: sink.failure is not None)
        for k in range(20, 30):
            sink.present(Picture(gray(0)), k)  # a no-op now: the appliance keeps running
            sink.feed_audio(tone(0.04))
        message = sink.close()
    assert "disk full" in sink.failure
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert message.startswith("recording stopped early (disk full") and "10 frames" in message
    assert int(probe(target)["video"]["nb_read_frames"]) == 10
    assert sink.close() == message  # twice: same answer, no error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.mp4"]


@needs_ffmpeg
def test_ffmpeg_dying_is_reported_in_one_line(tmp_path):
    target = tmp_path / "dead.mp4"
    sink = RecordSink(target, queue_frames=4)
    sink.open(FRAME)
    sink.present(Picture(gray(10)), 0)
    sink._proc.kill()
    sink._proc.wait()
    for k in range(1, 200):  # the writer notices the broken pipe
        sink.present(Picture(gray(10)), k)
        if sink.failure is not None:
            break
        time.sleep(0.005)
    message = sink.close()
    # Killed: a new encoder took over in a new part, and the parts are joined in the end.
    assert sink.incident.startswith("ffmpeg stopped (exit -9)") and sink.failure is None
    assert message.startswith(f"recording saved to {target}") and "in 2 parts joined" in message
    assert "\n" not in message and sorted(p.name for p in tmp_path.iterdir()) == ["dead.mp4"]


def test_close_without_open_and_present_before_open(tmp_path):
    sink = RecordSink(tmp_path / "x.mp4")
    with pytest.raises(DisplayError):
        sink.present(Picture(gray(0)), 0)
    assert sink.close() is None
    assert sink.close() is None


@needs_ffmpeg
def test_present_after_close_is_a_no_op(tmp_path):
    sink = RecordSink(tmp_path / "x.mp4", queue_frames=8)
    sink.open(FRAME)
    sink.present(Picture(gray(0)), 0)
    first = sink.close()
    sink.present(Picture(gray(0)), 1)
    sink.feed_audio(tone(0.1))
    assert sink.close() == first and "(1 frame," in first


@needs_ffmpeg
def test_a_killed_encoder_loses_no_recording_and_sound_stays_in_step(tmp_path):
    """ffmpeg killed after 3 s of a 6 s recording: the first part keeps what it had
    fragmented, a new encoder records the rest, and the joined file is as long as what was
    shown, its sound the same length (a lost second holds the last picture, it is not cut)."""
    target = tmp_path / "killed.mp4"
    sink = RecordSink(target, queue_frames=200)
    sink.open(FRAME)
    for k in range(150):
        sink.present(Picture(gray(20 + k)), k)
        sink.feed_audio(tone(0.04))
        if k == 75:
            wait_for(lambda: sink.frames_written >= 70)
            sink._proc.kill()
    message = sink.close()
    assert sink.restarts == 1 and sink.failure is None
    assert "in 2 parts joined" in message and "150 frames" in message
    streams = probe(target)
    assert abs(float(streams["video"]["duration"]) - 6.0) <= 0.15
    assert abs(float(streams["audio"]["duration"]) - 6.0) <= 0.15
    levels = decode_gray_levels(target)
    assert abs(levels[-1] - (20 + 149)) <= 3  # the last picture is where it belongs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.mp4"]


@needs_ffmpeg
def test_when_the_final_file_cannot_be_written_the_parts_and_the_sound_are_kept(
        tmp_path, monkeypatch):
    from runtime.display import record as record_module
    from runtime.display.record_ffmpeg import MuxError

    def full_disk(*args, **kwargs):
        raise MuxError("disk full while saving (No space left on device)")

    monkeypatch.setattr(record_module, "mux", full_disk)
    target = tmp_path / "lost.mp4"
    sink = RecordSink(target, queue_frames=64)
    sink.open(FRAME)
    for k in range(40):
        sink.present(Picture(gray(30 + k)), k)
        sink.feed_audio(tone(0.04))
    message = sink.close()
    assert message.startswith(f"recording could not be saved as {target} (disk full")
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["lost.audio.wav", "lost.video.mp4"], kept
    assert abs(float(probe(tmp_path / "lost.video.mp4")["video"]["duration"]) - 1.6) <= 0.1
