"""Microphone capture through PyAudio, supervised so that a dead or hung device heals.

The capture runs in a child process started with the *spawn* method: PortAudio keeps
threads and device handles that a forked child would inherit half-broken (the parent may
have initialised PortAudio for playback or device listing), and a fork also copies locks
held by our other threads. A fresh interpreter initialises PortAudio cleanly, sees a
re-plugged USB device (PortAudio lists devices once, at init), and can be killed when a
read hangs inside ALSA. The parent watches the time of the last chunk: none for
`stall_timeout_s` means the device is gone or hung; the child is killed and a new one is
started after a back-off (doubling up to `reopen_backoff_max_s`). Meanwhile read()
returns SILENT, so the avatar idles with its mouth closed.
"""
from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from .capture import CaptureSettings, capture_main
from .chunk import AudioChunk
from .devices import load_pyaudio
from .source import SILENT, AudioSource, AudioSourceError

log = logging.getLogger(__name__)

#: A capture that delivered this long counts as healthy: the next failure backs off from
#: the first delay again (hysteresis against a flapping device).
HEALTHY_AFTER_S = 10.0
#: How long a stuck child gets to leave on its own before it is killed.
_CHILD_EXIT_GRACE_S = 0.3
#: Poll period of the supervisor, bounding how late it notices close().
_POLL_S = 0.05
#: While backing off, the device nodes are looked at this often: a re-plugged USB mic
#: (udev adds /dev/snd nodes) is retried at once instead of after a long back-off.
_WATCH_S = 0.1
_ALSA_NODES = "/dev/snd"


def alsa_nodes() -> tuple[str, ...] | None:
    """The ALSA device nodes now (None where there are none, e.g. macOS): a cheap hotplug
    hint, since PortAudio itself lists devices only once, at init."""
    import os
    try:
        return tuple(sorted(os.listdir(_ALSA_NODES)))
    except OSError:
        return None


class MicSource(AudioSource):
    """Live microphone chunks (int16 capture -> float32, the device's rate and channels).

    `pyaudio_module`: None (import "pyaudio"), an import path, or a module-like object.
    `isolation`: "process" (the appliance) or "thread" (tests with an in-process fake;
    a hung thread cannot be killed, only abandoned). Every reopen starts a new utterance.
    """

    live = True

    def __init__(self, device: str = "", rate: int | None = None, channels: int = 1,
                 chunk_ms: int = 20, stall_timeout_s: float = 1.0,
                 reopen_backoff_s: float = 0.25, reopen_backoff_max_s: float = 5.0,
                 pyaudio_module: Any = None, isolation: str = "process",
                 open_timeout_s: float = 5.0, queue_s: float = 2.0,
                 device_watch: Callable[[], Any] = alsa_nodes) -> None:
        if isolation not in ("process", "thread"):
            raise ValueError(f"isolation must be 'process' or 'thread', not {isolation!r}")
        if isolation == "process" and isinstance(pyaudio_module, ModuleType):
            pyaudio_module = pyaudio_module.__name__  # a spawned child imports it by name
        elif isolation == "process" and pyaudio_module is not None \
                and not isinstance(pyaudio_module, str):
            raise ValueError("a child process needs the PyAudio backend as an import path")
        self.settings = CaptureSettings(device, rate, channels, chunk_ms)
        self.stall_timeout_s = stall_timeout_s
        self.reopen_backoff_s = reopen_backoff_s
        self.reopen_backoff_max_s = max(reopen_backoff_s, reopen_backoff_max_s)
        # The child may need this long to start an interpreter and open the device.
        self.open_timeout_s = max(open_timeout_s, stall_timeout_s)
        self._backend = pyaudio_module
        self._isolation = isolation
        self._device_watch = device_watch
        self._max_chunks = max(2, round(queue_s * 1000 / chunk_ms))
        self._cond = threading.Condition()
        self._chunks: deque[AudioChunk] = deque()
        self._stop = threading.Event()
        self._opened = threading.Event()  # the first attempt has an outcome
        self._open_error: str | None = None
        self._supervisor: threading.Thread | None = None
        self._status = "mic: closed"
        self._utterance = 0
        self._rate = self._channels = 0
        self._device_name = ""
        self.overflows = 0  # input overflows of the current capture (inferred)
        self.dropped_chunks = 0  # chunks dropped because read() fell behind
        self.reopen_count = 0

    # --- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        if self._supervisor is not None:
            return
        # Fail here, in the parent, with the install hint; the child imports it again.
        load_pyaudio(self._backend, "mic source")
        self._stop.clear()
        self._opened.clear()
        self._open_error = None
        self._status = "mic: starting"
        self._supervisor = threading.Thread(target=self._supervise, name="mic-supervisor",
                                            daemon=True)
        self._supervisor.start()
        self._opened.wait(self.open_timeout_s + 1.0)
        if self._open_error is not None:
            self.close()
            raise AudioSourceError(self._open_error)

    def close(self) -> None:
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5.0)
            self._supervisor = None
        with self._cond:
            self._chunks.clear()
            self._cond.notify_all()
        self._status = "mic: closed"

    # --- consumer side ---------------------------------------------------------------

    def read(self, timeout_s: float) -> AudioChunk | None | type[SILENT]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._chunks:
                remaining = deadline - time.monotonic()
                if self._supervisor is None and self._stop.is_set():
                    return None
                if remaining <= 0:
                    return SILENT
                self._cond.wait(remaining)
            return self._chunks.popleft()

    def flush(self) -> None:
        with self._cond:
            self._chunks.clear()

    def status(self) -> str:
        return self._status

    # --- supervisor ------------------------------------------------------------------

    def _supervise(self) -> None:
        delay = self.reopen_backoff_s
        first = True
        while not self._stop.is_set():
            started = time.monotonic()
            reason, delivered_s = self._capture_once(first)
            first = False
            if self._stop.is_set() or self._open_error is not None:
                break
            if delivered_s >= HEALTHY_AFTER_S:
                delay = self.reopen_backoff_s
            self._status = f"mic: reopening in {delay:.1f} s ({reason})"
            log.warning("mic: %s; reopening in %.1f s (attempt ran %.1f s)", reason, delay,
                        time.monotonic() - started)
            if self._wait_for_retry(delay):
                break
            delay = min(delay * 2, self.reopen_backoff_max_s)
            self.reopen_count += 1
        self._opened.set()

    def _wait_for_retry(self, delay: float) -> bool:
        """Back off for `delay`, or less if the device nodes change; True = closing."""
        before = self._device_watch()
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(_WATCH_S, left)):
                return True
            if self._device_watch() != before:
                log.info("mic: audio devices changed; retrying now")
                return False
        return False

    def _capture_once(self, first: bool) -> tuple[str, float]:
        """Run one capture child until it fails or stalls; (why it ended, seconds it delivered)."""
        receiver, sender = multiprocessing.Pipe(duplex=False)
        worker, stop_worker = self._start_worker(sender)
        started = last_chunk = time.monotonic()
        first_chunk: float | None = None
        ready = False
        reason = "closed"
        try:
            while not self._stop.is_set():
                limit = self.stall_timeout_s if ready else self.open_timeout_s
                now = time.monotonic()
                if now - last_chunk >= limit:
                    reason = (f"no audio for {self.stall_timeout_s:.1f} s" if ready
                              else f"device did not open within {self.open_timeout_s:.1f} s")
                    break
                if not receiver.poll(min(_POLL_S, limit - (now - last_chunk))):
                    continue
                try:
                    message = receiver.recv()
                except (EOFError, OSError):
                    reason = "capture process ended"
                    break
                if message[0] == "chunk":
                    last_chunk = time.monotonic()
                    first_chunk = first_chunk or last_chunk
                    self._enqueue(message[1], message[2], message[3])
                elif message[0] == "ready":
                    ready, last_chunk = True, time.monotonic()
                    self._on_ready(*message[1:])
                    if first:
                        self._opened.set()
                else:
                    reason = message[2]
                    if first and message[1] == "config":
                        self._open_error = reason
                    break
        finally:
            receiver.close()  # first: a child blocked sending gets EPIPE and ends
            stop_worker()
            if first:
                self._opened.set()
        delivered_s = 0.0 if first_chunk is None else last_chunk - first_chunk
        log.debug("mic: capture ended after %.1f s: %s", time.monotonic() - started, reason)
        return reason, delivered_s

    def _start_worker(self, sender: Any) -> tuple[Any, Any]:
        if self._isolation == "thread":
            stop = threading.Event()
            thread = threading.Thread(target=capture_main, name="mic-capture", daemon=True,
                                      args=(self._backend, self.settings, sender, stop))
            thread.start()

            def stop_thread() -> None:
                # A thread still inside a hung read() is abandoned; its next send fails.
                stop.set()
                thread.join(timeout=_CHILD_EXIT_GRACE_S)
            return thread, stop_thread
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        process = context.Process(target=capture_main, name="edgemate-mic", daemon=True,
                                  args=(self._backend or "pyaudio", self.settings, sender, stop))
        process.start()
        sender.close()  # the child holds its own copy; EOF on ours when it dies

        def stop_process() -> None:
            stop.set()
            process.join(timeout=_CHILD_EXIT_GRACE_S)
            if process.is_alive():
                process.kill()  # hung in the driver: SIGKILL cannot be ignored
                process.join(timeout=2.0)
            if not process.is_alive():
                process.close()
        return process, stop_process

    def _on_ready(self, rate: int, channels: int, device_name: str) -> None:
        self._rate, self._channels = rate, channels
        self.overflows = 0
        with self._cond:
            self._utterance += 1  # a new capture is a discontinuity for the consumers
        self._status = f'mic: capturing "{device_name}" at {rate} Hz'
        self._device_name = device_name
        log.info('mic: capturing "%s" at %d Hz, %d ch', device_name, rate, channels)

    def _enqueue(self, timestamp: float, overflows: int, data: bytes) -> None:
        samples = np.frombuffer(data, "<i2").astype(np.float32) * np.float32(1 / 32768)
        chunk = AudioChunk(samples.reshape(-1, self._channels), self._rate, timestamp,
                           self._utterance)
        if overflows != self.overflows:
            self.overflows = overflows
            self._status = (f'mic: capturing "{self._device_name}" at {self._rate} Hz '
                            f"({overflows} overflows)")
            log.info("mic: input overflow (%d in this capture)", overflows)
        with self._cond:
            if len(self._chunks) >= self._max_chunks:
                self._chunks.popleft()  # the consumer fell behind a live source: keep it live
                self.dropped_chunks += 1
            self._chunks.append(chunk)
            self._cond.notify_all()
