"""systemd's notify protocol in the standard library: READY, STATUS, WATCHDOG, STOPPING.

One datagram per message to the AF_UNIX socket in $NOTIFY_SOCKET (a leading "@" names the
abstract namespace). Outside systemd (no $NOTIFY_SOCKET) every call does nothing.

Taking the settings pops NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from os.environ:
children (the spawned mic capture, ffmpeg) must not inherit them, or their own messages
would be taken for ours and a dying child could confuse the watchdog.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping

log = logging.getLogger(__name__)

_ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends notify messages; `enabled` is False (and every call a no-op) outside systemd.

    `watchdog_interval_s` is half of WATCHDOG_USEC (None when systemd set no watchdog, or
    set it for another PID): ping at least that often, and only while frames advance.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._address: str | bytes | None = None
        self._socket: socket.socket | None = None
        self.watchdog_interval_s: float | None = None
        self._last_ping: float | None = None
        self.failures = 0
        if address:
            # "@name" = the abstract namespace: a leading NUL byte on the wire.
            self._address = "\0" + address[1:] if address.startswith("@") else address
            # SOCK_CLOEXEC is Linux-only (not in macOS's socket module); Python makes every
            # socket non-inheritable anyway (PEP 446), the flag only closes a race at creation.
            kind = socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0)
            self._socket = socket.socket(socket.AF_UNIX, kind)
            # Never block the frame loop on a full socket buffer: drop the message instead.
            self._socket.setblocking(False)
            if watchdog_usec and watchdog_usec > 0:
                self.watchdog_interval_s = watchdog_usec / 2e6

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read and remove the notify settings from `environ` (default: os.environ)."""
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None)
        usec_text = env.pop("WATCHDOG_USEC", None)
        pid_text = env.pop("WATCHDOG_PID", None)
        usec = None
        try:
            usec = int(usec_text) if usec_text else None
            # The watchdog is for one PID; one meant for a parent is not ours to ping.
            if pid_text and int(pid_text) != os.getpid():
                usec = None
        except ValueError:
            log.warning("ignoring malformed watchdog settings %r / %r", usec_text, pid_text)
            usec = None
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *fields: str) -> bool:
        """Send one message of KEY=VALUE lines; False if it could not be sent (or disabled)."""
        if self._socket is None:
            return False
        try:
            self._socket.sendto("\n".join(fields).encode("utf-8", "replace"), self._address)
            return True
        except OSError as exc:
            # systemd gone or its queue full: the service goes on; say so once in a while.
            self.failures += 1
            if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
                log.warning("sd_notify to %r failed (%s; %d failures)", self._address,
                            exc.strerror or exc, self.failures)
            return False

    def ready(self, status: str | None = None) -> bool:
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        return self.notify(*fields, *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        if self._socket is None:  # launchd, a shell: nothing to tell (and no clock to read)
            return False
        # MONOTONIC_USEC lets systemd 253+ (Type=notify-reload) match the reload; older ignore it.
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={' '.join(text.split())}")

    def watchdog(self) -> bool:
        """Ping now (call only when the frame loop made progress)."""
        self._last_ping = self._clock()
        return self.notify("WATCHDOG=1")

    def watchdog_due(self) -> bool:
        """True when a ping is due (half the watchdog period since the last)."""
        if self._socket is None or self.watchdog_interval_s is None:
            return False
        return self._last_ping is None or \
            self._clock() - self._last_ping >= self.watchdog_interval_s

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
