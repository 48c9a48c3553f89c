"""The control socket against a running service: say, stop, status, metrics, limits,
malformed requests, peer credentials, the CLI clients, and TTS clients that drop."""
from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from runtime.audio.pcm import encode_pcm
from runtime.audio.wav import write_wav
from runtime.cli import main
from runtime.commands.bench import speech_like
from runtime.commands.control_client import UnixHTTPConnection, exchange
from runtime.config.loader import load_config
from runtime.service.supervisor import Service
from runtime.system.peer_access import peer_allowed


@pytest.fixture
def speech(tmp_path) -> Path:
    path = tmp_path / "speech.wav"
    write_wav(path, speech_like(3.0), 16000)
    return path


@pytest.fixture
def start_service(model_fixtures, tmp_path):
    services = []

    def start(*overrides: str, source_wav: Path | None = None) -> Service:
        audio, bundle = model_fixtures
        playlist = f"audio.files.playlist=[{source_wav}]" if source_wav else "audio.files.playlist=[]"
        config = load_config(None, [f"models.audio={audio}", f"avatar.bundle={bundle}",
                                    "display.sink=null", playlist, "audio.files.loop=true",
                                    f"control.socket={tmp_path / 'control.sock'}",
                                    f"audio.stream.socket={tmp_path / 'speech.sock'}", *overrides])
        service = Service(lambda: config)
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        service.thread = thread
        services.append(service)
        deadline = time.monotonic() + 20
        while service.status().fps == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.state == "running"
        return service

    yield start
    for service in services:
        service.stop()
        service.thread.join(10)
        assert not service.thread.is_alive()


def http(service: Service, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    connection = UnixHTTPConnection(str(service.config.control.socket), 10)
    status, data = exchange(connection, method, path, body, headers)
    return status, (json.loads(data) if data.startswith(b"{") else {"text": data.decode()})


def wait_for(predicate, within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_status_and_metrics(start_service):
    service = start_service()
    code, status = http(service, "GET", "/status")
    assert code == 200
    for key in ("level", "fps", "drops", "temperature_c", "source", "uptime_s", "last_error",
                "private_mb", "heap_in_use_mb", "python_blocks"):
        assert key in status
    assert status["state"] == "running" and status["level"] == "full" and status["fps"] > 0
    code, metrics = http(service, "GET", "/metrics")
    text = metrics["text"]
    assert code == 200 and "# TYPE edgemate_frames_shown_total counter" in text
    assert 'edgemate_quality_level{level="FULL"} 1' in text and "edgemate_up 1" in text
    # Every sample line is "name{labels} value": what a Prometheus scraper parses.
    for line in text.splitlines():
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])
    socket_mode = stat.S_IMODE(os.stat(service.config.control.socket).st_mode)
    assert socket_mode == 0o660


def test_pushed_speech_preempts_the_playlist_and_it_resumes(start_service, speech, tmp_path):
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, np.zeros(16000 * 30, np.float32), 16000)  # a playlist of silence
    service = start_service(source_wav=quiet)
    code, doc = http(service, "POST", "/say", speech.read_bytes(), {"Content-Type": "audio/wav"})
    assert code == 200 and doc["seconds"] == pytest.approx(3.0, abs=0.01)
    wait_for(lambda: "pushed speech over files" in service.status().source, 1.0)
    appliance = service.appliance
    time.sleep(1.5)
    shown = appliance.scheduler.last_shown + 1  # by frame number: drops make the count lag
    opened = max(float(appliance.track.get(k)[0]) for k in range(max(0, shown - 30), shown))
    assert opened > 0.5  # the mouth says the pushed speech, over a silent playlist
    wait_for(lambda: service.status().source.startswith("files: playing"), 4.0)


def test_raw_pcm_chunked_with_query_parameters(start_service):
    service = start_service()
    pcm = encode_pcm(speech_like(1.0)[:, None], "s16le")
    pieces = (pcm[i:i + 3000] for i in range(0, len(pcm), 3000))
    code, doc = http(service, "POST", "/say?rate=16000&format=s16le&channels=1", pieces,
                     {"Transfer-Encoding": "chunked"})
    assert code == 200 and doc["seconds"] == pytest.approx(1.0, abs=0.01)


def test_stop_is_a_barge_in_that_cuts_the_mouth_on_the_next_frame(start_service, speech):
    service = start_service()
    assert http(service, "POST", "/say", speech.read_bytes())[0] == 200
    time.sleep(1.0)
    code, doc = http(service, "POST", "/stop")
    assert code == 200 and doc["stopped"] is True
    # The reply waited for the first frame after the cut on screen (the latency itself is a
    # timing: the soak and `edgemate status` report it).
    assert doc["mouth_closed_after_ms"] is not None and doc["mouth_closed_after_ms"] >= 0
    appliance = service.appliance
    time.sleep(0.3)
    shown = appliance.scheduler.last_shown + 1  # by frame number: drops make the count lag
    assert max(float(appliance.track.get(k)[0]) for k in range(shown - 5, shown + 1)) < 0.05
    assert service.status().barge_ins == 1 and service.status().pushed == "stream: idle"


@pytest.mark.parametrize("path, body, headers, code, reason", [
    ("/say", b"RIFF\x10\0\0\0WAVEjunkjunk", {}, 400, "truncated junk chunk"),
    ("/say", b"hello", {}, 400, "raw PCM needs ?rate="),
    ("/say?rate=3&format=s16le", b"\0" * 64, {}, 400, "rate 3"),
    ("/say?rate=16000&format=mp3", b"\0" * 64, {}, 400, "format 'mp3'"),
    ("/say?rate=abc", b"\0" * 64, {}, 400, "integers"),
    ("/say", b"", {}, 400, "empty body"),
    ("/nothing", None, {}, 404, "use GET /status"),
])
def test_malformed_requests_get_4xx_with_the_reason_and_change_nothing(
        start_service, path, body, headers, code, reason):
    service = start_service()
    before = service.status()
    got, doc = http(service, "POST", path, body, headers)
    assert got == code and reason in doc["error"]
    time.sleep(0.2)
    after = service.status()
    assert after.state == "running" and after.pushed == "stream: idle"
    assert after.barge_ins == before.barge_ins and after.last_error is None
    assert after.frames_shown > before.frames_shown


def test_a_wrong_method_and_a_missing_length(start_service):
    service = start_service()
    assert http(service, "GET", "/say")[0] == 405
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(service.config.control.socket))
        raw.sendall(b"POST /say HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 411")


def test_limits_413_before_playing_and_a_streamed_body_is_cut(start_service, speech, tmp_path):
    service = start_service("control.max_say_s=2")
    code, doc = http(service, "POST", "/say", speech.read_bytes())  # 3 s declared in the header
    assert code == 413 and "over the limit" in doc["error"]
    assert service.status().pushed == "stream: idle"
    pcm = encode_pcm(speech_like(3.0)[:, None], "s16le")
    pieces = (pcm[i:i + 8000] for i in range(0, len(pcm), 8000))
    code, doc = http(service, "POST", "/say?rate=16000&format=s16le", pieces,
                     {"Transfer-Encoding": "chunked"})
    assert code == 413 and "cut at the limit after 2.0 s" in doc["error"]
    assert service.status().says_rejected == 2


def test_a_tts_client_dropping_mid_utterance_closes_the_mouth_and_leaks_nothing(
        start_service, speech):
    service = start_service()
    data = speech.read_bytes()
    process = psutil.Process()

    def drop_one() -> None:
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(service.config.control.socket))
            raw.sendall(b"POST /say HTTP/1.1\r\nHost: x\r\nContent-Length: "
                        + str(len(data)).encode() + b"\r\n\r\n" + data[:len(data) // 3])
            time.sleep(0.2)

    drop_one()  # warm-up: the first request starts the server's machinery
    wait_for(lambda: service.status().pushed == "stream: idle")
    fds, threads = process.num_fds(), process.num_threads()
    for _ in range(5):
        drop_one()
    # What each client sent before it died (1 s of speech) still plays, then all is idle.
    wait_for(lambda: service.status().pushed == "stream: idle", 12.0)
    appliance = service.appliance

    def mouth_shut_on_screen() -> bool:
        # By frame number, not by the count of frames shown: a busy machine drops frames.
        last = appliance.scheduler.last_shown
        return max(float(appliance.track.get(k)[0]) for k in range(last - 3, last + 1)) < 0.05
    wait_for(mouth_shut_on_screen, 5.0)
    assert process.num_fds() <= fds and process.num_threads() <= threads
    assert service.status().state == "running"


def test_peer_credentials_of_our_own_user_are_accepted():
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        allowed, who = peer_allowed(left)
    assert allowed and f"uid {os.geteuid()}" in who


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_a_stranger_is_refused_with_403(start_service):
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="edgemate-peer-"))
    folder.chmod(0o755)  # pytest's tmp_path is private to root: nobody could not connect
    service = start_service(f"control.socket={folder / 'control.sock'}")
    os.chmod(service.config.control.socket, 0o666)  # the file mode would stop it first
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child becomes nobody, outside our group, and asks for the status
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX) as raw:
                raw.connect(str(service.config.control.socket))
                raw.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
                os.write(write, raw.recv(200))
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    answer = os.read(read, 200)
    os.close(read)
    assert answer.startswith(b"HTTP/1.1 403")


def test_no_network_port_unless_configured(start_service):
    def inet_listeners():
        return [c for c in psutil.Process().net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN]

    start_service()
    assert inet_listeners() == []


def test_loopback_tcp_when_configured(start_service):
    import http.client
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start_service(f"control.tcp_port={port}")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/status")
    assert json.loads(connection.getresponse().read())["state"] == "running"
    connection.close()


def test_cli_clients_say_stop_status(start_service, speech, capsys):
    service = start_service()
    where = ["--socket", str(service.config.control.socket)]
    assert main(["say", str(speech), *where]) == 0
    assert "said utterance" in capsys.readouterr().out
    assert main(["stop", *where]) == 0
    assert "mouth closed" in capsys.readouterr().out
    assert main(["status", *where]) == 0
    out = capsys.readouterr().out
    assert "state      running" in out and "fps" in out
    assert "memory     RSS" in out and "private" in out and "display    null" in out
    assert main(["status", "--json", *where]) == 0
    assert json.loads(capsys.readouterr().out)["barge_ins"] == 1


def test_cli_client_without_a_service_is_one_line(tmp_path, capsys):
    assert main(["status", "--socket", str(tmp_path / "none.sock")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgemate status: no appliance listening") and err.count("\n") == 1


def test_cli_say_reports_a_refusal(start_service, tmp_path, capsys):
    service = start_service()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    assert main(["say", str(bad), "--socket", str(service.config.control.socket)]) == 1
    assert "refused (400)" in capsys.readouterr().err


def test_clients_find_the_socket_of_the_systemd_service(tmp_path, monkeypatch):
    import argparse
    from runtime.commands import control_client
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.delenv("EDGEMATE_CONTROL_SOCKET", raising=False)
    args = argparse.Namespace(socket=None, config=None)
    monkeypatch.setattr(control_client, "SYSTEMD_RUNTIME_DIR", tmp_path)
    assert control_client.socket_path(args).parent != tmp_path  # no service there yet
    (tmp_path / "edgemate-control.sock").touch()
    assert control_client.socket_path(args) == tmp_path / "edgemate-control.sock"
    monkeypatch.setenv("EDGEMATE_CONTROL_SOCKET", "/elsewhere.sock")
    assert str(control_client.socket_path(args)) == "/elsewhere.sock"


def test_a_user_outside_the_group_is_told_how_to_get_in(tmp_path, monkeypatch, capsys):
    from runtime.cli import main as cli_main
    from runtime.commands import control_client
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.delenv("EDGEMATE_CONTROL_SOCKET", raising=False)
    monkeypatch.setattr(control_client, "SYSTEMD_RUNTIME_DIR", tmp_path)
    real_exists = Path.exists

    def exists(path):  # what a user outside the group sees of /run/edgemate (mode 0750)
        if path.parent == tmp_path:
            raise PermissionError(13, "Permission denied", str(path))
        return real_exists(path)

    def connect(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "exists", exists)
    monkeypatch.setattr(control_client.UnixHTTPConnection, "connect", connect)
    assert cli_main(["status"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert str(tmp_path / "edgemate-control.sock") in err and "usermod -aG edgemate" in err


def test_cli_say_from_stdin_streams_it_chunked(start_service, speech):
    import subprocess
    import sys
    service = start_service()
    done = subprocess.run([sys.executable, "-m", "runtime", "say", "-", "--socket",
                           str(service.config.control.socket)], input=speech.read_bytes(),
                          capture_output=True, cwd=Path(__file__).resolve().parent.parent,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"(3.0 s)" in done.stdout
