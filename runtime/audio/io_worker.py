"""File I/O that may block for ever (a FIFO nobody writes, a hung network mount), kept off
every thread that must go on: a daemon worker runs the call, the caller waits a bounded time.

    worker = IoWorker("playlist")
    job = worker.submit(key, lambda: open_the_file())
    job.wait(0.02)  -> True when done; job.result() returns its value or raises its error

A caller that gives up on a job that never ends drops the worker (its thread stays blocked;
it is a daemon, so it never holds up the process's exit) and makes a new one.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Hashable


class Job:
    def __init__(self, key: Hashable, call: Callable[[], Any]):
        self.key = key
        self.call = call
        self.started = time.monotonic()
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._value = self.call()
        except BaseException as err:  # noqa: BLE001 - handed to the caller by result()
            self._error = err
        finally:
            self._done.set()

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(max(0.0, timeout_s))

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def age_s(self) -> float:
        return time.monotonic() - self.started

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


class IoWorker:
    """One daemon thread running submitted calls in order."""

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"edgemate-io-{name}", daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, call: Callable[[], Any]) -> Job:
        job = Job(key, call)
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job.run()

    def retire(self) -> None:
        """No more jobs: the thread leaves after the current one (if that ever ends)."""
        self._jobs.put(None)
