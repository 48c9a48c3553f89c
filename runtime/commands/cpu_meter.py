"""CPU that a frame costs outside this process: the encoder child (ffmpeg) and the display server.

`edgemate bench` reports what a kiosk pays for a frame, and with the record sink or an X
server a good part of it is paid by another process. On Linux both are read from /proc
(utime + stime of each process); elsewhere, or where /proc hides them, the figure is None
and the report says "not seen" rather than a zero.
"""
from __future__ import annotations

import os
from pathlib import Path

#: Process names (comm) of display servers whose CPU counts as the display's cost.
DISPLAY_SERVERS = ("Xvfb", "Xorg", "X", "Xwayland", "weston", "sway", "cage", "labwc", "mutter",
                   "kwin_wayland", "gnome-shell")
_PROC = Path("/proc")


def _ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100.0


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process, or None if it cannot be read."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The name in parentheses may hold spaces: the fields start after its closing one.
    fields = stat[stat.rindex(")") + 2:].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _ticks()
    except (IndexError, ValueError):
        return None


def child_pids(pid: int | None = None) -> list[int]:
    """Live children of `pid` (default this process), from every thread's children list."""
    pid = os.getpid() if pid is None else pid
    found: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return sorted(set(found))


def display_server_pids() -> list[int]:
    """Display server processes this user can see (an X server, a Wayland compositor)."""
    pids = []
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return pids
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if name in DISPLAY_SERVERS:
            pids.append(int(entry.name))
    return pids


class OtherProcessesCpu:
    """CPU seconds of this process's children and of the display server between start() and
    stop(). Call stop() before the sink closes (its encoder is still a live child then); a
    child that ended and was waited for in between counts through RUSAGE_CHILDREN."""

    def __init__(self) -> None:
        self._children: dict[int, float] = {}
        self._servers: dict[int, float] = {}
        self._reaped = 0.0
        #: Seconds over the run, None where they could not be seen (no /proc, no server).
        self.children_s: float | None = None
        self.display_server_s: float | None = None

    def start(self) -> None:
        from .load_workers import cpu_seconds
        self._reaped = cpu_seconds(children=True)
        self._children = _read(child_pids())
        self._servers = _read(display_server_pids())

    def stop(self) -> None:
        from .load_workers import cpu_seconds
        reaped = cpu_seconds(children=True) - self._reaped
        if _PROC.exists():
            now = _read(child_pids())
            self.children_s = round(sum(seconds - self._children.get(pid, 0.0)
                                        for pid, seconds in now.items()) + reaped, 3)
        servers = _read(list(self._servers))
        self.display_server_s = (round(sum(servers[p] - self._servers[p] for p in servers), 3)
                                 if servers else None)


def _read(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        seconds = process_cpu_s(pid)
        if seconds is not None:
            out[pid] = seconds
    return out
