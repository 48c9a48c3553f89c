"""The service's status: what `edgemate status`, GET /status, STATUS= and /metrics show.

One frozen dataclass, read by attribute everywhere; `as_dict()` is the JSON of GET /status
(field names are its keys, an API: add fields, never rename them).
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceStatus:
    version: str
    pid: int
    state: str  # starting, running, reloading, stopping, stopped
    uptime_s: float
    level: str | None = None
    fps: float = 0.0
    frames_shown: int = 0
    drops: int = 0
    preempted: int = 0
    mouth_missing: int = 0
    temperature_c: float | None = None
    throttled: tuple[str, ...] = ()
    cpu_other_percent: float | None = None
    governor: dict | None = None
    quality_switches: int | None = None
    time_at_level_s: dict | None = None
    source: str | None = None
    pushed: str | None = None
    sink: str | None = None
    sink_note: str | None = None
    display_path: str | None = None
    clock: str | None = None
    max_av_offset_ms: float = 0.0
    recent_max_av_offset_ms: float = 0.0
    barge_ins: int = 0
    barge_in_latency_ms: float | None = None
    reloads: int = 0
    reload_failures: int = 0
    says: int = 0
    says_rejected: int = 0
    config: tuple[str, ...] = ()
    last_error: str | None = None
    # this process (runtime/service/health.py process_usage)
    rss_mb: float | None = None
    private_mb: float | None = None
    heap_in_use_mb: float | None = None
    heap_free_mb: float | None = None
    python_blocks: int | None = None
    open_fds: int | None = None
    threads: int | None = None

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["throttled"], out["config"] = list(self.throttled), list(self.config)
        return out


@dataclass
class Totals:
    """Counts over every appliance this service ran (reloads start a new one). Control
    threads count requests while the frame thread's appliance is accounted: one lock."""

    frames_shown: int = 0
    frames_dropped: int = 0
    frames_preempted: int = 0
    barge_ins: int = 0
    reloads: int = 0
    reload_failures: int = 0
    says: int = 0
    says_rejected: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count(self, name: str, n: int = 1) -> int:
        """Add n to the named count; returns the new value."""
        with self._lock:
            value = getattr(self, name) + n
            setattr(self, name, value)
            return value
