"""`edgemate run` as systemd runs it: SIGTERM stops within 1 s with a playable MP4, SIGHUP
reloads (a bad file is rejected and the old config runs on), and the clients work."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.audio.wav import write_wav
from runtime.commands.bench import speech_like

REPO = Path(__file__).resolve().parent.parent


def _ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}


def _client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def appliance(model_fixtures, tmp_path):
    """Start `edgemate run -c FILE` (record sink); yields (process, config file, socket)."""
    speech = tmp_path / "speech.wav"
    write_wav(speech, speech_like(3.0), 16000)
    config = tmp_path / "site.yaml"
    control = tmp_path / "control.sock"
    body = (f"extends: default\nmodels: {{audio: '{model_fixtures[0]}'}}\n"
            f"avatar: {{bundle: '{model_fixtures[1]}'}}\n"
            f"audio: {{files: {{playlist: ['{speech}'], loop: true}}}}\n"
            f"display: {{sink: record, record: {{path: '{tmp_path / 'run.mp4'}'}}}}\n"
            f"control: {{socket: '{control}'}}\n")
    config.write_text(body)
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "run", "-c", str(config)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        done = _client("status", "--json", "--socket", str(control))
        if done.returncode == 0 and json.loads(done.stdout)["fps"] > 0:
            break
        time.sleep(0.2)
    yield proc, config, control, body
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def _frames_shown(control: Path) -> int:
    done = _client("status", "--json", "--socket", str(control))
    return json.loads(done.stdout)["frames_shown"] if done.returncode == 0 else 0


def test_sigterm_stops_and_the_mp4_plays(appliance, tmp_path):
    proc, _, control, _ = appliance
    deadline = time.monotonic() + 30
    while _frames_shown(control) < 50 and time.monotonic() < deadline:  # 2 s recorded
        time.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=15)
    # The process exited cleanly after SIGTERM; how fast is the soak report's figure.
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    print(f"SIGTERM to exit: {time.monotonic() - sent:.2f} s")
    streams = _ffprobe(tmp_path / "run.mp4")
    assert float(streams["video"]["duration"]) > 1.5
    assert abs(float(streams["video"]["duration"]) - float(streams["audio"]["duration"])) < 0.1
    assert not control.exists()  # the socket is removed on the way out


def test_sighup_rejects_a_bad_file_then_applies_a_good_one(appliance):
    proc, config, control, body = appliance
    config.write_text(body + "render: {quality: hologram}\n")
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    status = json.loads(_client("status", "--json", "--socket", str(control)).stdout)
    # Still running on the old config (quality auto: the level is the governor's, and on a
    # slow box it may already have stepped down; what matters is that nothing changed).
    assert status["state"] == "running" and status["level"] in ("full", "coarse", "pass")
    assert "reload rejected" in status["last_error"] and "render.quality" in status["last_error"]
    assert status["reload_failures"] == 1 and proc.poll() is None
    config.write_text(body + "render: {quality: coarse}\n")
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = json.loads(_client("status", "--json", "--socket", str(control)).stdout)
        if status["level"] == "coarse" and status["fps"] > 0:
            break
        time.sleep(0.2)
    assert status["level"] == "coarse" and status["reloads"] == 1
    assert status["last_error"] is None


def test_say_stop_status_clients_against_a_running_edgemate_run(appliance, tmp_path):
    proc, _, control, _ = appliance
    speech = tmp_path / "pushed.wav"
    write_wav(speech, speech_like(4.0, seed=3), 22050)
    said = _client("say", str(speech), "--socket", str(control))
    assert said.returncode == 0 and "said utterance" in said.stdout, said.stderr
    time.sleep(0.5)
    stopped = _client("stop", "--socket", str(control))
    assert stopped.returncode == 0 and "mouth closed" in stopped.stdout
    shown = _client("status", "--socket", str(control))
    assert shown.returncode == 0 and "state      running" in shown.stdout
    metrics = _client("status", "--metrics", "--socket", str(control))
    assert "edgemate_barge_ins_total 1" in metrics.stdout


def test_under_systemd_notify_ready_watchdog_sigstop_and_stopping(model_fixtures, tmp_path):
    """The real `edgemate run` with NOTIFY_SOCKET and WATCHDOG_USEC as systemd sets them."""
    import os
    import socket
    import threading
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.1)
    received: list[tuple[float, str]] = []
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            try:
                received.append((time.monotonic(), notify.recv(4096).decode()))
            except socket.timeout:
                pass

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="400000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "--audio-model", str(model_fixtures[0]),
         "--bundle", str(model_fixtures[1]), "--set", "display.sink=null",
         "--set", f"control.socket={tmp_path / 'control.sock'}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        proc.send_signal(signal.SIGSTOP)  # a frozen process: no pings, systemd would kill it
        stopped_at = time.monotonic()
        time.sleep(1.5)
        proc.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    finally:
        done.set()
        drainer.join(2)
        notify.close()
        if proc.poll() is None:
            proc.kill()
    texts = [text for _, text in received]
    assert texts[0].startswith("READY=1") and "fps" in texts[0]
    pings = [at for at, text in received if text == "WATCHDOG=1"]
    before = [at for at in pings if at < stopped_at]
    assert len(before) >= 5
    # Silent while stopped. The times are those of receipt and the clock is read around the
    # signals, not at them (pings were seen again 1.43 s after `stopped_at`), so the window
    # is 0.3 to 1.2 s. Not asserted: how regular the pings are otherwise (on a busy CI core
    # one receipt came 1.5 s after the one before, away from the stop).
    frozen = [round(at - stopped_at, 2) for at in pings if stopped_at + 0.3 < at < stopped_at + 1.2]
    assert frozen == [], f"pings while the process was stopped, at {frozen} s"
    assert [at for at in pings if at > stopped_at + 1.5]  # it pings again once it runs
    assert "STOPPING=1" in texts
    assert proc.returncode == 0
