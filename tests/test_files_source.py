"""The WAV playlist source."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from runtime.audio.files import FilesSource
from runtime.audio.source import SILENT
from runtime.audio.wav import write_wav

#: A healthy file's I/O answers within microseconds; the bound only matters for a stall, and
#: these tests are about the playlist, so a busy CI core must not turn a chunk into SILENT.
IO_WAIT_S = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _tone(path, seconds, rate, channels=1, level=0.5):
    frames = round(seconds * rate)
    samples = np.full((frames, channels), level, np.float32)
    write_wav(path, samples, rate)
    return path


def _drain(source, limit=10_000):
    chunks = []
    for _ in range(limit):
        chunk = source.read(0.01)
        if chunk is None:
            return chunks
        chunks.append(chunk)
    raise AssertionError("source never ended")


def _items(chunks):
    """[(utterance, rate, channels, frames, is_silence)] merged per utterance."""
    merged = []
    for chunk in chunks:
        silent = not np.any(chunk.samples)
        if merged and merged[-1][0] == chunk.utterance:
            merged[-1][3] += chunk.frames
        else:
            merged.append([chunk.utterance, chunk.rate, chunk.channels, chunk.frames, silent])
    return [tuple(item) for item in merged]


def test_plays_in_order_with_gaps_and_skips_bad_items(tmp_path, caplog):
    first = _tone(tmp_path / "a.wav", 0.1, 48000, 2)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    last = _tone(tmp_path / "c.wav", 0.05, 8000)
    playlist = [first, tmp_path / "missing.wav", bad, last]
    with caplog.at_level(logging.WARNING), \
            FilesSource(playlist, gap_s=0.1, io_wait_s=IO_WAIT_S) as source:
        items = _items(_drain(source))
    assert items == [(1, 48000, 2, 4800, False), (2, 16000, 1, 1600, True),
                     (3, 8000, 1, 400, False)]
    assert "missing.wav" in caplog.text and "bad.wav" in caplog.text


def test_chunks_are_chunk_ms_long_with_clock_timestamps(tmp_path):
    clock = FakeClock()
    with FilesSource([_tone(tmp_path / "a.wav", 0.1, 44100)], chunk_ms=20, clock=clock,
                     io_wait_s=IO_WAIT_S) as source:
        chunk = source.read(0.01)
        assert chunk.frames == 882 and chunk.timestamp == 100.0
        clock.now = 101.0
        assert source.read(0.01).timestamp == 101.0
        assert source.status().startswith("files: playing 1/1 a.wav")


def test_no_gap_at_the_end_and_none_afterwards(tmp_path):
    with FilesSource([_tone(tmp_path / "a.wav", 0.05, 16000)], gap_s=1.0,
                     io_wait_s=IO_WAIT_S) as source:
        chunks = _drain(source)
        assert sum(chunk.frames for chunk in chunks) == 800
        assert source.read(0.01) is None
        assert source.status() == "files: end of playlist"


def test_loop_starts_again_with_a_gap(tmp_path):
    with FilesSource([_tone(tmp_path / "a.wav", 0.04, 16000)], loop=True, gap_s=0.02,
                     io_wait_s=IO_WAIT_S) as source:
        utterances = [source.read(0.01).utterance for _ in range(8)]
    assert utterances == [1, 1, 2, 3, 3, 4, 5, 5]


def test_all_bad_looping_playlist_idles_without_spinning(tmp_path, caplog):
    clock = FakeClock()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    playlist = [tmp_path / "gone.wav", bad]
    source = FilesSource(playlist, loop=True, clock=clock, retry_interval_s=5.0,
                         io_wait_s=IO_WAIT_S)
    with caplog.at_level(logging.WARNING):
        source.open()
        results = [source.read(0.001) for _ in range(50)]
        assert all(result is SILENT for result in results)
        assert caplog.text.count("none of the 2 playlist items") == 1
        assert caplog.text.count("gone.wav") == 1  # once per file, not per read
        assert "retrying in 5 s" in source.status()
        # The file appears: the next pass after the retry interval plays it.
        _tone(tmp_path / "gone.wav", 0.02, 16000)
        assert source.read(0.001) is SILENT
        clock.now += 5.0
        chunk = source.read(0.001)
    assert chunk is not SILENT and chunk.frames == 320
    source.close()


def test_flush_ends_the_current_item(tmp_path):
    playlist = [_tone(tmp_path / "a.wav", 1.0, 16000), _tone(tmp_path / "b.wav", 0.02, 16000)]
    with FilesSource(playlist, gap_s=0.0, io_wait_s=IO_WAIT_S) as source:
        assert source.read(0.01).utterance == 1
        source.flush()
        chunk = source.read(0.01)
        assert chunk.utterance == 2 and chunk.frames == 320
        assert source.read(0.01) is None


def test_empty_playlist_ends_at_once():
    with FilesSource([], io_wait_s=IO_WAIT_S) as source:
        assert source.read(0.01) is None


@pytest.mark.parametrize("bad_value", [{"chunk_ms": 0}, {"gap_s": -1}])
def test_bad_settings(bad_value):
    with pytest.raises(ValueError):
        FilesSource([], **bad_value)
