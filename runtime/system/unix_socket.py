"""Claiming a unix socket path that a crashed run may have left behind."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def ensure_socket_dir(path: Path) -> None:
    """Create the directory that will hold socket `path` when it is missing. systemd makes
    /run/edgemate (RuntimeDirectory=); the Mac's LaunchAgent points RUNTIME_DIRECTORY at
    /tmp/edgemate, which macOS empties at boot. OSError if it cannot be made."""
    parent = Path(path).parent
    if parent.is_dir():
        return
    parent.mkdir(mode=0o755, parents=True, exist_ok=True)  # the socket's own mode guards it
    log.info("created the socket directory %s", parent)


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


class InstanceLock:
    """One appliance per socket path: an exclusive flock on PATH.lock, held for the run.

    A second `edgemate run` on the same sockets gets a one-line reason instead of starting
    beside the first (it could when the socket files were deleted: nobody listened on them).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(f"{path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """OSError naming the holder when another process has it."""
        import fcntl
        ensure_socket_dir(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OSError(f"another EdgeMate appliance uses these sockets ({self.path} is "
                          f"held by pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    self.path.unlink()
            os.close(self._fd)
            self._fd = None
