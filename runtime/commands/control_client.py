"""`edgemate say FILE.wav`, `edgemate stop`, `edgemate status`: clients of the control socket.

The socket is found from --socket, $EDGEMATE_CONTROL_SOCKET, the config's control.socket
(relative: /run/edgemate under systemd, /tmp/edgemate under the Mac's LaunchAgent, else the
temp directory), in that order; --tcp PORT talks to a loopback TCP port instead (only if the
service was configured with one).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import BinaryIO


#: Where systemd's RuntimeDirectory=edgemate puts the socket; a user shell has no
#: $RUNTIME_DIRECTORY, so it is looked for here first.
SYSTEMD_RUNTIME_DIR = Path("/run/edgemate")
#: RUNTIME_DIRECTORY of the Mac's LaunchAgent (systemd/com.edgemate.appliance.plist); looked
#: at on macOS only: elsewhere nothing of ours lives in a world-writable /tmp directory.
LAUNCH_AGENT_RUNTIME_DIR = Path("/tmp/edgemate")


def service_runtime_dirs() -> tuple[Path, ...]:
    """Where the shipped service definitions of this OS put the sockets, in order."""
    if sys.platform == "darwin":
        return (LAUNCH_AGENT_RUNTIME_DIR,)
    return (SYSTEMD_RUNTIME_DIR,)


class ClientError(Exception):
    """One line for the user: the appliance is unreachable or refused the request."""


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix stream socket (the control socket)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        # A unix socket whose listen queue is full answers EAGAIN at once (it does not wait
        # like TCP): try again for a while, as a busy TCP server would be waited for.
        deadline = time.monotonic() + (self.timeout or 10.0)
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            try:
                self.sock.connect(self._path)
                return
            except BlockingIOError:
                self.sock.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)


def add_client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE|PROFILE",
                        help="config naming control.socket (default: the default profile)")
    parser.add_argument("--socket", type=Path, help="control socket path")
    parser.add_argument("--tcp", type=int, metavar="PORT", help="loopback TCP port instead")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")


def socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return args.socket
    env = os.environ.get("EDGEMATE_CONTROL_SOCKET")
    if env:
        return Path(env)
    from runtime.config.loader import load_config
    configured = Path(load_config(args.config).control.socket)
    # A relative control.socket was resolved against this shell's runtime dir; the service
    # resolved it against its own (/run/edgemate, a Mac's /tmp/edgemate): prefer that one
    # when it exists.
    if not os.environ.get("RUNTIME_DIRECTORY"):
        for directory in service_runtime_dirs():
            if _present(directory / configured.name):
                return directory / configured.name
    return configured


def _present(path: Path) -> bool:
    """Whether `path` exists. A directory we may not enter (/run/edgemate is 0750) counts as
    holding it: connecting then says "permission denied" and how to get in."""
    try:
        return path.exists()
    except PermissionError:
        return path.parent.exists()


def _how_to_get_in() -> str:
    if sys.platform == "darwin":  # no service group there: the LaunchAgent runs as its user
        return "run it as the user the LaunchAgent runs as, or widen control.socket_mode"
    return "join the service's group, e.g. `sudo usermod -aG edgemate $USER`"


def exchange(connection: http.client.HTTPConnection, method: str, path: str,
             body: BinaryIO | bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    """One request on `connection` (closed afterwards): (status, body). Chunked when the
    headers ask for it, so a WAV can stream while it is being made."""
    try:
        connection.request(method, path, body=body, headers=headers or {},
                           encode_chunked=bool(headers and "Transfer-Encoding" in headers))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def request(args: argparse.Namespace, method: str, path: str, body: BinaryIO | bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes]:
    if args.tcp:
        connection = http.client.HTTPConnection("127.0.0.1", args.tcp, timeout=args.timeout)
        where = f"127.0.0.1:{args.tcp}"
    else:
        target = socket_path(args)
        connection = UnixHTTPConnection(str(target), args.timeout)
        where = str(target)
    try:
        return exchange(connection, method, path, body, headers)
    except (FileNotFoundError, ConnectionRefusedError):
        raise ClientError(f"no appliance listening at {where} (is `edgemate run` running?)") \
            from None
    except PermissionError:
        raise ClientError(f"{where}: permission denied ({_how_to_get_in()})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ClientError(f"{where}: {exc}") from None


def _answer(status: int, data: bytes) -> dict:
    try:
        doc = json.loads(data or b"{}")
    except ValueError:
        doc = {"error": data.decode("utf-8", "replace").strip()}
    if status >= 400:
        raise ClientError(f"refused ({status}): {doc.get('error', 'no reason given')}")
    return doc


def cmd_say(args: argparse.Namespace) -> int:
    query = ""
    if args.rate:
        query = f"?rate={args.rate}&format={args.format}&channels={args.channels}"
    if str(args.file) == "-":
        stream = sys.stdin.buffer
        headers = {"Transfer-Encoding": "chunked", "Content-Type": "audio/wav"}
        doc = _answer(*request(args, "POST", "/say" + query, _chunks(stream), headers))
    else:
        try:
            handle = open(args.file, "rb")
        except OSError as exc:
            raise ClientError(f"{args.file}: {exc.strerror}") from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            headers = {"Content-Length": str(size), "Content-Type": "audio/wav"}
            doc = _answer(*request(args, "POST", "/say" + query, handle, headers))
    print(f"said utterance {doc.get('utterance')} ({doc.get('seconds')} s)")
    return 0


def _chunks(stream: BinaryIO, size: int = 8192):
    # A generator body makes http.client send each piece as one chunk as it is read.
    while True:
        data = stream.read1(size) if hasattr(stream, "read1") else stream.read(size)
        if not data:
            return
        yield data


def cmd_stop(args: argparse.Namespace) -> int:
    doc = _answer(*request(args, "POST", "/stop"))
    latency = doc.get("mouth_closed_after_ms")
    print("stopped" + (f"; mouth closed {latency:.0f} ms after the request"
                       if latency is not None else ""))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if getattr(args, "metrics", False):
        status, data = request(args, "GET", "/metrics")
        if status >= 400:
            _answer(status, data)
        sys.stdout.write(data.decode())
        return 0
    doc = _answer(*request(args, "GET", "/status"))
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    temp = doc.get("temperature_c")
    print(f"state      {doc.get('state')} (pid {doc.get('pid')}, up {doc.get('uptime_s')} s)")
    print(f"picture    {doc.get('fps')} fps, level {doc.get('level')}, {doc.get('drops')} dropped "
          f"({doc.get('preempted')} pre-empted), "
          f"max offset {doc.get('recent_max_av_offset_ms')} ms (last 60 s)")
    print(f"source     {doc.get('source')}")
    print(f"display    {doc.get('sink')}" + (f" ({doc['sink_note']})" if doc.get("sink_note") else "")
          + (f", path {doc['display_path']}" if doc.get("display_path") else ""))
    print(f"sensors    {'no thermal sensor' if temp is None else f'{temp} C'}")
    private = doc.get("private_mb")
    print(f"memory     RSS {doc.get('rss_mb')} MB"
          + ("" if private is None else f" ({private} MB private)")
          + ("" if doc.get("heap_in_use_mb") is None else
             f"; C heap {doc['heap_in_use_mb']} MB in use, {doc['heap_free_mb']} MB freed and kept")
          + f"; {doc.get('open_fds')} fds")
    governor = doc.get("governor")
    if governor:  # render.quality: auto
        last = governor["switches"][-1] if governor["switches"] else None
        print(f"governor   {governor['switch_count']} switches"
              + (f", last at {last['t']} s: {last['from']} -> {last['to']} ({last['reason']})"
                 if last else "") + "; time at level " + ", ".join(
                  f"{level} {seconds:.0f} s"
                  for level, seconds in governor["time_at_level_s"].items()))
    print(f"last error {doc.get('last_error') or 'none'}")
    return 0


def add_parsers(sub) -> None:
    say = sub.add_parser("say", help="push speech to a running appliance (control socket)")
    say.add_argument("file", type=Path, help="WAV file (or raw PCM with --rate), - for stdin")
    say.add_argument("--rate", type=int, help="raw PCM: sample rate in Hz")
    say.add_argument("--format", default="s16le", help="raw PCM: s16le, s24le, s32le, f32le, u8")
    say.add_argument("--channels", type=int, default=1, help="raw PCM: 1 or 2")
    add_client_args(say)
    stop = sub.add_parser("stop", help="barge-in: stop the speech of a running appliance")
    add_client_args(stop)
    status = sub.add_parser("status", help="health of a running appliance")
    status.add_argument("--json", action="store_true", help="the full JSON document")
    status.add_argument("--metrics", action="store_true", help="Prometheus text instead")
    add_client_args(status)


def run_client(args: argparse.Namespace) -> int:
    commands = {"say": cmd_say, "stop": cmd_stop, "status": cmd_status}
    try:
        return commands[args.command](args)
    except ClientError as err:
        print(f"edgemate {args.command}: {err}", file=sys.stderr)
        return 1
