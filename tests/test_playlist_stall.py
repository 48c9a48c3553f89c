"""A playlist item whose open or read blocks (a FIFO nobody writes, a hung network mount)
never wedges the appliance: the files source answers SILENT while its I/O worker waits,
flush() and close() never wait for that I/O, an item stalled past stall_s is skipped, a
path that is not a regular file is skipped before it is opened, pushed speech still plays,
SIGTERM still ends the process, and a source read that never returns stops the watchdog."""
from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.audio import files as files_module
from runtime.audio.chunk import AudioChunk
from runtime.audio.files import FilesSource
from runtime.audio.pcm import encode_pcm
from runtime.audio.source import SILENT, AudioSource
from runtime.audio.wav import write_wav
from runtime.config.loader import load_config
from runtime.pipeline.appliance import Appliance
from runtime.service.control_http import wav_header
from runtime.service.sd_notify import Notifier
from runtime.service.supervisor import Service
from test_sd_notify import listener  # noqa: F401 - the fixture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tone(path, seconds=0.1, level=0.5):
    write_wav(path, np.full((int(16000 * seconds), 1), level, np.float32), 16000)
    return path


def _eventually(predicate, what: str, within_s: float = 20.0):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"{what}: not within {within_s} s")


def _in_thread(call) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def test_a_fifo_in_the_playlist_is_skipped_with_a_one_line_reason(tmp_path, caplog):
    fifo = tmp_path / "nobody-writes.wav"
    os.mkfifo(fifo)
    good = _tone(tmp_path / "good.wav")
    with caplog.at_level(logging.WARNING), FilesSource([fifo, good], io_wait_s=30.0) as source:
        chunk = source.read(0.01)
    assert isinstance(chunk, AudioChunk) and chunk.samples[0, 0] == pytest.approx(0.5, abs=1e-3)
    (line,) = [r.getMessage() for r in caplog.records if "nobody-writes" in r.getMessage()]
    assert line == f"files source: skipping {fifo}: not a regular file (a FIFO)"


def test_an_open_that_blocks_holds_up_nothing_and_is_skipped_after_stall_s(tmp_path, monkeypatch,
                                                                           caplog):
    hung, good = tmp_path / "on-a-hung-mount.wav", _tone(tmp_path / "good.wav")
    _tone(hung)
    release = threading.Event()
    real_open = files_module._open_regular

    def open_blocking(path):
        if path == hung:
            release.wait()  # a hung NFS open: returns only when the test ends
        return real_open(path)

    monkeypatch.setattr(files_module, "_open_regular", open_blocking)
    source = FilesSource([hung, good], io_wait_s=0.01, stall_s=0.3)
    source.open()
    try:
        assert source.read(0.01) is SILENT  # waiting for the open: a closed mouth meanwhile
        # Barge-in and status from control threads do not wait for the blocked open.
        for call in (source.flush, source.status):
            thread = _in_thread(call)
            thread.join(10)
            assert not thread.is_alive(), call
        with caplog.at_level(logging.WARNING):
            chunk = _eventually(lambda: (lambda c: c if isinstance(c, AudioChunk) else None)(
                source.read(0.01)), "the next item")
        assert chunk.samples[0, 0] == pytest.approx(0.5, abs=1e-3)
        assert "on-a-hung-mount.wav: opening it: no answer within 0.3 s (a FIFO or a hung " \
               "mount?)" in caplog.text
    finally:
        closer = _in_thread(source.close)
        closer.join(10)
        assert not closer.is_alive(), "close() waited for a blocked open"
        release.set()


def test_close_during_a_blocked_read_returns_at_once(tmp_path, monkeypatch):
    source = FilesSource([_tone(tmp_path / "a.wav", 1.0)], io_wait_s=0.01, stall_s=60.0)
    source.open()
    assert isinstance(source.read(0.01), AudioChunk)
    release = threading.Event()
    reader = source._reader
    real_read = reader.read
    monkeypatch.setattr(reader, "read", lambda frames: (release.wait(), real_read(frames))[1])
    assert source.read(0.01) is SILENT
    closer = _in_thread(source.close)
    closer.join(10)
    assert not closer.is_alive()
    assert source.read(0.01) is None  # closed
    release.set()


def test_pushed_speech_plays_and_sigterm_ends_with_a_fifo_playlist(model_fixtures, tmp_path):
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    audio, bundle = model_fixtures
    config = load_config(None, [f"models.audio={audio}", f"avatar.bundle={bundle}",
                                "display.sink=null", f"audio.files.playlist=[{fifo}]",
                                "audio.files.loop=true", "control.enabled=false"])
    service = Service(lambda: config)
    runner = _in_thread(service.run)
    try:
        _eventually(lambda: service.status().fps > 0, "first frames")
        pcm = encode_pcm(np.full((16000, 1), 0.5, np.float32), "s16le")
        wav = io.BytesIO(wav_header(16000, "s16le", 1, len(pcm)) + pcm)
        _in_thread(lambda: service.controls().say(wav))
        _eventually(lambda: "pushed speech over files" in (service.status().source or ""),
                    "pushed speech playing")
    finally:
        service.stop()
        runner.join(20)
    assert not runner.is_alive()
    # The same as a process: SIGTERM ends it (it used to wait for the FIFO for ever).
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "--audio-model", str(audio), "--bundle",
         str(bundle), "--set", "display.sink=null", "--set", "control.enabled=false",
         "--set", f"audio.files.playlist=[{fifo}]", "--set", "audio.files.loop=true",
         "--set", "audio.playback.enabled=false"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _eventually(lambda: proc.poll() is not None or _log_has(proc, "ready"), "ready", 60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


_SEEN: dict[int, str] = {}


def _log_has(proc, text: str) -> bool:
    # Non-blocking enough: the child logs a line per event; read what is there.
    import selectors
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    while selector.select(0):
        line = proc.stdout.readline()
        if not line:
            break
        _SEEN[proc.pid] = _SEEN.get(proc.pid, "") + line
    return text in _SEEN.get(proc.pid, "")


class _ReadsForever(AudioSource):
    """A source whose read never returns after the first few chunks (a hung device)."""

    live = False

    def __init__(self):
        self.release, self.count = threading.Event(), 0

    def read(self, timeout_s):
        self.count += 1
        if self.count > 20:
            self.release.wait()
        return AudioChunk(np.zeros((320, 1), np.float32), 16000, 0.0, 0)

    def flush(self):
        pass

    def status(self):
        return "stuck"


def test_the_watchdog_stops_while_the_audio_intake_is_stuck(model_fixtures, listener,  # noqa: F811
                                                              monkeypatch):
    from runtime.service import supervisor as service_module
    monkeypatch.setattr(service_module, "INTAKE_STALL_S", 0.5)
    address, messages = listener
    stuck = _ReadsForever()

    class Stuck(Appliance):
        def _make_source(self):
            return stuck

    audio, bundle = model_fixtures
    config = load_config(None, [f"models.audio={audio}", f"avatar.bundle={bundle}",
                                "display.sink=null", "control.enabled=false"])
    notifier = Notifier(address, watchdog_usec=200_000)
    service = Service(lambda: config, notifier=notifier, make_appliance=Stuck)
    runner = _in_thread(service.run)
    try:
        _eventually(lambda: "audio intake stuck" in (service.status().last_error or ""),
                    "the stuck intake noticed")
        pings = messages().count("WATCHDOG=1")
        frames = service.status().frames_shown
        _eventually(lambda: service.status().frames_shown > frames + 10, "frames go on")
        assert messages().count("WATCHDOG=1") == pings  # frames advance, yet no ping
        assert pings >= 1  # it pinged before the intake got stuck
    finally:
        service.stop()
        stuck.release.set()
        runner.join(20)
    assert not runner.is_alive()


def test_sigterm_during_a_cold_template_decode_stops_within_the_frames_in_flight(model_fixtures,
                                                                       monkeypatch, tmp_path):
    from runtime.render import template_cache
    monkeypatch.setenv("EDGEMATE_CACHE_DIR", str(tmp_path / "cache"))  # a cold start
    decoded, stop_after = [], 3
    real_decode = template_cache.decode_frame

    def decode_then_sigterm(path, size):
        decoded.append(path)
        if len(decoded) == stop_after:
            service.stop()  # what the SIGTERM handler does, between two frames
        return real_decode(path, size)

    monkeypatch.setattr(template_cache, "decode_frame", decode_then_sigterm)
    audio, _ = model_fixtures
    shipped = os.path.join(REPO, "models", "avatars", "default")  # 200 PNG frames
    config = load_config(None, [f"models.audio={audio}", f"avatar.bundle={shipped}",
                                "display.sink=null", "control.enabled=false"])
    service = Service(lambda: config)
    report = service.run()  # returns: no exit 78, no waiting for the other 197 frames
    # Frames already being decoded on the other decode threads finish; no new one starts.
    assert stop_after <= len(decoded) <= stop_after + template_cache.DECODE_THREADS
    assert service.state == "stopped"
    assert report.frames_shown == 0
    assert not template_cache.STOP_DECODING.is_set()  # cleared for whatever runs next
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # the half-written cache is gone
