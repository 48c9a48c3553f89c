"""The ingest thread: source -> 16 kHz mono -> timeline (+ speaker) -> mouth parameters.

It keeps the timeline ahead of the clock: pull sources (files, stream) are read up to
`lead_s` ahead and paced by the clock; a live source (mic) is written as it arrives and is
itself the clock. Wherever the source has nothing (a gap, an idle stream, a stalled mic),
silence is written so the timeline, the speaker and the picture never stop.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from runtime import SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.audio.resample import StreamingResampler
from runtime.audio.source import SILENT, AudioSource
from runtime.audio.timeline import Timeline
from .mouth_track import MouthAnalyzer

log = logging.getLogger(__name__)


class AudioSink(Protocol):
    """A speaker: takes timeline samples in order, drops unplayed ones on flush."""

    def write(self, samples: np.ndarray) -> int: ...

    def flush(self) -> None: ...

    @property
    def written_samples(self) -> int:
        """Timeline position the next written sample will take."""


@dataclass(frozen=True)
class IngestSettings:
    #: Pull sources are read this far ahead of the clock (covers the model look-ahead).
    lead_s: float = 0.2
    #: Silence is written this far ahead of the clock when a source has nothing.
    silence_lead_s: float = 0.12
    #: A read never blocks longer than this, so stop and barge-in are seen quickly.
    poll_s: float = 0.02


class Ingest:
    def __init__(self, source: AudioSource, clock: Callable[[], float], timeline: Timeline,
                 analyzer: MouthAnalyzer, settings: IngestSettings = IngestSettings(),
                 speaker: AudioSink | None = None, sleep: Callable[[float], None] = time.sleep):
        self.source = source
        self._sleep = sleep
        self.clock = clock
        self.timeline = timeline
        self.analyzer = analyzer
        self.settings = settings
        self.speaker = speaker
        #: Timeline position where a non-looping source ended (None while it plays).
        self.ended_at: int | None = None
        self.error: str | None = None
        self._resampler: StreamingResampler | None = None
        self._resampler_key: tuple[int, int] | None = None
        self._lock = threading.Lock()  # timeline + analyzer + speaker move together
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: time.monotonic() when the loop last got past the source: a source whose read
        #: never returns (a hung device or mount) shows here, while the frames go on.
        self.last_progress = time.monotonic()

    # -- writing -------------------------------------------------------------------------
    def _write(self, samples: np.ndarray) -> None:
        with self._lock:
            self.timeline.append(samples)
            if self.speaker is not None:
                self.speaker.write(samples)
            self.analyzer.accept(samples)

    def fill_silence_to(self, position: int) -> None:
        """Write zeros up to timeline sample `position` (whole frames, for even blocks)."""
        missing = position - self.timeline.write_pos
        if missing > 0:
            missing += -missing % SAMPLES_PER_FRAME
            self._write(np.zeros(missing, np.float32))

    def _flush_resampler(self) -> np.ndarray:
        """The last input's tail still inside the filter (a few ms), before a format change."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        tail = self._resampler.finish()
        self._resampler = self._resampler_key = None
        return tail

    def _to_16k(self, samples: np.ndarray, rate: int) -> np.ndarray:
        key = (rate, samples.shape[1])
        tail = None
        if key != self._resampler_key:
            tail = self._flush_resampler()
            self._resampler = StreamingResampler(rate, SAMPLE_RATE, samples.shape[1])
            self._resampler_key = key
        out = self._resampler.process(samples)
        return out if tail is None or not tail.size else np.concatenate([tail, out])

    def pump_once(self) -> None:
        """One step of the loop (tests drive this directly with a fake clock)."""
        now_pos = int(self.clock() * SAMPLE_RATE)
        live = self.source.live
        ahead = self.timeline.write_pos - now_pos
        if not live and ahead >= self.settings.lead_s * SAMPLE_RATE:
            self._sleep(self.settings.poll_s / 2)
            return
        if self.ended_at is not None:
            self.fill_silence_to(now_pos + int(self.settings.silence_lead_s * SAMPLE_RATE))
            self._sleep(self.settings.poll_s / 2)
            return
        item = self.source.read(self.settings.poll_s)
        if item is None:
            log.info("audio source ended")
            tail = self._flush_resampler()
            if tail.size:
                self._write(tail)
            self.ended_at = self.timeline.write_pos
        elif item is SILENT:
            # Nothing to play right now: keep the picture alive with a closed mouth.
            self.fill_silence_to(int((self.clock() + self.settings.silence_lead_s) * SAMPLE_RATE))
        else:
            samples = self._to_16k(item.samples, item.rate)
            if samples.size:
                self._write(samples)

    # -- thread ---------------------------------------------------------------------------
    def stalled_s(self) -> float:
        """Seconds since the loop last got past the source (0 while it is not running)."""
        if self._thread is None or not self._thread.is_alive():
            return 0.0
        return max(0.0, time.monotonic() - self.last_progress)

    def start(self) -> None:
        self.last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="edgemate-ingest", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.pump_once()
                self.last_progress = time.monotonic()
        except Exception as err:  # the frame loop reports it; the process must not hang
            log.exception("ingest thread failed")
            self.error = f"audio ingest failed: {err}"

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def barge_in(self, heard_pos: int) -> int:
        """Drop everything not yet heard; the mouth closes from the next frame. Returns the
        timeline position where new audio will start (a frame boundary)."""
        self.source.flush()
        with self._lock:
            keep = max(heard_pos, 0)
            if self.speaker is not None:
                # What the device already holds will still be heard: the timeline resumes
                # right after it, so speaker and timeline positions stay identical.
                self.speaker.flush()
                keep = self.speaker.written_samples
            self.timeline.truncate(keep)
            if self.timeline.write_pos < keep:  # the speaker ran ahead (an underrun)
                self.timeline.append(np.zeros(keep - self.timeline.write_pos, np.float32))
            pad = -keep % SAMPLES_PER_FRAME
            first_frame = (keep + pad) // SAMPLES_PER_FRAME
            heard_frame = max(heard_pos, 0) // SAMPLES_PER_FRAME
            # Frames computed from the discarded audio (up to the lead ahead) close too.
            last = max(self.analyzer.track.newest, first_frame + 1)
            self.analyzer.track.close_from(heard_frame + 1, max(0, last - heard_frame))
            if pad:
                self.timeline.append(np.zeros(pad, np.float32))
                if self.speaker is not None:
                    self.speaker.write(np.zeros(pad, np.float32))
            self.analyzer.reset(first_frame)
            if self._resampler is not None:
                self._resampler.reset()
            if self.ended_at is not None:
                self.ended_at = min(self.ended_at, keep)
        return first_frame * SAMPLES_PER_FRAME
