"""The local control socket: HTTP/1.1 over a unix socket (and loopback TCP if configured).

    POST /say     one utterance: a WAV body, or raw PCM with ?rate=&format=&channels=
                  (Content-Length or chunked). It is decoded into the appliance's pushed-
                  speech queue, the same StreamSource path as the `stream` source.
    POST /stop    barge-in; answers once the mouth is closed on screen, with the latency.
    GET  /status  JSON health: level, fps, drops, temperature, source, uptime, last error.
    GET  /metrics Prometheus text format.

Each connection is served in its own thread, never in the frame loop. The socket file is
mode `control.socket_mode` (0660) and every peer's credentials (SO_PEERCRED) are checked:
root, our own user, or a member of our group. A malformed request gets a 4xx with the
reason and changes nothing else; a body over the limits gets 413.
"""
from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from runtime.config.schema import ControlConfig
from runtime.system.unix_socket import ensure_socket_dir, remove_stale_socket
from runtime.system.peer_access import peer_allowed

from .control_access import ClientLimits
from .control_http import BadRequest, ChunkedReader, LimitedReader, LengthReader, wav_header
from .metrics import prometheus_text

log = logging.getLogger(__name__)

#: How long POST /stop waits for the closed mouth to be shown before answering anyway.
_STOP_WAIT_S = 0.5
#: A refused body is read and dropped up to this much, so the client gets our answer.
_DRAIN_BYTES = 8 * 2**20
_DRAIN_S = 2.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgemate"
    server: _Server

    # -- plumbing ---------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.settings.client_idle_timeout_s)

    def handle(self) -> None:
        allowed, who = peer_allowed(self.connection)
        if not allowed:
            log.warning("control: refused %s (not root, our user or in our group)", who)
            self.close_connection = True
            with contextlib.suppress(OSError):
                # The request line, so the reply is read; what send_response() expects of
                # a parsed request.
                self.requestline = self.rfile.readline(65537).decode("latin-1").strip()
                self.request_version, self.command = "HTTP/1.1", ""
                self._reply(403, {"error": "forbidden: not root, the service user or its group"})
            return
        super().handle()

    def address_string(self) -> str:
        return "local" if isinstance(self.client_address, (str, bytes)) else self.client_address[0]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.debug("control: %s %s", self.address_string(), format % args)

    def _reply(self, code: int, body: dict | str, content_type: str = "application/json") -> None:
        data = (json.dumps(body) + "\n" if isinstance(body, dict) else body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")  # one request per connection: simple, bounded
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        routes = {("GET", "/status"): self._status, ("GET", "/metrics"): self._metrics,
                  ("POST", "/say"): self._say, ("POST", "/stop"): self._stop}
        handler = routes.get((method, url.path))
        if handler is None:
            known = {path for _, path in routes}
            code = 405 if url.path in known else 404
            self._reply(code, {"error": f"{method} {url.path}: use GET /status, GET /metrics, "
                               "POST /say or POST /stop"})
            return
        try:
            handler(parse_qs(url.query, keep_blank_values=True))
        except BadRequest as err:
            self._drain()
            self._reply(err.code, {"error": str(err)})

    def _drain(self) -> None:
        """Read (and drop) a refused body, up to a bound: a client still sending it would
        otherwise get EPIPE instead of our reason."""
        if getattr(self, "_refused_unread", False):
            return  # refused by its declared size: nothing of it is read
        body = getattr(self, "_body_reader", None)
        if body is None:
            try:
                body = self._body()
            except BadRequest:
                return
        deadline, left = time.monotonic() + _DRAIN_S, _DRAIN_BYTES
        with contextlib.suppress(OSError, ValueError):
            while left > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Each read waits at most what is left of the drain, not the idle timeout.
                self.connection.settimeout(remaining)
                data = body.read(min(65536, left))
                if not data:
                    break
                left -= len(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    # -- endpoints --------------------------------------------------------------------
    def _status(self, query: dict) -> None:
        self._reply(200, self.server.service.status().as_dict())

    def _metrics(self, query: dict) -> None:
        self._reply(200, prometheus_text(self.server.service.status()),
                    "text/plain; version=0.0.4; charset=utf-8")

    def _stop(self, query: dict) -> None:
        arrived = time.monotonic()
        controls = self.server.service.controls()
        if controls is None:
            raise BadRequest("the appliance is not running yet", 503)
        latency_ms = controls.stop_speaking(arrived, _STOP_WAIT_S)
        self._reply(200, {"stopped": True, "mouth_closed_after_ms": latency_ms})

    def _say(self, query: dict) -> None:
        service, settings = self.server.service, self.server.settings
        number = service.totals.count("says")
        try:
            body = self._body_reader = self._body()
            stream, bytes_per_s, declared = self._speech_stream(body, query)
            limit = int(min(settings.max_body_mb * 2**20, settings.max_say_s * bytes_per_s))
            if declared is not None and declared > limit:
                raise BadRequest(f"{declared / bytes_per_s:.1f} s of audio is over the limit "
                                 f"({settings.max_say_s:g} s, {settings.max_body_mb:g} MB)", 413)
            controls = service.controls()
            if controls is None:
                raise BadRequest("the appliance is not running yet", 503)
        except BadRequest:
            service.totals.count("says_rejected")
            raise
        limited = LimitedReader(stream.body, limit)
        stream.body = limited

        def abort() -> None:
            # Barge-in while the body still arrives: unblock our read; the reply still goes out.
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RD)

        ident = controls.say(stream, label=f"say #{number}", abort=abort)
        if not ident:  # the appliance stopped (or reloaded) before this one's turn came
            service.totals.count("says_rejected")
            raise BadRequest("the appliance stopped before this speech could play", 503)
        seconds = round(limited.count / bytes_per_s, 2)
        if limited.truncated:
            service.totals.count("says_rejected")
            raise BadRequest(f"cut at the limit after {seconds} s ({settings.max_say_s:g} s, "
                             f"{settings.max_body_mb:g} MB)", 413)
        if body.error is not None:
            raise BadRequest(f"body ended early: {body.error}")
        self._reply(200, {"utterance": ident, "seconds": seconds})

    def _body(self):
        encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        if encoding == "chunked":
            return ChunkedReader(self.rfile)
        if encoding:
            raise BadRequest(f"Transfer-Encoding {encoding!r} is not supported (chunked only)", 501)
        length = self.headers.get("Content-Length")
        if length is None:
            raise BadRequest("a body with Content-Length or chunked encoding is needed", 411)
        if not length.isascii() or not length.isdigit():
            raise BadRequest(f"bad Content-Length {length[:40]!r}")
        limit = int(self.server.settings.max_body_mb * 2**20)
        # Refused before it is read (and before int() meets 4,400 digits it cannot parse).
        if len(length.lstrip("0")) > len(str(limit)) or int(length) > limit:
            self._refused_unread = True
            raise BadRequest(f"Content-Length {length[:20]}{'...' if len(length) > 20 else ''} "
                             f"is over the limit of {self.server.settings.max_body_mb:g} MB", 413)
        if int(length) == 0:
            raise BadRequest("empty body: send a WAV file or raw PCM")
        return LengthReader(self.rfile, int(length))

    def _speech_stream(self, body, query: dict):
        """A WAV stream for StreamSource.feed (raw PCM gets a header), its byte rate and its
        declared data size (None: read to the end)."""
        from runtime.audio.pcm import RAW_FORMATS, check_format
        from runtime.audio.wav import MAX_RATE, MIN_RATE, WavError, read_wav_header
        if "rate" in query or "format" in query or "channels" in query:
            try:
                rate = int(query.get("rate", [""])[0])
                fmt = query.get("format", ["s16le"])[0]
                channels = int(query.get("channels", ["1"])[0])
            except ValueError:
                raise BadRequest("rate and channels must be integers") from None
            if not MIN_RATE <= rate <= MAX_RATE:
                raise BadRequest(f"rate {rate}: allowed {MIN_RATE} to {MAX_RATE}")
            if fmt not in RAW_FORMATS or channels not in (1, 2):
                raise BadRequest(f"format {fmt!r} / channels {channels}: allowed formats "
                                 f"{', '.join(RAW_FORMATS)}, channels 1 or 2")
            check_format(fmt, channels)
            from runtime.audio.pcm import SAMPLE_WIDTHS
            frame_bytes, declared = SAMPLE_WIDTHS[fmt] * channels, None
        else:
            try:
                wav_format, declared = read_wav_header(body, "request body")
            except WavError as err:
                hint = " (raw PCM needs ?rate=...&format=...)" if "not a RIFF" in str(err) else ""
                raise BadRequest(f"{err}{hint}") from None
            rate, fmt, channels = wav_format.rate, wav_format.sample_format, wav_format.channels
            frame_bytes = wav_format.frame_bytes
        return _Stream(wav_header(rate, fmt, channels), body), rate * frame_bytes, declared


class _Stream:
    """A canonical WAV header, then the body (which the size limit may replace)."""

    def __init__(self, header: bytes, body) -> None:
        self.header, self.body = header, body

    def read(self, count: int = -1) -> bytes:
        if self.header:
            part = self.header if count < 0 else self.header[:count]
            self.header = self.header[len(part):]
            return part
        return self.body.read(count)


class _Quiet:
    def handle_error(self, request, client_address) -> None:
        # socketserver prints a traceback to stderr; a client that hung up mid-request
        # (a TTS engine that died) is routine: one line in the log.
        import sys
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.info("control: client went away (%s)", error)
        else:
            log.exception("control: request failed")


class _Server(_Quiet, ClientLimits, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True  # a stuck client must not hold up shutdown
    block_on_close = False
    request_queue_size = 64  # connections waiting for accept (was socketserver's 5)

    def __init__(self, path: str, service, settings: ControlConfig) -> None:
        self.service, self.settings = service, settings
        self._init_limits()
        super().__init__(path, _Handler)


class _TcpServer(_Quiet, ClientLimits, socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple, service, settings: ControlConfig) -> None:
        self.service, self.settings = service, settings
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._init_limits()
        super().__init__(address, _Handler)


class ControlServer:
    """Owns the listening sockets and their threads; start() / close()."""

    def __init__(self, service, settings: ControlConfig) -> None:
        self.service, self.settings = service, settings
        self.path = Path(settings.socket)
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self._inode: int | None = None
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None

    def _bind_unix(self) -> socketserver.BaseServer:
        ensure_socket_dir(self.path)  # a tidy-up may have taken the directory too
        remove_stale_socket(self.path)
        server = _Server(str(self.path), self.service, self.settings)
        os.chmod(self.path, self.settings.socket_mode)
        self._inode = os.stat(self.path).st_ino
        return server

    def _serve(self, server: socketserver.BaseServer) -> None:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="edgemate-control", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch(self) -> None:
        """A deleted socket file (a tidy-up script, rm -r /run/edgemate/*) would leave the
        appliance unreachable: bind it again within a second."""
        while not self._watching.wait(1.0):
            try:
                same = os.lstat(self.path).st_ino == self._inode
            except OSError:
                same = False
            if same:
                continue
            log.warning("control socket %s was removed or replaced: creating it again", self.path)
            try:
                server = self._bind_unix()
            except OSError as err:
                log.error("control socket %s: cannot create it again (%s); it stays away",
                          self.path, err)
                return
            old, self._servers[0] = self._servers[0], server
            old.shutdown()
            old.server_close()
            self._serve(server)

    def start(self) -> None:
        server = self._bind_unix()
        self._servers.append(server)
        log.info("control socket: %s (mode %04o, group %s)", self.path, self.settings.socket_mode,
                 _group_name(os.getegid()))
        if self.settings.tcp_port is not None:
            tcp = _TcpServer((self.settings.tcp_host, self.settings.tcp_port), self.service,
                             self.settings)
            self._servers.append(tcp)
            log.warning("control: also on tcp %s:%d (loopback; any local user can connect)",
                        self.settings.tcp_host, self.settings.tcp_port)
        for server in self._servers:
            self._serve(server)
        self._watching.clear()
        self._watcher = threading.Thread(target=self._watch, name="edgemate-control-watch",
                                         daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._watching.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2.0)
            self._watcher = None
        for server in self._servers:
            server.shutdown()  # returns within poll_interval
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=1.0)
        self._servers, self._threads = [], []
        with contextlib.suppress(OSError):
            # Only our own socket: a new instance may already have bound the same path.
            if os.lstat(self.path).st_ino == self._inode:
                self.path.unlink()


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


