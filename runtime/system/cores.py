"""How many cores this process may use."""
from __future__ import annotations

import os


def allowed_cores() -> int:
    """The cores this process may run on, not the machine's (under `taskset -c 1`, one;
    children inherit the affinity). macOS has no affinity call: all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
