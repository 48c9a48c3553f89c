"""sd_notify against a real AF_UNIX datagram socket (a path and the abstract namespace), and
the watchdog as the frame loop drives it: pings while frames advance, none when it freezes."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from runtime.audio.wav import write_wav
from runtime.commands.bench import speech_like
from runtime.config.loader import load_config
from runtime.pipeline.appliance import Appliance
from runtime.service.sd_notify import Notifier
from runtime.service.supervisor import Service


@pytest.fixture
def listener(tmp_path):
    """(address for NOTIFY_SOCKET, function returning the messages received so far).

    A thread drains the socket as systemd does: a unix datagram queue holds only a few
    messages, and the receive time is what the watchdog test measures."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(0.05)
    received: list[tuple[float, str]] = []
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            try:
                received.append((time.monotonic(), sock.recv(4096).decode()))
            except (socket.timeout, BlockingIOError):
                continue

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()

    def messages() -> list[str]:
        time.sleep(0.1)  # let the drain thread catch up
        return [text for _, text in received]

    messages.timed = received
    yield str(path), messages
    done.set()
    thread.join(1)
    sock.close()


def test_path_socket_gets_ready_status_watchdog_stopping(listener):
    address, messages = listener
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000", "OTHER": "kept"}
    notifier = Notifier.from_environment(env)
    # Children must not inherit the notify settings: they are taken out of the environment.
    assert env == {"OTHER": "kept"}
    assert notifier.enabled and notifier.watchdog_interval_s == 1.0
    assert notifier.ready(status="loaded")
    assert notifier.status("25.0 fps,\nlevel full")
    assert notifier.watchdog()
    assert notifier.reloading()
    assert notifier.stopping()
    got = messages()
    assert got[0].splitlines()[0] == "READY=1" and "STATUS=loaded" in got[0]
    assert f"MAINPID={os.getpid()}" in got[0]
    assert got[1] == "STATUS=25.0 fps, level full"  # one line, always
    assert got[2] == "WATCHDOG=1"
    assert got[3].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert got[4] == "STOPPING=1"
    notifier.close()


def test_abstract_socket():
    name = f"edgemate-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(4096).startswith(b"READY=1")
    finally:
        sock.close()


def test_silent_outside_systemd():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False
    assert notifier.watchdog_due() is False


def test_a_gone_systemd_is_counted_not_raised(tmp_path):
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert notifier.status("x") is False and notifier.failures == 1


def test_watchdog_meant_for_another_pid_is_not_ours():
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000",
                                          "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier.watchdog_interval_s is None


def test_a_spawned_child_does_not_inherit_notify_socket(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "@edgemate-test")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    Notifier.from_environment()
    done = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('NOTIFY_SOCKET'),"
                           " os.environ.get('WATCHDOG_USEC'))"], capture_output=True, text=True)
    assert done.stdout.split() == ["None", "None"]


class _StuckAfter:
    """A renderer that hangs after `frames` frames: a frozen frame loop (a stuck stage)."""

    def __init__(self, inner, frames: int, release: threading.Event):
        self.inner, self.left, self.release = inner, frames, release
        self.frozen = threading.Event()  # set when the loop hangs in render()

    def render(self, params, index, level, blend_from=None, weight=1.0):
        self.left -= 1
        if self.left < 0:
            self.frozen.set()
            self.release.wait()
        return self.inner.render(params, index, level, blend_from, weight)


def test_watchdog_pings_while_frames_advance_and_stop_when_the_loop_freezes(
        model_fixtures, tmp_path, listener):
    address, messages = listener
    speech = tmp_path / "speech.wav"
    write_wav(speech, speech_like(2.0), 16000)
    audio, bundle = model_fixtures
    config = load_config(None, [f"models.audio={audio}", f"avatar.bundle={bundle}",
                                "display.sink=null", f"audio.files.playlist=[{speech}]",
                                "audio.files.loop=true", "control.enabled=false"])
    release = threading.Event()

    stuck: list[_StuckAfter] = []

    class Freezing(Appliance):
        def _make_renderer(self):
            stuck.append(_StuckAfter(super()._make_renderer(), frames=50, release=release))
            return stuck[-1]

    # WatchdogSec=0.4 s: pings every 0.2 s while frames advance.
    notifier = Notifier(address, watchdog_usec=400_000)
    service = Service(lambda: config, notifier=notifier, make_appliance=Freezing)
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not (stuck and stuck[0].frozen.is_set()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stuck[0].frozen.is_set(), "the loop never reached its 50th frame"
        messages()  # drain
        pings_at_freeze = sum(text == "WATCHDOG=1" for _, text in messages.timed)
        # Three watchdog periods with the loop frozen: no ping may follow (pings come from
        # the frame loop only, so a frozen loop cannot send one however slow the box is).
        time.sleep(1.2)
        got = messages()
        times = [at for at, text in messages.timed if text == "WATCHDOG=1"]
        ready = [at for at, text in messages.timed if text.startswith("READY=1")]
        assert len(ready) == 1 and ready[0] <= times[0] + 0.01  # READY after the first frame
        assert len(times) >= 2  # pings while 50 frames (2 s) advanced
        assert len(times) <= pings_at_freeze + 1  # at most the one sent by the last frame
        assert any(text.startswith("STATUS=") and "fps" in text for text in got)
    finally:
        service.stop()
        release.set()
        runner.join(10)
    assert not runner.is_alive()
    assert "STOPPING=1" in messages()
