"""Pushed speech over a configured files or mic source: it pre-empts them while it plays."""
from __future__ import annotations

import io
import threading
import time

import numpy as np

import fake_pyaudio
from runtime.audio.chunk import AudioChunk
from runtime.audio.mic import MicSource
from runtime.audio.pcm import encode_pcm
from runtime.audio.preempt import PreemptingSource
from runtime.audio.source import SILENT, AudioSource
from runtime.audio.stream import StreamSource
from runtime.config.loader import load_config
from runtime.pipeline.appliance import Appliance
from runtime.service.control_http import wav_header
from runtime.service.supervisor import Service


class _Counting(AudioSource):
    """A base source handing out numbered chunks; `live` as asked."""

    def __init__(self, live: bool):
        self.live, self.count, self.flushed = live, 0, 0

    def read(self, timeout_s):
        self.count += 1
        return AudioChunk(np.full((320, 1), 0.1, np.float32), 16000, 0.0, 0)

    def flush(self):
        self.flushed += 1

    def status(self):
        return "base"


def _push(pushed: StreamSource, seconds: float) -> None:
    pcm = encode_pcm(np.full((int(16000 * seconds), 1), 0.5, np.float32), "s16le")
    header = wav_header(16000, "s16le", 1, len(pcm))
    threading.Thread(target=pushed.feed, args=(io.BytesIO(header + pcm),), daemon=True).start()
    deadline = time.monotonic() + 2
    while not pushed.active() and time.monotonic() < deadline:
        time.sleep(0.005)


def _pushed_source(tmp_path) -> StreamSource:
    return StreamSource(tmp_path / "unused.sock", prebuffer_ms=0)


def test_files_pause_while_pushed_speech_plays_and_resume_after(tmp_path):
    base, pushed = _Counting(live=False), _pushed_source(tmp_path)
    source = PreemptingSource(base, pushed)
    assert source.read(0.02).samples[0, 0] == np.float32(0.1)
    _push(pushed, 0.2)
    values = []
    while pushed.active() or not values:
        item = source.read(0.02)
        if isinstance(item, AudioChunk):
            values.append(round(float(item.samples[0, 0]), 2))
    assert values and set(values) == {0.5} and base.count == 1  # the playlist was not read
    assert source.read(0.02).samples[0, 0] == np.float32(0.1)  # and resumes afterwards
    assert base.count == 2


def test_a_live_mic_is_drained_and_pushed_speech_is_paced_in_real_time(tmp_path):
    base, pushed = _Counting(live=True), _pushed_source(tmp_path)
    source = PreemptingSource(base, pushed)
    _push(pushed, 0.5)
    started, played = time.monotonic(), 0.0
    while pushed.active():
        item = source.read(0.02)
        if isinstance(item, AudioChunk) and item.samples[0, 0] > 0.4:
            played += item.duration_s
    elapsed = time.monotonic() - started
    assert abs(played - 0.5) < 1e-6
    assert elapsed > 0.4  # real time (less the small lead), not as fast as it can be read
    assert base.count > 0  # the capture kept flowing, its audio discarded


def test_barge_in_flushes_the_pushed_speech_and_the_current_item(tmp_path):
    base, pushed = _Counting(live=False), _pushed_source(tmp_path)
    source = PreemptingSource(base, pushed)
    _push(pushed, 2.0)
    source.read(0.02)
    source.flush()
    deadline = time.monotonic() + 1
    while pushed.active() and time.monotonic() < deadline:
        source.read(0.02)
    assert not pushed.active() and base.flushed == 1
    assert source.read(0.02) is not SILENT


def test_say_over_a_mic_source_opens_the_mouth(model_fixtures, tmp_path):
    backend = fake_pyaudio.FakeBackend(tone_hz=50.0)

    class WithFakeMic(Appliance):
        def _make_source(self):
            return MicSource(device="USB", pyaudio_module=backend, isolation="thread")

    audio, bundle = model_fixtures
    config = load_config(None, [f"models.audio={audio}", f"avatar.bundle={bundle}",
                                "display.sink=null", "audio.source=mic", "control.enabled=false"])
    service = Service(lambda: config, make_appliance=WithFakeMic)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "capturing" not in (service.status().source or "") \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        from runtime.commands.bench import speech_like
        pcm = encode_pcm(speech_like(2.0)[:, None], "s16le")
        wav = io.BytesIO(wav_header(16000, "s16le", 1, len(pcm)) + pcm)
        threading.Thread(target=service.controls().say, args=(wav,), daemon=True).start()
        time.sleep(0.3)
        assert service.status().source.startswith("pushed speech over mic")
        time.sleep(1.2)
        appliance = service.appliance
        shown = appliance.scheduler.last_shown + 1  # by frame number: drops make the count lag
        assert max(float(appliance.track.get(k)[0]) for k in range(shown - 25, shown)) > 0.5
        assert service.status().fps > 0
    finally:
        service.stop()
        thread.join(10)
