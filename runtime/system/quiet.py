"""Silence C libraries that print to stderr directly (PortAudio/ALSA probing, libwayland)."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Point fd 2 at /dev/null for the block; the errors that matter come back as exceptions."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (some service managers): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
