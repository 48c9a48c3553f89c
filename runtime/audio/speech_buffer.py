"""A bounded, thread-safe queue of utterances between a producer (a pushing client) and read().

The producer blocks when the buffer is full (back pressure) instead of anything being
dropped; the reader never blocks longer than its timeout.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from .chunk import AudioChunk


class Utterance:
    """One pushed utterance: decoded segments at its native rate, oldest first."""

    def __init__(self, ident: int, rate: int, channels: int) -> None:
        self.ident, self.rate, self.channels = ident, rate, channels
        self.segments: deque[np.ndarray] = deque()
        self.frames = 0
        self.complete = False  # the producer has finished (client closed, or cut off)
        self.started = False  # read() has handed out its first chunk
        self.cancelled = False  # flushed: the producer must stop

    @property
    def buffered_s(self) -> float:
        return self.frames / self.rate


class SpeechBuffer:
    """begin() / put() / end() from the producer thread; take() from the consumer."""

    def __init__(self, max_buffer_s: float, prebuffer_s: float, chunk_ms: int = 20,
                 clock: Callable[[], float] = time.monotonic,
                 max_buffer_bytes: int = 16 * 2**20) -> None:
        self.max_buffer_s = max_buffer_s
        # Seconds alone do not bound memory: 60 s of 8 channels at 96 kHz is 184 MB.
        self.max_buffer_bytes = max_buffer_bytes
        self._bytes = 0
        # A prebuffer the buffer cannot hold would deadlock producer and reader.
        self.prebuffer_s = min(prebuffer_s, max_buffer_s / 2)
        self._chunk_s = chunk_ms / 1000
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[Utterance] = deque()
        self._closed = False
        self._generation = 0  # bumped by flush()

    @property
    def generation(self) -> int:
        """Take it when a producer starts; begin() refuses it after a flush()."""
        with self._cond:
            return self._generation

    def begin(self, ident: int, rate: int, channels: int, generation: int) -> Utterance | None:
        """A new utterance at the end of the queue; None if flushed or closed since
        `generation` was taken (the producer must stop)."""
        with self._cond:
            if self._closed or generation != self._generation:
                return None
            utterance = Utterance(ident, rate, channels)
            self._queue.append(utterance)
            self._cond.notify_all()
        return utterance

    def put(self, utterance: Utterance, samples: np.ndarray) -> bool:
        """Queue samples; blocks while the buffer is full. False: flushed or closed, stop."""
        with self._cond:
            while not (utterance.cancelled or self._closed) and self._full():
                self._cond.wait()
            if utterance.cancelled or self._closed:
                return False
            utterance.segments.append(samples)
            utterance.frames += len(samples)
            self._bytes += samples.nbytes
            self._cond.notify_all()
            return True

    def end(self, utterance: Utterance) -> None:
        with self._cond:
            utterance.complete = True
            self._cond.notify_all()

    def take(self, timeout_s: float) -> AudioChunk | None:
        """The next chunk of the oldest utterance, or None if none is ready within timeout_s.

        An utterance is held back until `prebuffer_s` of it is buffered or it is complete.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                while self._queue and self._queue[0].complete and self._queue[0].frames == 0:
                    self._queue.popleft()
                head = self._queue[0] if self._queue else None
                if head is not None and head.frames > 0 and (
                        head.started or head.complete or head.buffered_s >= self.prebuffer_s
                        or self._full()):  # a full buffer plays: it cannot wait for more
                    head.started = True
                    samples = self._pop_frames(head, max(1, round(head.rate * self._chunk_s)))
                    self._cond.notify_all()  # room for a producer blocked in put()
                    return AudioChunk(samples, head.rate, self._clock(), head.ident)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                self._cond.wait(remaining)

    def _full(self) -> bool:
        return self._buffered_s() >= self.max_buffer_s or self._bytes >= self.max_buffer_bytes

    def _pop_frames(self, utterance: Utterance, count: int) -> np.ndarray:
        parts = []
        while count > 0 and utterance.segments:
            segment = utterance.segments[0]
            if len(segment) <= count:
                parts.append(utterance.segments.popleft())
            else:
                parts.append(segment[:count])
                utterance.segments[0] = segment[count:]
            count -= len(parts[-1])
        samples = parts[0] if len(parts) == 1 else np.concatenate(parts)
        utterance.frames -= len(samples)
        self._bytes -= sum(part.nbytes for part in parts)
        return samples

    def flush(self) -> None:
        """Drop every queued utterance and tell their producers to stop."""
        with self._cond:
            self._generation += 1
            for utterance in self._queue:
                utterance.cancelled = True
            self._queue.clear()
            self._bytes = 0
            self._cond.notify_all()

    def close(self) -> None:
        """Drop everything; producers stop, take() returns None at once."""
        with self._cond:
            self._closed = True
            for utterance in self._queue:
                utterance.cancelled = True
            self._queue.clear()
            self._bytes = 0
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._queue.clear()
            self._bytes = 0

    def _buffered_s(self) -> float:
        return sum(utterance.buffered_s for utterance in self._queue)

    def snapshot(self) -> tuple[Utterance | None, float]:
        """(the utterance at the head, seconds buffered), for status lines."""
        with self._cond:
            return (self._queue[0] if self._queue else None), self._buffered_s()
