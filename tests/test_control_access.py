"""Who may use the control socket and how many at once: members of the service's group by
the group database (not the peer's /proc entry, which ProtectProc=invisible hides), caps on
connections overall and per uid (503 at once, no thread), and a descriptor reserve."""
from __future__ import annotations

import builtins
import grp
import os
import pwd
import socket
import tempfile
from pathlib import Path

import pytest

from runtime.service import control_access
from runtime.system import peer_access
from test_control import start_service, wait_for  # noqa: F401 - the fixture


def _ask(path, request=b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10.0) -> bytes:
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(timeout)
        raw.connect(str(path))
        try:
            raw.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a 503 may come (and the connection close) before the request is sent
        return raw.recv(300)


def _idle(path) -> socket.socket:
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(str(path))
    return raw


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_a_member_of_the_group_by_the_group_database_is_served_with_proc_hidden(
        start_service, monkeypatch):  # noqa: F811
    nobody = pwd.getpwuid(65534)
    ours = os.getegid()
    real_getgrgid, real_open = grp.getgrgid, builtins.open

    def getgrgid(gid):  # the group database after `usermod -aG <our group> nobody`
        entry = real_getgrgid(gid)
        if gid != ours:
            return entry
        return grp.struct_group((entry.gr_name, entry.gr_passwd, entry.gr_gid,
                                 [*entry.gr_mem, nobody.pw_name]))

    def open_hidden(path, *args, **kwargs):  # /proc mounted hidepid=invisible
        if str(path).startswith("/proc/") and str(path).endswith("/status") \
                and not str(path).startswith("/proc/self"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(peer_access.grp, "getgrgid", getgrgid)
    monkeypatch.setattr(builtins, "open", open_hidden)
    folder = Path(tempfile.mkdtemp(prefix="edgemate-peer-"))
    folder.chmod(0o755)
    service = start_service(f"control.socket={folder / 'control.sock'}")
    path = service.config.control.socket
    os.chmod(path, 0o666)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # nobody, with no supplementary group at all: only the database says member
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, _ask(path))
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    answer = os.read(read, 300)
    os.close(read)
    assert answer.startswith(b"HTTP/1.1 200"), answer


def test_connections_are_capped_overall_and_per_uid_with_503_at_once(start_service):  # noqa: F811
    service = start_service("control.max_clients=3", "control.max_clients_per_user=2",
                            "control.client_idle_timeout_s=60")
    path = service.config.control.socket
    idle = [_idle(path), _idle(path)]  # half-open clients: connected, silent
    try:
        wait_for(lambda: len(service.control._servers[0]._clients) == 2, 10.0)
        answer = _ask(path)
        assert answer.startswith(b"HTTP/1.1 503") and b"has 2 connections open" in answer
        idle.pop().close()
        wait_for(lambda: len(service.control._servers[0]._clients) == 1, 10.0)
        assert _ask(path).startswith(b"HTTP/1.1 200")
    finally:
        for raw in idle:
            raw.close()
    assert service.status().state == "running"


def test_no_client_is_served_when_the_descriptor_reserve_is_reached(start_service,  # noqa: F811
                                                                   monkeypatch):
    service = start_service()
    monkeypatch.setattr(control_access, "fds_left", lambda: control_access.FD_RESERVE - 1)
    answer = _ask(service.config.control.socket)
    assert answer.startswith(b"HTTP/1.1 503") and b"file descriptors are running out" in answer
    monkeypatch.setattr(control_access, "fds_left", lambda: 1000)
    assert _ask(service.config.control.socket).startswith(b"HTTP/1.1 200")


def test_fds_left_counts_below_the_soft_limit():
    left = control_access.fds_left()
    assert left is None or 0 < left < 1 << 31


def _raw_reply(path, head: bytes, body: bytes = b"", timeout=5.0) -> bytes:
    """The whole answer (the server closes after it); what we send may be cut short by it."""
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(timeout)
        raw.connect(str(path))
        try:
            raw.sendall(head + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before all was sent: the answer is still there to read
        answer = b""
        while True:
            part = raw.recv(4096)
            if not part:
                return answer
            answer += part


def test_content_length_is_judged_before_anything_is_read(start_service, caplog):  # noqa: F811
    service = start_service("control.client_idle_timeout_s=60")
    path = service.config.control.socket
    # 4,400 digits: beyond what int() parses; 100 GB: far over max_body_mb. Neither body is
    # sent: the answer must come at once, not after the idle timeout.
    for length in (b"9" * 4400, b"107374182400"):
        answer = _raw_reply(path, b"POST /say HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                            + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413") and b"over the limit of 32 MB" in answer
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("size", [b"0x2c", b"2_c", b"+2c", b""])
def test_chunk_sizes_are_hex_digits_only(start_service, size):  # noqa: F811
    service = start_service()
    answer = _raw_reply(service.config.control.socket,
                        b"POST /say?rate=16000 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                        b"\r\n\r\n" + size + b"\r\n" + b"\x00" * 44 + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"bad chunk size" in answer or b"body ended early" in answer


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_a_stranger_cannot_push_speech_on_an_open_speech_socket(tmp_path, caplog):
    import numpy as np

    from runtime.audio.source import SILENT
    from runtime.audio.stream import StreamSource
    folder = Path(tempfile.mkdtemp(prefix="edgemate-speech-"))
    folder.chmod(0o755)
    source = StreamSource(folder / "speech.sock", socket_mode=0o666, prebuffer_ms=0)
    source.open()
    try:
        pid = os.fork()
        if pid == 0:  # nobody, outside our group: the file mode lets it connect
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                with socket.socket(socket.AF_UNIX) as raw:
                    raw.connect(str(folder / "speech.sock"))
                    raw.sendall(np.full(16000, 9000, "<i2").tobytes())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        with caplog.at_level("WARNING"):
            wait_for(lambda: "stream source: refused pid" in caplog.text, 10.0)
        assert all(source.read(0.05) is SILENT for _ in range(5))
    finally:
        source.close()


def test_a_deleted_control_socket_comes_back_and_a_second_appliance_is_refused(
        start_service, model_fixtures, tmp_path):  # noqa: F811
    from runtime.config.loader import load_config
    from runtime.pipeline.appliance import ApplianceError
    from runtime.service.supervisor import Service
    service = start_service()
    path = service.config.control.socket
    os.unlink(path)  # a tidy-up script empties the runtime directory
    wait_for(lambda: path.exists(), 20.0)
    assert _ask(path).startswith(b"HTTP/1.1 200")
    # A second appliance on the same sockets stops at once with one line (it used to start
    # beside the first once the socket files were gone).
    audio, bundle = model_fixtures
    second = Service(lambda: load_config(None, [
        f"models.audio={audio}", f"avatar.bundle={bundle}", "display.sink=null",
        f"control.socket={path}", f"audio.stream.socket={tmp_path / 'other-speech.sock'}"]))
    with pytest.raises(ApplianceError) as caught:
        second.run()
    message = str(caught.value)
    assert "another EdgeMate appliance uses these sockets" in message
    assert f"held by pid {os.getpid()}" in message and "\n" not in message
    assert _ask(path).startswith(b"HTTP/1.1 200")  # the first one is untouched
