"""Busy-loop child processes and CPU accounting, shared by the stress phases and co-tenants.

Load workers are plain child processes (`python -c`), so they load nothing of EdgeMate. They
leave when stopped, on Ctrl-C (they are in our process group) and when orphaned (each polls
its parent).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys

from runtime.system.cores import allowed_cores  # noqa: F401 (one load process per allowed core)

log = logging.getLogger(__name__)

#: A worker: spin, and leave within 0.2 s once its parent is gone (no orphaned load).
BURN_CODE = """\
import os, signal, time
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
parent = int(os.environ["EDGEMATE_STRESS_PARENT"])
while os.getppid() == parent:
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        pass
"""


def child_env() -> dict[str, str]:
    """The environment of a load process: it knows its parent (to leave when orphaned) and
    never talks to systemd as us."""
    env = {**os.environ, "EDGEMATE_STRESS_PARENT": str(os.getpid())}
    env.pop("NOTIFY_SOCKET", None)
    return env


def stop_processes(procs: list[subprocess.Popen], timeout_s: float) -> None:
    """Terminate them all, then wait; whoever is still there after timeout_s is killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU of this process (all threads), or of its waited-for children."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LoadWorkers:
    """N busy-loop processes at normal priority (what a browser on the same box would be)."""

    def __init__(self, count: int):
        self.count = count
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        env = child_env()
        for _ in range(self.count):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", BURN_CODE], env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        log.info("CPU load: %d busy-loop workers started", self.count)

    def stop(self) -> None:
        procs, self.procs = self.procs, []
        stop_processes(procs, 2.0)
        if procs:
            log.info("CPU load: workers stopped")

    @property
    def running(self) -> int:
        return sum(proc.poll() is None for proc in self.procs)
