"""A WAV playlist as an audio source."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import SAMPLE_RATE
from .chunk import AudioChunk
from .source import SILENT, AudioSource
from .wav import WavError, WavReader

log = logging.getLogger(__name__)


class FilesSource(AudioSource):
    """Plays the playlist in order, each item (and each gap) a new utterance id.

    Chunks keep the file's native rate and channels (the consumer resamples); the silence
    between items (`gap_s`) is 16 kHz mono zeros. Not paced: the consumer pulls ahead, and
    a chunk's timestamp is clock() when it was read. A missing or malformed item is logged
    and skipped. When nothing in a looping playlist can be played, read() returns SILENT
    and the playlist is tried again every `retry_interval_s` instead of spinning.
    `flush()` (barge-in) ends the current item; the gap and the next item follow.
    """

    live = False

    def __init__(self, playlist: Sequence[Path | str], loop: bool = False, gap_s: float = 0.5,
                 chunk_ms: int = 20, clock: Callable[[], float] = time.monotonic,
                 retry_interval_s: float = 10.0) -> None:
        if chunk_ms <= 0 or gap_s < 0:
            raise ValueError(f"bad files source setup: chunk_ms={chunk_ms}, gap_s={gap_s}")
        self._playlist = tuple(Path(item) for item in playlist)
        self._loop = loop
        self._gap_frames = round(gap_s * SAMPLE_RATE)
        self._chunk_ms = chunk_ms
        self._clock = clock
        self._retry_interval_s = retry_interval_s
        # Lets close() cut short the wait of a read() on an unplayable playlist.
        self._closed = threading.Event()
        # flush()/close() may come from a control thread while read() runs in the ingest one.
        self._lock = threading.RLock()
        self._reported: dict[Path, str] = {}  # path -> last reason logged at warning level
        self._reset()

    def _reset(self) -> None:
        self._reader: WavReader | None = None
        self._queued: WavReader | None = None  # next item, opened, waiting for the gap
        self._gap_left = 0
        self._index = 0  # next playlist position to try
        self._item_number = 0  # 1-based position of the current item, for status()
        self._playable_in_pass = 0
        self._items_played = 0
        self._retry_at: float | None = None
        self._ended = False
        self._utterance = 0

    def open(self) -> None:
        self.close()
        self._closed.clear()
        self._reset()
        if not self._playlist:
            log.warning("files source: the playlist is empty")

    def read(self, timeout_s: float) -> AudioChunk | None | type[SILENT]:
        with self._lock:
            result = self._next(timeout_s)
        if isinstance(result, float):
            # Nothing playable: wait outside the lock so flush()/close() are not held up.
            self._closed.wait(result)
            return SILENT
        return result

    def _next(self, timeout_s: float) -> AudioChunk | None | float:
        """The next chunk, None at the end, or how long to wait before answering SILENT."""
        while True:
            if self._gap_left > 0:
                return self._gap_chunk()
            if self._reader is not None:
                chunk = self._read_current()
                if chunk is not None:
                    return chunk
                continue
            if self._queued is not None:
                self._start(self._queued)
                continue
            if self._ended or self._closed.is_set():
                return None
            if self._retry_at is not None:
                wait_s = self._retry_at - self._clock()
                if wait_s > 0:
                    return float(min(timeout_s, wait_s))
                self._retry_at = None
            reader = self._open_next()
            if reader is not None:
                if self._items_played and self._gap_frames:
                    self._queued = reader
                    self._gap_left = self._gap_frames
                    self._utterance += 1
                else:
                    self._start(reader)
                continue
            # End of a pass through the playlist.
            if not self._loop:
                self._ended = True
                log.info("files source: end of the playlist")
                return None
            if self._playable_in_pass == 0:
                self._retry_at = self._clock() + self._retry_interval_s
                log.warning("files source: none of the %d playlist items can be played; "
                            "trying again in %.0f s", len(self._playlist), self._retry_interval_s)
            self._index = 0
            self._playable_in_pass = 0

    def _open_next(self) -> WavReader | None:
        """The next playable item of this pass, skipping (and logging) bad ones."""
        while self._index < len(self._playlist):
            path = self._playlist[self._index]
            self._index += 1
            try:
                reader = WavReader(path)
            except WavError as exc:
                self._report_bad(path, str(exc))
                continue
            if reader.frames == 0:
                reader.close()
                self._report_bad(path, f"{path}: no audio in the file")
                continue
            self._playable_in_pass += 1
            self._reported.pop(path, None)
            self._item_number = self._index
            return reader
        return None

    def _report_bad(self, path: Path, reason: str) -> None:
        # Once per file and reason: a looping playlist must not repeat it every pass.
        if self._reported.get(path) != reason:
            self._reported[path] = reason
            log.warning("files source: skipping %s", reason)
        else:
            log.debug("files source: skipping %s", reason)

    def _start(self, reader: WavReader) -> None:
        self._queued = None
        self._reader = reader
        self._utterance += 1
        self._items_played += 1
        log.info("files source: playing %s (%.1f s, %d Hz, %d ch)", reader.path,
                 reader.duration_s, reader.rate, reader.channels)

    def _read_current(self) -> AudioChunk | None:
        reader = self._reader
        assert reader is not None
        frames = max(1, round(reader.rate * self._chunk_ms / 1000))
        try:
            samples = reader.read(frames)
        except OSError as exc:
            log.warning("files source: reading %s failed (%s); skipping the rest", reader.path, exc)
            samples = np.zeros((0, reader.channels), np.float32)
        if len(samples) == 0:
            reader.close()
            self._reader = None
            return None
        return AudioChunk(samples, reader.rate, self._clock(), self._utterance)

    def _gap_chunk(self) -> AudioChunk:
        frames = min(self._gap_left, round(SAMPLE_RATE * self._chunk_ms / 1000))
        self._gap_left -= frames
        return AudioChunk(np.zeros((frames, 1), np.float32), SAMPLE_RATE, self._clock(),
                          self._utterance)

    def flush(self) -> None:
        with self._lock:
            self._end_current_item()

    def _end_current_item(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for reader in (self._reader, self._queued):
                if reader is not None:
                    reader.close()
            self._reader = self._queued = None
            self._gap_left = 0

    def status(self) -> str:
        count = len(self._playlist)
        if self._reader is not None:
            return f"files: playing {self._item_number}/{count} {self._reader.path.name}"
        if self._gap_left > 0:
            return "files: pause between items"
        if self._retry_at is not None:
            wait_s = max(0.0, self._retry_at - self._clock())
            return f"files: nothing playable, retrying in {wait_s:.0f} s"
        if self._ended:
            return "files: end of playlist"
        return "files: idle"
