"""Health readings for status and metrics: SoC temperature, this process's memory, fds, threads.

Every reading copes with what is missing: many x86 VMs have no thermal zones, macOS has no
sensors in psutil, /proc exists only on Linux, and the allocator statistics only with glibc.
"""
from __future__ import annotations

import ctypes
import glob
import logging
import sys

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
    """{rss_mb, private_mb, open_fds, threads} of this process, and the allocator readings of
    `heap_usage` (None where the OS cannot tell)."""
    usage = {"rss_mb": None, "private_mb": private_mb(), "open_fds": None, "threads": None}
    try:
        import psutil
    except ImportError as exc:
        log.debug("process usage unavailable: %s", exc)
        psutil = None
    if psutil is not None:
        try:
            process = psutil.Process()
            with process.oneshot():
                rss = process.memory_info().rss
                fds = process.num_fds() if hasattr(process, "num_fds") else None
                threads = process.num_threads()
            usage.update(rss_mb=round(rss / 2**20, 1), open_fds=fds, threads=threads)
        except (OSError, psutil.Error) as exc:  # psutil.Error is no OSError (AccessDenied)
            log.debug("process usage unavailable: %s", exc)
    usage.update(heap_usage())
    return usage


def private_mb(status_path: str = "/proc/self/status") -> float | None:
    """Anonymous resident memory (heap, stacks, buffers), where a leak shows. Total RSS also
    counts the pages of memory-mapped files (the decoded template loop, ~550 MB for the
    default avatar), which come and go with the page cache and say nothing about leaks."""
    try:
        with open(status_path) as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None  # not Linux


class _MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (2.33+): every field a size_t."""
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc():
    """The C library when it is glibc with mallinfo2 and malloc_trim, else None (musl, macOS)."""
    try:
        libc = ctypes.CDLL(None)
        mallinfo2, malloc_trim = libc.mallinfo2, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    mallinfo2.argtypes = []
    malloc_trim.restype = ctypes.c_int
    malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


_LIBC = _glibc()


def heap_usage() -> dict:
    """What the C allocator holds, which tells a leak from fragmentation:
    - `heap_in_use_mb`: blocks handed out, mmap'd ones included; grows with a leak;
    - `heap_free_mb`: freed blocks the allocator keeps for reuse; saws with fragmentation
      (`trim_heap` returns their pages to the OS, though they stay counted here);
    - `python_blocks`: Python objects' small blocks; grows with a Python-level leak.
    The C readings are None without glibc."""
    usage = {"heap_in_use_mb": None, "heap_free_mb": None,
             "python_blocks": sys.getallocatedblocks()}
    if _LIBC is not None:
        # mallinfo2 walks the free lists under each arena's lock: 0.1 ms median, 1.2 ms max
        # in a running appliance with the default avatar. Only /status and /metrics call it.
        info = _LIBC.mallinfo2()
        usage["heap_in_use_mb"] = round((info.uordblks + info.hblkhd) / 2**20, 2)
        usage["heap_free_mb"] = round(info.fordblks / 2**20, 2)
    return usage


def trim_heap() -> bool:
    """Give the allocator's free pages back to the OS (glibc malloc_trim). Called after a
    reload has freed a whole pipeline: without it those pages stay resident as free heap until
    some later allocation reuses them. True when memory was released."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))

