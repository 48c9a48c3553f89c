"""The ingest keeps the timeline just ahead of the clock, fills silence, and barges in cleanly."""
import socket
import threading
import time

import numpy as np

from runtime import SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.audio.chunk import AudioChunk
from runtime.audio.files import FilesSource
from runtime.audio.source import SILENT, AudioSource
from runtime.audio.timeline import Timeline
from runtime.audio.wav import write_wav
from runtime.commands.bench import speech_like
from runtime.config.loader import load_config
from runtime.pipeline.appliance import Appliance
from runtime.speech.audio_model import AudioModel
from runtime.speech.ingest import Ingest, IngestSettings
from runtime.speech.mouth_track import MouthAnalyzer, MouthTrack


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, seconds):
        self.t += seconds


def _ingest(model_fixtures, source, clock, speaker=None, lead_s=0.2):
    track = MouthTrack()
    analyzer = MouthAnalyzer(AudioModel(model_fixtures[0]), track)
    timeline = Timeline(time_fn=clock)
    return Ingest(source, clock, timeline, analyzer, IngestSettings(lead_s=lead_s), speaker=speaker,
                  sleep=clock.sleep)


def test_pull_source_is_paced_by_the_clock_and_ends(model_fixtures, tmp_path):
    speech = tmp_path / "s.wav"
    write_wav(speech, speech_like(2.0), 22050)
    clock = FakeClock()
    source = FilesSource([speech], loop=False, gap_s=0, io_wait_s=30.0)
    source.open()
    ingest = _ingest(model_fixtures, source, clock)
    worst_lead = 0.0
    while clock.t < 3.0:
        ingest.pump_once()
        ahead = ingest.timeline.write_pos / SAMPLE_RATE - clock.t
        worst_lead = max(worst_lead, ahead)
        assert ahead >= -0.001, "the timeline fell behind the clock"
    assert worst_lead < 0.2 + 0.05  # the lead plus one chunk
    # 32000 samples written as 22.05 kHz, resampled: the source ended there; silence keeps
    # the timeline going.
    assert abs(ingest.ended_at - 32000 / 22050 * SAMPLE_RATE) <= 2
    assert ingest.timeline.write_pos >= 3.0 * SAMPLE_RATE


class NobodySpeaks(AudioSource):
    live = False

    def read(self, timeout_s):
        return SILENT


def test_an_idle_source_gets_silence_and_a_closed_mouth(model_fixtures):
    clock = FakeClock()
    ingest = _ingest(model_fixtures, NobodySpeaks(), clock)
    for _ in range(200):
        ingest.pump_once()
        clock.t += 0.02
    assert ingest.timeline.write_pos >= clock.t * SAMPLE_RATE
    frames = ingest.analyzer.track.newest
    assert frames >= 95
    assert max(ingest.analyzer.track.get(k)[0] for k in range(frames)) < 0.05


class FakeSpeaker:
    def __init__(self):
        self.written_samples = 0
        self.played = 0

    def write(self, samples):
        self.written_samples += len(samples)
        return len(samples)

    def flush(self):
        self.written_samples = self.played


def test_barge_in_keeps_speaker_and_timeline_aligned_and_closes_the_mouth(model_fixtures, tmp_path):
    speech = tmp_path / "s.wav"
    write_wav(speech, speech_like(5.0), 16000)
    clock = FakeClock()
    source = FilesSource([speech], io_wait_s=30.0)
    source.open()
    speaker = FakeSpeaker()
    ingest = _ingest(model_fixtures, source, clock, speaker=speaker)
    while clock.t < 1.0:
        ingest.pump_once()
        speaker.played = int(clock.t * SAMPLE_RATE) + 1234  # the device holds a little more
    heard = int(clock.t * SAMPLE_RATE)
    start = ingest.barge_in(heard)
    assert start % SAMPLES_PER_FRAME == 0
    assert ingest.timeline.write_pos == speaker.written_samples == start
    assert start >= speaker.played
    frame_now = heard // SAMPLES_PER_FRAME
    for k in range(frame_now + 1, frame_now + 12):
        assert ingest.analyzer.track.get(k)[0] == 0.0


def test_stream_client_that_drops_mid_utterance_then_reconnects(model_fixtures, tmp_path):
    sock_path = tmp_path / "speech.sock"
    config = load_config(None, [f"models.audio={model_fixtures[0]}", f"avatar.bundle={model_fixtures[1]}",
                                "audio.source=stream", f"audio.stream.socket={sock_path}",
                                "display.sink=null", "run.duration_s=4.0"])
    appliance = Appliance(config)
    appliance.load()
    appliance.open()
    pcm = (speech_like(2.0) * 32767).astype("<i2").tobytes()

    def client():
        time.sleep(0.3)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(sock_path))
            s.sendall(pcm[: len(pcm) // 2 + 1])  # 1 s and an odd byte, then gone
        time.sleep(1.5)
        wav = tmp_path / "again.wav"
        write_wav(wav, speech_like(0.8), 16000)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(sock_path))
            s.sendall(wav.read_bytes())

    pusher = threading.Thread(target=client)
    pusher.start()
    started = time.monotonic()
    try:
        appliance.run()
    finally:
        appliance.close()
        pusher.join(5)
    assert time.monotonic() - started < 6, "something hung"
    opening = np.array([appliance.track.get(k)[0] for k in range(100)])
    active = np.flatnonzero(opening > 0.5)
    assert active.size and active[0] >= 5          # closed until the first client spoke
    # The longest closed run between the two utterances: the client dropped, the mouth
    # closed for the ~0.5 s until the second client connected.
    gaps = np.diff(active) - 1
    assert gaps.max() >= 8
    split = active[np.argmax(gaps)]
    assert split >= 25                              # after about 1 s of the first utterance
    assert active[-1] < 92 and opening[active[-1] + 3:].max() < 0.05  # closed again
    assert not sock_path.exists()
