"""Who may use the control socket, and how many at once.

Who: runtime/system/peer_access.py (the speech socket asks the same question).
ClientLimits: caps on connections served at once, overall and per uid, and a reserve of
file descriptors for the pipeline, so idle or half-open clients cannot starve it.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time

from runtime.system.peer_access import peer_credentials

log = logging.getLogger(__name__)


#: Descriptors kept free for the pipeline (playlist files, sensors, the recorder, ncnn):
#: no new client is served while fewer than this are left below the process's limit.
FD_RESERVE = 64


#: Where this process's open descriptors are listed: Linux's /proc, else /dev/fd (macOS
#: has no /proc; its /dev/fd lists them all). launchd's default soft limit is only 256.
_FD_DIRS = ("/proc/self/fd", "/dev/fd")


def fds_left(fd_dirs: tuple[str, ...] = _FD_DIRS) -> int | None:
    """Descriptors left below the soft limit, or None where they cannot be counted."""
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError, ImportError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    for fd_dir in fd_dirs:
        try:
            return soft - len(os.listdir(fd_dir))
        except OSError:
            continue
    return None


class ClientLimits:
    """At most settings.max_clients connections served at once, max_clients_per_user per
    uid, and none while the descriptor reserve is reached: the rest get 503 at once, on
    the accept thread, without a thread of their own."""

    def _init_limits(self) -> None:
        self._clients: dict[object, str] = {}  # request -> peer key
        self._clients_lock = threading.Lock()

    def _peer_key(self, request) -> str:
        creds = peer_credentials(request) if isinstance(request, socket.socket) else None
        return "tcp" if creds is None else f"uid {creds[1]}"

    def process_request(self, request, client_address) -> None:
        key = self._peer_key(request)
        left = fds_left()
        with self._clients_lock:
            same = sum(1 for peer in self._clients.values() if peer == key)
            if len(self._clients) >= self.settings.max_clients:
                reason = f"{self.settings.max_clients} clients are connected"
            elif same >= self.settings.max_clients_per_user:
                reason = f"{key} has {same} connections open"
            elif left is not None and left <= FD_RESERVE:
                reason = "file descriptors are running out"
            else:
                reason = None
                self._clients[request] = key
        if reason is not None:
            self._refuse(request, reason)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._clients_lock:
                self._clients.pop(request, None)

    def _refuse(self, request, reason: str) -> None:
        log.warning("control: refused a connection: %s", reason)
        body = (json.dumps({"error": f"busy: {reason}; try again later"}) + "\n").encode()
        with contextlib.suppress(OSError):
            request.settimeout(0.02)  # never wait long on a client: this is the accept thread
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
                            b"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "
                            + str(len(body)).encode() + b"\r\n\r\n" + body)
            # Closing with the request unread would send a reset that can destroy the answer
            # before the client reads it: end our side, take what has arrived, then close.
            request.shutdown(socket.SHUT_WR)
            request.setblocking(False)  # what has arrived, without waiting: a flood of
            request.recv(65536)  # refused connections must not slow the accept thread
        self.shutdown_request(request)

    def get_request(self):
        try:
            return super().get_request()
        except OSError as err:
            if err.errno in (errno.EMFILE, errno.ENFILE):
                # Out of descriptors: the listening socket stays readable, so without a
                # pause the accept loop would spin at 100% CPU.
                log.warning("control: cannot accept a client: %s", err.strerror)
                time.sleep(0.1)
            raise
