"""Speaker output and its clock, against a fake PyAudio."""
from __future__ import annotations

import sys
import time
from unittest import mock

import numpy as np
import pytest

import fake_pyaudio
from runtime.audio.playback import Player
from runtime.audio.source import AudioSourceError


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def manual(clock):
    """A player whose callbacks run only when the test pumps them, on a fake clock."""
    backend = fake_pyaudio.FakeBackend(manual_callbacks=True, clock=clock, output_latency_s=0.05)
    player = Player(device="speaker", extra_latency_ms=10, pyaudio_module=backend,
                    buffer_s=0.5, frames_per_buffer=160, clock=clock)
    player.open()
    yield player, backend.streams[-1]
    player.close()


def _ramp(count: int, start: int = 0) -> np.ndarray:
    return ((np.arange(start, start + count) % 1000) / 1000).astype(np.float32)


def test_missing_pyaudio_names_the_audio_extra():
    with mock.patch.dict(sys.modules, {"pyaudio": None}):
        with pytest.raises(AudioSourceError, match=r'playback needs PyAudio: .*edgemate\[audio\]'):
            Player().open()


def test_unknown_output_lists_output_devices():
    backend = fake_pyaudio.FakeBackend()
    with pytest.raises(AudioSourceError) as error:
        Player(device="bluetooth", pyaudio_module=backend).open()
    assert '"HDMI Speaker"' in str(error.value) and "USB PnP" not in str(error.value)


def test_plays_what_was_written_and_the_clock_follows_the_dac(manual, clock):
    player, stream = manual
    assert player.write(_ramp(1000)) == 1000
    assert player.position_samples() == 0.0  # no callback yet
    stream.pump()
    assert np.array_equal(stream.played[0], _ramp(160))
    # The buffer reaches the DAC 50 ms after the callback, heard 10 ms later still.
    assert player.position_samples() == 0.0
    clock.now = 0.065
    assert player.position_samples() == pytest.approx(80)
    clock.now = 0.5  # no callback for a long time: never beyond what was handed out
    assert player.position_samples() == 160
    stream.pump(2)
    assert player.played_samples == 480
    assert player.position_samples() >= 160  # never backwards


def test_underrun_plays_zeros_advances_and_discards_late_samples(manual, clock):
    player, stream = manual
    player.write(_ramp(200))
    stream.pump(3)  # 480 positions: 280 of them had nothing to play
    assert np.array_equal(np.concatenate(stream.played)[:200], _ramp(200))
    assert not np.any(np.concatenate(stream.played)[200:])
    assert player.underrun_samples == 280 and player.played_samples == 480
    # The producer catches up: what belonged to already-played positions is dropped.
    assert player.write(_ramp(400, start=200)) == 400
    assert player.late_samples == 280
    assert player.written_samples == 600
    stream.pump()
    assert np.array_equal(stream.played[-1][:120], _ramp(120, start=480))
    assert not np.any(stream.played[-1][120:])


def test_full_ring_accepts_only_what_fits(manual):
    player, stream = manual
    assert player.write(_ramp(10_000)) == 8000  # 0.5 s at 16 kHz
    assert player.write(_ramp(10)) == 0
    stream.pump()
    assert player.write(_ramp(10_000, start=8000)) == 160
    played = []
    for _ in range(51):
        stream.pump()
        played.append(stream.played[-1])
    assert np.array_equal(np.concatenate(played)[:8000], _ramp(8000, start=160))


def test_flush_drops_unplayed_audio(manual):
    player, stream = manual
    player.write(np.ones(1000, np.float32))
    stream.pump()
    player.flush()
    assert player.written_samples == player.played_samples == 160
    # New speech after the barge-in plays next, not after the dropped rest.
    player.write(np.full(160, 0.5, np.float32))
    stream.pump()
    assert np.all(stream.played[-1] == 0.5)
    stream.pump()
    assert not np.any(stream.played[-1])


def test_real_time_callbacks_from_a_thread():
    backend = fake_pyaudio.FakeBackend(output_latency_s=0.02)
    player = Player(pyaudio_module=backend, frames_per_buffer=160)
    assert player.write(_ramp(8000)) == 8000  # queued before the first callback
    player.open()
    try:
        positions = []
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            positions.append(player.position_samples())
            time.sleep(0.01)
        assert positions == sorted(positions)
        assert 0.1 * 16000 < positions[-1] < 0.4 * 16000
        assert "queued" in player.status()
    finally:
        player.close()
    stream = backend.streams[-1]
    assert not stream.is_active()
    heard = np.concatenate(stream.played)[:8000]
    assert np.array_equal(heard, _ramp(8000)[:len(heard)])
