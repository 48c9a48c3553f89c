"""Claiming a unix socket path that a crashed run may have left behind."""
from __future__ import annotations

import os
import socket
import stat
from pathlib import Path


def remove_stale_socket(path: Path) -> None:
    """Unlink `path` if it is a socket nobody listens on; OSError if it is anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: left over from a crash
        return
    finally:
        probe.close()
    raise OSError(f"{path} is in use by another process")
