"""Health readings: private memory and the allocator's own account, which together tell a
leak (in-use memory grows) from fragmentation (freed memory kept, given back by a trim)."""
from __future__ import annotations

import ctypes
import sys

import pytest

from runtime.service import health
from runtime.service.metrics import prometheus_text
from runtime.service.status import ServiceStatus

GLIBC = health._LIBC is not None


def test_private_memory_reads_rss_anon(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tedgemate\nVmRSS:\t  600000 kB\nRssAnon:\t   94208 kB\nRssFile:\t 500000 kB\n")
    assert health.private_mb(str(status)) == 92.0


@pytest.mark.parametrize("text", ["", "RssAnon:\n", "RssAnon:\tlots kB\n"])
def test_private_memory_of_an_unreadable_status_is_none(tmp_path, text):
    status = tmp_path / "status"
    status.write_text(text)
    assert health.private_mb(str(status)) is None
    assert health.private_mb(str(tmp_path / "missing")) is None


@pytest.mark.skipif(not GLIBC, reason="mallinfo2/malloc_trim are glibc's")
def test_heap_in_use_follows_allocations_and_trim_gives_freed_memory_back():
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = health.heap_usage()["heap_in_use_mb"]
    # Many small blocks (below any mmap threshold): heap, not mmap'd chunks. The last one,
    # from the heap's top, stays: it keeps glibc from trimming the top on its own.
    blocks = [libc.malloc(4096) for _ in range(4097)]
    pin = blocks.pop()
    try:
        during = health.heap_usage()["heap_in_use_mb"]
        assert during - before >= 15  # 16 MB handed out
    finally:
        for block in blocks:
            libc.free(block)
    try:
        _freed_then_trimmed(before)
    finally:
        libc.free(pin)


def _freed_then_trimmed(before: float) -> None:
    after = health.heap_usage()
    assert after["heap_in_use_mb"] - before < 2 and after["heap_free_mb"] >= 10
    if health.private_mb() is None:
        return
    resident = health.private_mb()
    health.trim_heap()
    # The freed 16 MB stay on the allocator's free list, but their pages go back to the OS.
    assert resident - health.private_mb() >= 10


def test_usage_has_every_key_and_metrics_print_them():
    usage = health.process_usage()
    for key in ("rss_mb", "private_mb", "open_fds", "threads", "heap_in_use_mb", "heap_free_mb",
                "python_blocks"):
        assert key in usage
    assert usage["python_blocks"] == pytest.approx(sys.getallocatedblocks(), rel=0.5)
    text = prometheus_text(ServiceStatus(version="test", pid=1, state="running", uptime_s=1.0, **usage))
    assert "edgemate_python_allocated_blocks" in text
    if GLIBC:
        assert "# TYPE edgemate_heap_in_use_megabytes gauge" in text
    if sys.platform.startswith("linux"):
        assert "edgemate_private_memory_megabytes" in text


def test_without_glibc_the_heap_readings_are_none_and_trim_does_nothing(monkeypatch):
    monkeypatch.setattr(health, "_LIBC", None)
    usage = health.heap_usage()
    assert usage["heap_in_use_mb"] is None and usage["heap_free_mb"] is None
    assert health.trim_heap() is False
    status = ServiceStatus(version="test", pid=1, state="running", uptime_s=1.0, **usage)
    assert "edgemate_heap_in_use_megabytes" not in prometheus_text(status)
