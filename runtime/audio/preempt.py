"""Pushed speech over a configured files or mic source: the pushed speech pre-empts it.

`POST /say` on the control socket feeds a StreamSource (the same decode-and-queue path as
the `stream` source: one mechanism, two doors). When the configured source is `files` or
`mic`, that StreamSource has no socket of its own and this wrapper puts it in front:

- while pushed speech is being received or is buffered, only it is played;
- a files playlist is simply not read meanwhile: it pauses mid-item and resumes where it
  stopped once the pushed speech is over;
- a mic keeps being read (so its capture stays live and its queue short) but what it hears
  is discarded: the avatar says the pushed speech, not the room. Because a live source is
  not read ahead, pushed chunks are released at real-time pace against the wall clock.

Barge-in (flush) stops both: the pushed speech and the configured source's current item.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from .chunk import AudioChunk
from .source import SILENT, AudioSource
from .stream import StreamSource


#: A live base: pushed audio may run this far ahead of the wall clock (covers read jitter).
_LIVE_LEAD_S = 0.06
#: Live chunks dropped per read at most (a mic queue holds about 2 s of 20 ms chunks).
_MAX_DRAIN = 128


class PreemptingSource(AudioSource):
    def __init__(self, base: AudioSource, pushed: StreamSource,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base, self.pushed = base, pushed
        self.live = base.live
        self._clock, self._sleep = clock, sleep
        self._pushed_started: float | None = None  # wall time of the current pushed run
        self._pushed_s = 0.0  # pushed audio handed out in the current run

    def open(self) -> None:
        # The pushed side has no socket: its buffer works as constructed.
        self.base.open()

    def close(self) -> None:
        self.pushed.close()
        self.base.close()

    def flush(self) -> None:
        # Barge-in silences both: the pushed speech, and the configured source's current
        # item (a playlist goes on with its next item after the gap), so the avatar does
        # not pick up mid-sentence where the pushed speech had paused it.
        self.pushed.flush()
        self.base.flush()

    def status(self) -> str:
        if self.pushed.active():
            return f"pushed speech over {self.base.status()}: {self.pushed.status()}"
        return self.base.status()

    def read(self, timeout_s: float) -> AudioChunk | None | type[SILENT]:
        if not self.pushed.active():
            self._pushed_started = None
            return self.base.read(timeout_s)
        if self.live:
            self._drain_base()
            wait = self._live_wait_s()
            if wait > 0:
                self._sleep(min(wait, timeout_s))
                if wait > timeout_s:
                    return SILENT
        item = self.pushed.read(timeout_s if not self.live else min(timeout_s, 0.005))
        if isinstance(item, AudioChunk):
            if self._pushed_started is None:
                self._pushed_started, self._pushed_s = self._clock(), 0.0
            self._pushed_s += item.duration_s
            return item
        return SILENT  # buffering (prebuffer, slow TTS): the mouth stays closed meanwhile

    def _drain_base(self) -> None:
        # Keep a live capture flowing and its queue short; its audio is not played. Bounded:
        # a source that always has a chunk ready must not starve the pushed speech.
        for _ in range(_MAX_DRAIN):
            item = self.base.read(0.0)
            if not isinstance(item, AudioChunk):
                return

    def _live_wait_s(self) -> float:
        if self._pushed_started is None:
            return 0.0
        return self._pushed_s - (self._clock() - self._pushed_started) - _LIVE_LEAD_S
