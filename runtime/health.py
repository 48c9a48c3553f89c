"""Health readings for status and metrics: SoC temperature, this process's RSS, fds, threads.

Every reading copes with what is missing: many x86 VMs have no thermal zones, macOS has no
sensors in psutil, and /proc exists only on Linux.
"""
from __future__ import annotations

import glob
import logging

log = logging.getLogger(__name__)

_THERMAL_GLOB = "/sys/class/thermal/thermal_zone*/temp"


def read_temperature_c(pattern: str = _THERMAL_GLOB) -> float | None:
    """The hottest thermal zone in degrees C, or None when there is no sensor."""
    readings = []
    for path in glob.glob(pattern):
        try:
            with open(path) as handle:
                readings.append(int(handle.read().strip()) / 1000.0)  # millidegrees
        except (OSError, ValueError):
            continue  # a zone that cannot be read right now (some ACPI zones): skip it
    if readings:
        return round(max(readings), 1)
    try:
        import psutil
        sensors = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
    except (OSError, RuntimeError):
        return None
    values = [entry.current for entries in sensors.values() for entry in entries
              if entry.current is not None]
    return round(max(values), 1) if values else None


def process_usage() -> dict:
    """{rss_mb, open_fds, threads} of this process (None where the OS cannot tell)."""
    try:
        import psutil
        process = psutil.Process()
        with process.oneshot():
            rss = process.memory_info().rss
            fds = process.num_fds() if hasattr(process, "num_fds") else None
            threads = process.num_threads()
        return {"rss_mb": round(rss / 2**20, 1), "open_fds": fds, "threads": threads}
    except (ImportError, OSError) as exc:
        log.debug("process usage unavailable: %s", exc)
        return {"rss_mb": None, "open_fds": None, "threads": None}

