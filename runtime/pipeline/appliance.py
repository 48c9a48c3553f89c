"""The appliance: wires one config into the pipeline's stages, and runs their lifecycle.

    audio source -> ingest (16 kHz timeline, speaker, fbank, audio model) -> mouth track
    clock -> scheduler -> frame loop (frame_loop.py) -> frame body (frame_body.py) -> sink

Hardware comes from factory methods (`_make_source`, `_make_sink`, `_make_speaker`) that
tests override with fakes. Pushed speech (`SpeechControl.say`, the control socket's POST
/say) goes through the same StreamSource as the `stream` source; over a files or mic source
it pre-empts them while it plays (runtime/audio/preempt.py). The service layer
(runtime/service/supervisor.py) watches the loop through `tick` (once per shown frame) and
`status()`, both cheap, and acts on it only through `controls`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from runtime import SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.audio.source import AudioSource
from runtime.audio.stream import StreamSource
from runtime.audio.timeline import Timeline
from runtime.config.schema import Config
from runtime.display.sink import DisplayError, DisplaySink
from runtime.quality.levels import BUDGET_S, DropLedger, FixedQuality, Quality, QualityPolicy
from runtime.quality.sensors import SensorSampler, discover
from runtime.render.bundle import AvatarBundle, load_bundle
from runtime.render.compositor import Compositor
from runtime.render.renderer import NcnnRenderer, Renderer
from runtime.schedule.clock import CaptureClock, MonotonicClock, PlaybackClock
from runtime.schedule.scheduler import FrameScheduler
from runtime.schedule.stage_timer import StageTimer
from runtime.speech.audio_model import AudioModel
from runtime.speech.ingest import Ingest, IngestSettings
from runtime.speech.mouth_track import MouthAnalyzer, MouthTrack
from .frame_body import FrameBody
from .frame_loop import FrameLoop, LoopError, LoopLimits, OnFrame, RunReport, SinkSlot
from .live_stats import ApplianceStatus, LiveStats

log = logging.getLogger(__name__)

__all__ = ["Appliance", "ApplianceError", "ApplianceStatus", "RunReport", "SpeechControl",
           "run_to_end"]


class ApplianceError(Exception):
    """Cannot start or go on; `exit_code` 78 (EX_CONFIG) for bad config/models, else 1."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class Appliance:
    def __init__(self, config: Config, *, started_at: float | None = None,
                 tick: Callable[[], None] | None = None, on_frame: OnFrame | None = None,
                 first_frame: Callable[[], None] | None = None):
        """tick: after every shown frame (watchdog, status), keep it cheap; on_frame: every
        shown frame's work (the bench's lip-sync meter); first_frame: once, when the first
        frame is shown (the service sends READY=1)."""
        self.config = config
        self.started_at = time.monotonic() if started_at is None else started_at
        self._tick, self._on_frame, self._first_frame = tick, on_frame, first_frame
        # Own-cost drops follow a frame that used more than the step-up headroom itself.
        self.drops = DropLedger(config.governor.step_up_cost * BUDGET_S)
        self.timer = StageTimer()
        self.track = MouthTrack()
        self.timeline = Timeline()
        self.stats = LiveStats()
        self._stop = threading.Event()
        self.report = RunReport()
        self.bundle: AvatarBundle | None = None
        self.renderer: Renderer | None = None
        self.compositor: Compositor | None = None
        self.analyzer: MouthAnalyzer | None = None
        self.quality: QualityPolicy | None = None
        self.sensors: SensorSampler | None = None
        self.source: AudioSource | None = None
        self.slot: SinkSlot | None = None
        self.ingest: Ingest | None = None
        self.speaker = None
        self.clock = None
        self.pushed: StreamSource | None = None
        self.scheduler: FrameScheduler | None = None
        self.loop: FrameLoop | None = None
        self.last_error: str | None = None

    @property
    def controls(self) -> SpeechControl:
        """What the control socket may do (a new small facade each time: an attribute would
        make a reference cycle, and a reload frees the old pipeline by reference count)."""
        return SpeechControl(self)

    @property
    def sink(self) -> DisplaySink | None:
        return self.slot.sink if self.slot is not None else None

    # -- factories (tests override) -----------------------------------------------------
    def _make_source(self) -> AudioSource:
        from .source_from_config import make_source
        return make_source(self.config.audio, self.config.control.client_idle_timeout_s)

    def _make_speaker(self):
        from runtime.audio.playback import Player
        pb = self.config.audio.playback
        return Player(device=pb.device, extra_latency_ms=pb.extra_latency_ms)

    def _make_pushed(self) -> StreamSource:
        """The pushed-speech queue over a files or mic source; its socket is never opened
        (only the control socket feeds it)."""
        from .source_from_config import make_stream_source
        return make_stream_source(self.config.audio, self.config.control.client_idle_timeout_s)

    def _make_sink(self) -> tuple[DisplaySink, str | None]:
        from .sink_from_config import open_sink
        return open_sink(self.config.display, self.bundle.frame_size)

    def _make_renderer(self) -> Renderer:
        return NcnnRenderer(self.bundle, self.config.models.threads, self.config.models.vulkan,
                            self.timer)

    def _make_sensors(self) -> SensorSampler:
        gov = self.config.governor
        return SensorSampler(discover(gov.sensors), gov.sample_interval_s)

    def _make_quality(self) -> QualityPolicy:
        if self.config.render.quality != "auto":
            return FixedQuality(Quality.parse(self.config.render.quality))
        from runtime.quality.governor import Governor
        return Governor(self.config.governor, self.sensors.latest)

    # -- lifecycle ------------------------------------------------------------------------
    def load(self) -> None:
        """Models and bundle: any problem here is a config problem (exit 78)."""
        from runtime.models.ncnn_model import ModelError
        cfg = self.config
        try:
            self.bundle = load_bundle(cfg.avatar.bundle)
            audio_model = AudioModel(cfg.models.audio, cfg.models.threads, cfg.models.vulkan)
            self.renderer = self._make_renderer()
        except ModelError as err:
            raise ApplianceError(str(err), exit_code=78) from None
        if self.bundle.fixture:
            log.warning("avatar bundle %s is a TEST FIXTURE, not a product avatar", self.bundle.path)
        self.analyzer = MouthAnalyzer(audio_model, self.track, self.timer)
        self.compositor = Compositor(self.bundle.mask)
        # Sensors also feed status (temperature) when the level is fixed; sampled from open().
        self.sensors = self._make_sensors()
        self.quality = self._make_quality()

    def open(self) -> None:
        from runtime.audio.source import AudioSourceError
        cfg = self.config
        if self.sensors is not None:  # started here, not in load(): a reload's replacement
            self.sensors.start()  # must not sample before it runs
        self.source = self._make_source()
        if isinstance(self.source, StreamSource):
            self.pushed = self.source  # POST /say and the speech socket: the same queue
        else:
            from runtime.audio.preempt import PreemptingSource
            self.pushed = self._make_pushed()
            self.source = PreemptingSource(self.source, self.pushed)
        try:
            self.source.open()
        except AudioSourceError as err:
            raise ApplianceError(f"audio source '{cfg.audio.source}': {err}") from None
        if cfg.audio.playback.enabled:
            self.speaker = self._make_speaker()
            try:
                self.speaker.open()
                self.clock = PlaybackClock(self.speaker.position_samples)
            except AudioSourceError as err:
                log.warning("speaker unavailable (%s): picture follows a monotonic clock", err)
                self.speaker = None
        if self.clock is None and self.source.live:
            delay = self.analyzer.latency_s + 2 * SAMPLES_PER_FRAME / SAMPLE_RATE
            self.clock = CaptureClock(self.timeline.written, delay_s=delay)
        if self.clock is None:
            self.clock = MonotonicClock()
        lead = max(cfg.audio.lead_ms / 1000, self.analyzer.latency_s + 0.08)
        self.ingest = Ingest(self.source, self.clock.now_s, self.timeline, self.analyzer,
                             IngestSettings(lead_s=lead, silence_lead_s=self.analyzer.latency_s + 0.06),
                             speaker=self.speaker)
        try:
            sink, note = self._make_sink()
        except DisplayError as err:
            raise ApplianceError(f"display: {err}") from None
        self.slot = SinkSlot(sink, self.bundle.frame_size, note)
        self.report.sink_note = note  # why a fallback sink is in use
        log.info("clock: %s; source: %s; sink: %s; quality: %s", self.clock.name,
                 cfg.audio.source, self.sink.name, self.quality.level().label)

    def stop(self) -> None:
        self._stop.set()

    def barge_in(self, requested_at: float | None = None) -> None:
        """Stop speaking now: flush source, timeline, speaker, features, model, track.

        `requested_at` (monotonic) starts the latency measurement: it ends when the first
        frame after the cut is shown (stats.wait_mouth_closed): a closed mouth, or whatever
        comes next (a playlist's next item after its gap)."""
        if self.ingest is not None:
            heard = int(self.clock.now_s() * SAMPLE_RATE)
            self.ingest.barge_in(heard)
            # Frames from here on show the flushed state (closed mouth, or what comes next).
            self.stats.barge_in(heard // SAMPLES_PER_FRAME + 1, requested_at)

    def close(self) -> None:
        if self.sensors is not None:
            self.sensors.stop()
        if self.ingest is not None:
            self.ingest.stop()
        for part in (self.source, self.speaker):
            if part is not None:
                try:
                    part.close()
                except Exception:  # closing must never hide the reason we stopped
                    log.exception("closing %s failed", type(part).__name__)
        if self.slot is not None:
            self.slot.close()
            self.report.sink_note = self.slot.note
            self.slot = None

    # -- running ------------------------------------------------------------------------
    def run(self) -> RunReport:
        """The frame loop (frame_loop.py) until stopped, the duration passes, or a
        non-looping playlist ends."""
        cfg = self.config
        self.scheduler = FrameScheduler(self.clock.now_s)
        body = FrameBody(self.bundle, self.renderer, self.compositor, self.timer)
        limits = LoopLimits(duration_s=cfg.run.duration_s,
                            exit_at_playlist_end=cfg.audio.files.on_end == "exit")
        self.loop = FrameLoop(body=body, scheduler=self.scheduler, ingest=self.ingest,
                              track=self.track, quality=self.quality, drops=self.drops,
                              timeline=self.timeline, stats=self.stats, slot=self.slot,
                              report=self.report, limits=limits, stop=self._stop,
                              started_at=self.started_at, on_frame=self._on_frame,
                              tick=self._tick, first_frame=self._first_frame)
        try:
            return self.loop.run()
        except LoopError as err:
            self.last_error = str(err)
            raise ApplianceError(str(err)) from None
        except Exception as err:
            self.last_error = str(err)
            raise

    def status(self) -> ApplianceStatus:
        """A snapshot for the service's status, STATUS= and /metrics; safe from any thread."""
        stats = self.scheduler.stats if self.scheduler is not None else None
        slot = self.slot
        sink = slot.sink if slot is not None else None
        reading = self.sensors.latest() if self.sensors is not None else None
        snapshot = getattr(self.quality, "snapshot", None)  # only the governor has one
        return ApplianceStatus(
            source=self.source.status() if self.source is not None else None,
            pushed=self.pushed.status() if self.pushed is not None else None,
            level=self.quality.level().label if self.quality is not None else None,
            clock=self.clock.name if self.clock is not None else None,
            sink=sink.name if sink is not None else None,
            sink_note=slot.note if slot is not None else self.report.sink_note,
            display_path=(f"{sink.screen_path} ({sink.screen_path_reason}); redraws "
                          f"{sink.redraw_mode}" if getattr(sink, "screen_path", None) else None),
            fps=round(self.stats.fps(), 2),
            frames_shown=stats.shown if stats else 0,
            drops=stats.dropped if stats else 0,
            preempted=self.drops.preempted,
            drops_own_cost=self.drops.own,
            late_presents=stats.late_presents if stats else 0,
            mouth_missing=self.track.missing,
            max_av_offset_ms=round(stats.max_av_offset_s * 1000, 2) if stats else 0.0,
            recent_max_av_offset_ms=self.stats.recent_max_offset_ms(),
            barge_ins=self.stats.barge_ins,
            barge_in_latency_ms=self.stats.barge_in_latency_ms,
            temperature_c=reading.temperature_c if reading else None,
            throttled=tuple(reading.throttled) if reading else (),
            cpu_other_percent=reading.cpu_other_percent if reading else None,
            governor=snapshot() if snapshot is not None else None,
            last_error=self._problem(slot))

    def _problem(self, slot: SinkSlot | None) -> str | None:
        if self.ingest is not None and self.ingest.error:
            return self.ingest.error
        if self.last_error:
            return self.last_error
        if slot is not None:
            if slot.lost:
                return slot.lost
            # A record sink that stopped (disk full) keeps the appliance going: say why...
            if slot.sink.failure:
                return f"recording stopped: {slot.sink.failure}"
            # ...and one that went on after its encoder died (a new part): also worth a look.
            if slot.sink.incident:
                return f"recording: {slot.sink.incident}"
        return None


class SpeechControl:
    """What the control socket may do to a running appliance: queue speech, stop speaking."""

    def __init__(self, appliance: Appliance) -> None:
        self._appliance = appliance

    @property
    def ready(self) -> bool:
        """Open and running: speech can be queued and stopped."""
        appliance = self._appliance
        return appliance.ingest is not None and appliance.pushed is not None

    def say(self, stream: BinaryIO, label: str | None = None,
            abort: Callable[[], None] | None = None) -> int:
        """Queue one utterance (WAV or raw PCM in the stream format) as pushed speech; blocks
        until the stream ends. Returns the utterance id (0: the appliance stopped first)."""
        pushed = self._appliance.pushed
        if pushed is None:
            raise ApplianceError("the appliance is not running")
        return pushed.feed(stream, label, abort)

    def stop_speaking(self, requested_at: float, wait_s: float) -> float | None:
        """Barge in; ms from `requested_at` to the cut on screen, None if not within wait_s."""
        self._appliance.barge_in(requested_at=requested_at)
        return self._appliance.stats.wait_mouth_closed(wait_s)


def run_to_end(appliance: Appliance) -> RunReport:
    """Load, open, run until done, close (always). Raises ApplianceError for user errors."""
    try:
        appliance.load()
        appliance.open()
        return appliance.run()
    finally:
        appliance.close()
