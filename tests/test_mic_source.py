"""The supervised microphone source, against a fake PyAudio (in a thread and in a child)."""
from __future__ import annotations

import json
import multiprocessing
import sys
import time
from unittest import mock

import numpy as np
import pytest

import fake_pyaudio
from runtime.audio.capture import CaptureTimeline
from runtime.audio.mic import MicSource
from runtime.audio.source import SILENT, AudioSourceError

FAST = {"chunk_ms": 20, "stall_timeout_s": 0.3, "reopen_backoff_s": 0.05,
        "reopen_backoff_max_s": 0.4}


@pytest.fixture
def backend():
    fake = fake_pyaudio.FakeBackend()
    yield fake
    fake.set_hanging(False)  # let abandoned capture threads finish


@pytest.fixture
def mic(backend):
    sources = []

    def make(**settings) -> MicSource:
        settings = {**FAST, "device": "usb", "pyaudio_module": backend, "isolation": "thread",
                    **settings}
        source = MicSource(**settings)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def _wait_for_chunk(source: MicSource, within_s: float):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        chunk = source.read(0.05)
        if chunk is not SILENT:
            return chunk
    raise AssertionError(f"no chunk within {within_s} s; status: {source.status()}")


def _wait_for_status(source: MicSource, text: str, within_s: float = 2.0) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if text in source.status():
            return source.status()
        source.read(0.02)
    raise AssertionError(f"status never showed {text!r}; last: {source.status()}")


def test_missing_pyaudio_names_the_audio_extra():
    with mock.patch.dict(sys.modules, {"pyaudio": None}):
        with pytest.raises(AudioSourceError) as error:
            MicSource().open()
    assert 'edgemate[audio]' in str(error.value) and "portaudio19-dev" in str(error.value)
    assert str(error.value).startswith("mic source needs PyAudio")


def test_unknown_device_lists_the_input_devices(mic):
    with pytest.raises(AudioSourceError) as error:
        mic(device="Blue Yeti").open()
    message = str(error.value)
    assert '"Blue Yeti"' in message and "USB PnP Sound Device" in message
    assert "HDMI" not in message  # output-only devices are not candidates


def test_captures_by_case_insensitive_name(mic):
    source = mic(device="USB PNP")
    source.open()
    assert source.live
    chunks = [_wait_for_chunk(source, 2.0) for _ in range(5)]
    assert {(chunk.rate, chunk.channels, chunk.frames) for chunk in chunks} == {(48000, 1, 960)}
    steps = np.diff([chunk.timestamp for chunk in chunks])
    assert np.allclose(steps, 0.02, atol=0.015)
    assert 0.45 < float(np.max(chunks[-1].samples)) <= 0.5
    assert 'capturing "USB PnP Sound Device' in source.status()


def test_default_device_and_native_rate(mic, backend):
    source = mic(device="", rate=16000, channels=2)
    source.open()
    chunk = _wait_for_chunk(source, 2.0)
    assert chunk.rate == 16000 and chunk.channels == 1  # the device has one input channel


def test_unplugged_device_reopens_with_backoff_and_resumes(mic, backend):
    source = mic()
    source.open()
    before = _wait_for_chunk(source, 2.0)
    backend.unplug("USB")  # the live read raises OSError -9999
    _wait_for_status(source, "reopening in")
    # While it is gone, reopening fails ("no input device") and the delay doubles.
    _wait_for_status(source, "reopening in 0.4 s")
    assert "no input device matching" in source.status()
    silent_reads = [source.read(0.02) for _ in range(5)]
    assert all(result is SILENT for result in silent_reads)
    backend.plug("USB")
    returned = time.monotonic()
    after = _wait_for_chunk(source, 2.0)
    assert time.monotonic() - returned < 2.0
    assert after.utterance > before.utterance  # a new capture is a new utterance
    assert source.reopen_count >= 3


def test_hung_read_is_abandoned_and_capture_resumes(mic, backend):
    source = mic()
    source.open()
    _wait_for_chunk(source, 2.0)
    backend.set_hanging(True)  # reads block forever, including those of new streams
    status = _wait_for_status(source, "reopening in")
    assert "no audio for 0.3 s" in status
    assert source.read(0.05) is SILENT
    _wait_for_status(source, "reopening in 0.1 s")  # a second hung attempt backed off more
    backend.set_hanging(False)
    returned = time.monotonic()
    _wait_for_chunk(source, 2.0)
    assert time.monotonic() - returned < 2.0


def test_input_overflow_is_counted(mic, backend):
    source = mic()
    source.open()
    _wait_for_chunk(source, 2.0)
    backend.glitch(0.2)  # late by more than the slack, less than the stall timeout
    _wait_for_status(source, "1 overflows")
    assert source.overflows == 1


def test_capture_timeline_counts_jumps_not_drift():
    timeline = CaptureTimeline(rate=1000, slack_s=0.1)
    assert timeline.stamp(1.020, 20) == (1.0, False)
    assert timeline.stamp(1.040, 20) == (1.02, False)
    # The device clock runs slow by 1 ms per chunk: re-anchored, never an overflow.
    now = 1.040
    for _ in range(200):
        now += 0.021
        assert timeline.stamp(now, 20)[1] is False
    start, lost = timeline.stamp(now + 0.5, 20)  # 0.48 s of samples missing
    assert lost and start == pytest.approx(now + 0.48)


@pytest.fixture
def child_config(tmp_path, monkeypatch):
    def write(**config) -> None:
        path = tmp_path / "fake_pyaudio.json"
        path.write_text(json.dumps(config))
        monkeypatch.setenv("FAKE_PYAUDIO_CONFIG", str(path))
    return write


def test_child_process_capture_and_clean_close(child_config):
    child_config()
    source = MicSource(device="usb", pyaudio_module="fake_pyaudio", **FAST)
    source.open()
    try:
        chunk = _wait_for_chunk(source, 5.0)
        assert chunk.rate == 48000 and chunk.frames == 960
        assert len(multiprocessing.active_children()) == 1
    finally:
        source.close()
    assert multiprocessing.active_children() == []


def test_child_process_hung_in_read_is_killed_and_replaced(child_config, tmp_path):
    child_config(open_counter=str(tmp_path / "opens"), hang_in_child=1)
    source = MicSource(device="usb", pyaudio_module="fake_pyaudio", **FAST)
    source.open()
    try:
        first = _wait_for_chunk(source, 5.0)
        _wait_for_status(source, "no audio for 0.3 s", within_s=5.0)
        second = _wait_for_chunk(source, 5.0)
        assert second.utterance > first.utterance
        assert (tmp_path / "opens").read_text() == "2"
        assert len(multiprocessing.active_children()) == 1  # the hung child is gone
    finally:
        source.close()
    assert multiprocessing.active_children() == []


def test_read_after_close_is_none(mic):
    source = mic()
    source.open()
    source.close()
    assert source.read(0.01) is None
