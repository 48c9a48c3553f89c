"""A WAV playlist as an audio source."""
from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from runtime import SAMPLE_RATE
from .chunk import AudioChunk
from .io_worker import IoWorker
from .source import SILENT, AudioSource
from .wav import WavError, WavReader

log = logging.getLogger(__name__)

#: Values of audio.files.on_end: at the end of a non-looping playlist, idle (a closed mouth)
#: or end the run.
ON_END = ("idle", "exit")


class FilesSource(AudioSource):
    """Plays the playlist in order, each item (and each gap) a new utterance id.

    Chunks keep the file's native rate and channels (the consumer resamples); the silence
    between items (`gap_s`) is 16 kHz mono zeros. Not paced: the consumer pulls ahead, and
    a chunk's timestamp is clock() when it was read. A missing or malformed item is logged
    and skipped. When nothing in a looping playlist can be played, read() returns SILENT
    and the playlist is tried again every `retry_interval_s` instead of spinning.
    `flush()` (barge-in) ends the current item; the gap and the next item follow.

    Opening and reading an item can block for ever (a FIFO nobody writes, a hung network
    mount), so both run on an I/O worker thread: read() waits at most `io_wait_s` for them
    and answers SILENT meanwhile (pushed speech, the picture, the control path and shutdown
    go on), and an item whose I/O takes longer than `stall_s` is skipped with a one-line
    reason. A path that is not a regular file is skipped before it is opened. flush() and
    close() only set flags and never wait for I/O.
    """

    live = False

    def __init__(self, playlist: Sequence[Path | str], loop: bool = False, gap_s: float = 0.5,
                 chunk_ms: int = 20, clock: Callable[[], float] = time.monotonic,
                 retry_interval_s: float = 10.0, io_wait_s: float = 0.1,
                 stall_s: float = 5.0) -> None:
        if chunk_ms <= 0 or gap_s < 0:
            raise ValueError(f"bad files source setup: chunk_ms={chunk_ms}, gap_s={gap_s}")
        self._playlist = tuple(Path(item) for item in playlist)
        self._loop = loop
        self._gap_frames = round(gap_s * SAMPLE_RATE)
        self._chunk_ms = chunk_ms
        self._clock = clock
        self._retry_interval_s = retry_interval_s
        self._io_wait_s = io_wait_s
        self._stall_s = stall_s
        # Lets close() cut short the wait of a read() on an unplayable playlist.
        self._closed = threading.Event()
        # flush()/close() come from control threads while read() runs in the ingest one. The
        # lock guards flags only and is never held during I/O (a blocked open must not
        # block /stop or SIGTERM).
        self._lock = threading.Lock()
        self._reading = False
        self._flush_pending = False
        # Started by open(), retired by close(): a closed source leaves no thread behind.
        self._worker: IoWorker | None = None
        self._pending = None  # the I/O job read() waits for (a key until it answers)
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
        self._flush_pending = False
        self._reset()
        self._worker = IoWorker("playlist")
        if not self._playlist:
            log.warning("files source: the playlist is empty")

    def read(self, timeout_s: float) -> AudioChunk | None | type[SILENT]:
        with self._lock:
            if self._closed.is_set():
                self._close_readers()
                return None
            self._reading = True
            flush, self._flush_pending = self._flush_pending, False
        try:
            if flush:
                self._end_current_item()
            result = self._next(timeout_s)
        except _Waiting:
            return SILENT  # the item's I/O has not answered yet: a closed mouth meanwhile
        finally:
            with self._lock:
                self._reading = False
                if self._closed.is_set():
                    self._close_readers()
        if isinstance(result, float):
            # Nothing playable: wait (close() cuts it short).
            self._closed.wait(result)
            return SILENT
        return result

    def _io(self, key: tuple, call: Callable[[], object]) -> object:
        """`call()` on the I/O worker; raises _Waiting while it runs, _Stalled once it has run
        longer than stall_s (the worker is then abandoned for a new one)."""
        if self._worker is None:  # read() before open()
            self._worker = IoWorker("playlist")
        job = self._pending
        if job is None or job.key != key:
            job = self._pending = self._worker.submit(key, call)
        if not job.wait(self._io_wait_s):
            if job.age_s() < self._stall_s:
                raise _Waiting
            self._pending = None
            self._worker.retire()
            self._worker = IoWorker("playlist")  # the blocked thread is a daemon: left behind
            raise _Stalled(f"no answer within {self._stall_s:g} s (a FIFO or a hung mount?)")
        self._pending = None
        return job.result()

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
            try:
                reader = self._io(("open", self._index, path), lambda: _open_regular(path))
            except _Stalled as exc:
                self._index += 1
                self._report_bad(path, f"{path}: opening it: {exc}")
                continue
            except WavError as exc:
                self._index += 1
                self._report_bad(path, str(exc))
                continue
            self._index += 1
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
            samples = self._io(("read", id(reader)), lambda: reader.read(frames))
        except _Stalled as exc:
            # The old worker is stuck inside this file and holds it: closing it from another
            # thread would block there too. Leave the reader to it and go on without.
            log.warning("files source: reading %s: %s; skipping the rest", reader.path, exc)
            self._reader = None
            return None
        except (OSError, ValueError) as exc:
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
        """Barge-in: the next read() ends the current item (never waits for its I/O)."""
        with self._lock:
            if self._reading:
                self._flush_pending = True
            else:
                self._end_current_item()

    def _end_current_item(self) -> None:
        if self._reader is not None:
            self._release(self._reader)
            self._reader = None

    def _release(self, reader: WavReader) -> None:
        # Never close a file under the worker's feet: queue the close behind its job.
        if self._pending is not None:
            self._worker.submit(("close", id(reader)), reader.close)
        else:
            reader.close()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if not self._reading:  # else read() closes them when its call returns
                self._close_readers()

    def _close_readers(self) -> None:
        for reader in (self._reader, self._queued):
            if reader is not None:
                self._release(reader)
        self._reader = self._queued = None
        self._pending = None
        self._gap_left = 0
        if self._worker is not None:
            self._worker.retire()  # after the closes queued behind its last job
            self._worker = None

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


class _Waiting(Exception):
    """The item's I/O is still running: answer SILENT and ask again on the next read()."""


class _Stalled(Exception):
    """The item's I/O ran longer than stall_s: skip the item."""


def _open_regular(path: Path) -> WavReader:
    """A WavReader, or WavError for what is not a regular file (a FIFO's open would block)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise WavError(f"{path}: cannot open: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket"
                if stat.S_ISSOCK(mode) else "not a file")
        raise WavError(f"{path}: not a regular file ({kind})")
    return WavReader(path)
