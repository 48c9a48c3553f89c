"""The appliance: wires source, ingest, audio model, scheduler, renderer, compositor, sink.

    audio source -> ingest (16 kHz timeline, speaker, fbank, audio model) -> mouth track
    clock -> scheduler -> track.get(k) -> renderer(level) -> compositor -> display sink

Hardware comes from factory methods (`_make_source`, `_make_sink`, `_make_speaker`) that
tests override with fakes. Pushed speech (`say`, the control socket's POST /say) goes through
the same StreamSource as the `stream` source; over a files or mic source it pre-empts them
while it plays (runtime/audio/preempt.py). The service layer (runtime/service/supervisor.py) watches the
loop through `tick` (once per shown frame) and `status()`; both stay cheap.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from runtime import SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.audio.source import AudioSource
from runtime.audio.stream import StreamSource
from runtime.audio.timeline import Timeline
from runtime.config.schema import Config
from runtime.display.sink import DisplayError, DisplaySink
from runtime.quality.levels import BUDGET_S, DropLedger, FixedQuality, FrameCost, Quality, QualityPolicy
from runtime.quality.sensors import SensorSampler, discover
from runtime.quality.transition import LevelTransition, RenderPlan
from runtime.render.bundle import AvatarBundle, load_bundle
from runtime.render.compositor import Compositor
from runtime.render.renderer import NcnnRenderer, Renderer
from runtime.schedule.clock import CaptureClock, MonotonicClock, PlaybackClock
from runtime.schedule.scheduler import FrameScheduler
from runtime.schedule.stage_timer import StageTimer
from runtime.speech.audio_model import AudioModel
from runtime.speech.ingest import Ingest, IngestSettings
from runtime.speech.mouth_track import MouthAnalyzer, MouthTrack

log = logging.getLogger(__name__)


class ApplianceError(Exception):
    """Cannot start or go on; `exit_code` 78 (EX_CONFIG) for bad config/models, else 1."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunReport:
    frames_shown: int = 0
    frames_dropped: int = 0
    #: Of the dropped frames, those another process caused by holding the core.
    frames_preempted: int = 0
    max_av_offset_ms: float = 0.0
    start_to_first_frame_s: float | None = None
    wall_s: float = 0.0
    sink_note: str | None = None
    levels: dict[str, int] = field(default_factory=dict)


#: Frames over which the live frame rate is measured (2 s at 25 fps).
_FPS_WINDOW = 50
#: Seconds of per-second picture-to-sound offset maxima kept for status().
_OFFSET_WINDOW_S = 60


class Appliance:
    def __init__(self, config: Config, *, started_at: float | None = None,
                 tick: Callable[[], None] | None = None,
                 on_frame: Callable[[int, int, object, RenderPlan, object], None] | None = None):
        self.config = config
        self.started_at = time.monotonic() if started_at is None else started_at
        # Called from the frame loop after every shown frame (watchdog, status): keep it cheap.
        self._tick = tick
        # (frame, template index, params, plan, crop) of every shown frame, for the bench's
        # lip-sync measurement; None on a kiosk.
        self._on_frame = on_frame
        # Own-cost drops follow a frame that used more than the step-up headroom itself.
        self.drops = DropLedger(config.governor.step_up_cost * BUDGET_S)
        self.transition: LevelTransition | None = None
        self.timer = StageTimer()
        self.track = MouthTrack()
        self.timeline = Timeline()
        self._stop = threading.Event()
        self.report = RunReport()
        self.bundle: AvatarBundle | None = None
        self.renderer: Renderer | None = None
        self.quality: QualityPolicy | None = None
        self.sensors: SensorSampler | None = None
        self.source: AudioSource | None = None
        self.sink: DisplaySink | None = None
        self.scheduler_stats = None
        self.ingest: Ingest | None = None
        self.speaker = None
        self.clock = None
        self.pushed: StreamSource | None = None
        self.scheduler: FrameScheduler | None = None
        self._shown_at: deque[float] = deque(maxlen=_FPS_WINDOW)
        # (whole second, max |offset| s in it): the recent picture-to-sound offset.
        self._offsets: deque[list] = deque(maxlen=_OFFSET_WINDOW_S)
        self._barge_at: float | None = None  # when a barge-in waits for its first cut frame
        self._barge_cut = 0  # the first frame index after the cut
        self._mouth_closed = threading.Event()  # set when that frame is shown
        self.barge_in_latency_ms: float | None = None
        self.barge_ins = 0
        self.last_offset_s = 0.0  # picture-to-sound offset of the last shown frame
        self.last_error: str | None = None

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
            self.sink, self.report.sink_note = self._make_sink()
        except DisplayError as err:
            raise ApplianceError(f"display: {err}") from None
        log.info("clock: %s; source: %s; sink: %s; quality: %s", self.clock.name,
                 cfg.audio.source, self.sink.name, self.quality.level().label)

    def stop(self) -> None:
        self._stop.set()

    def barge_in(self, requested_at: float | None = None) -> None:
        """Stop speaking now: flush source, timeline, speaker, features, model, track.

        `requested_at` (monotonic) starts the latency measurement: it ends when the first
        frame after the cut is shown (`barge_in_latency_ms`): a closed mouth, or whatever
        comes next (a playlist's next item after its gap)."""
        if self.ingest is not None:
            heard = int(self.clock.now_s() * SAMPLE_RATE)
            self.ingest.barge_in(heard)
            self.barge_ins += 1
            self._mouth_closed.clear()
            # Frames from here on show the flushed state (closed mouth, or what comes next).
            self._barge_cut = heard // SAMPLES_PER_FRAME + 1
            self._barge_at = time.monotonic() if requested_at is None else requested_at

    def wait_mouth_closed(self, timeout_s: float) -> float | None:
        """After barge_in(): ms from the request to the closed mouth on screen, or None if
        no such frame was shown within timeout_s."""
        if self._mouth_closed.wait(timeout_s):
            return self.barge_in_latency_ms
        return None

    def say(self, stream: BinaryIO, label: str | None = None,
            abort: Callable[[], None] | None = None) -> int:
        """Queue one utterance (WAV or raw PCM in the stream format) as pushed speech; blocks
        until the stream ends. Returns the utterance id."""
        if self.pushed is None:
            raise ApplianceError("the appliance is not running")
        return self.pushed.feed(stream, label, abort)

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
        if self.sink is not None:
            note = self.sink.close()
            if note:
                self.report.sink_note = note
            self.sink = None

    # -- the frame loop -------------------------------------------------------------------
    def run(self) -> RunReport:
        """Blocks until stopped, the duration passes, or a non-looping playlist ends."""
        cfg, bundle = self.config, self.bundle
        scheduler = self.scheduler = FrameScheduler(self.clock.now_s)
        duration = cfg.run.duration_s
        fed_audio = 0
        feed_audio = getattr(self.sink, "feed_audio", None)
        transition = self.transition = LevelTransition(self.quality.level())
        self.drops.restart()
        self.ingest.start()
        run_start = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.ingest.error:
                    raise ApplianceError(self.ingest.error)
                frame = scheduler.next_frame()
                audio_pos = frame * SAMPLES_PER_FRAME
                if duration is not None and audio_pos >= duration * SAMPLE_RATE:
                    break
                ended = self.ingest.ended_at
                if ended is not None and cfg.audio.files.on_end == "exit" and audio_pos >= ended:
                    break
                started, cpu_started = time.perf_counter(), time.thread_time()
                params = self.track.get(frame)
                plan = transition.plan(self.quality.level(), params)
                index = frame % bundle.frame_count
                crop = self.renderer.render(params, index, plan.level, plan.blend_from, plan.weight)
                with self.timer.measure("composite"):
                    x, y = bundle.crop_boxes[index]
                    image, dirty = self.compositor.compose(bundle.frames[index], crop, int(x), int(y), template_key=index)
                rendered = time.perf_counter()
                offset = scheduler.present_at(frame)
                slot_started = time.perf_counter()
                with self.timer.measure("present"):
                    if feed_audio is not None:
                        upto = (frame + 1) * SAMPLES_PER_FRAME
                        feed_audio(self.timeline.read(fed_audio, upto))
                        fed_audio = upto
                    self._present(image, frame, dirty)
                scheduler.shown(frame, offset)
                # The frame's busy time: the wait for its slot in present_at is not cost; the
                # wait sleeps, so the thread's CPU time over the whole frame is its own cost.
                busy = (rendered - started) + (time.perf_counter() - slot_started)
                cpu = time.thread_time() - cpu_started
                own, preempted = self.drops.split(scheduler.stats.dropped)
                self.drops.shown(cpu)
                self._after_frame(frame, offset)
                self.quality.observe(FrameCost(busy, cpu, own, preempted, plan.level, plan.blended))
                if self._on_frame is not None:
                    self._on_frame(frame, index, params, plan, crop)
                label = plan.level.label
                self.report.levels[label] = self.report.levels.get(label, 0) + 1
                if self.report.start_to_first_frame_s is None:
                    self.report.start_to_first_frame_s = time.monotonic() - self.started_at
                    self.on_first_frame()
                if self._tick is not None:
                    self._tick()
                if self.sink.poll_quit():
                    log.info("quit requested from the display")
                    break
        except Exception as err:
            self.last_error = str(err)
            raise
        finally:
            stats = scheduler.stats
            self.report.frames_shown = stats.shown
            self.report.frames_dropped = stats.dropped
            self.report.frames_preempted = self.drops.preempted
            self.report.max_av_offset_ms = round(stats.max_av_offset_s * 1000, 2)
            self.report.wall_s = time.monotonic() - run_start
            self.scheduler_stats = stats
        return self.report

    def _present(self, image, frame: int, dirty) -> None:
        try:
            self.sink.present(image, frame, dirty)
        except DisplayError as err:
            from runtime.display.null import NullSink
            # A display that dies mid-run must not stop the speech: go on showing nothing
            # (and say so); a restart of the service brings the display back.
            self.last_error = f"display lost: {err}"
            log.error("display lost (%s): going on without a picture", err)
            note = self.sink.close()
            self.report.sink_note = note or self.report.sink_note
            self.sink = NullSink()
            self.sink.open(self.bundle.frame_size)

    def _after_frame(self, frame: int, offset_s: float) -> None:
        now = time.monotonic()
        self.last_offset_s = offset_s
        self._shown_at.append(now)
        second = int(now)
        if self._offsets and self._offsets[-1][0] == second:
            self._offsets[-1][1] = max(self._offsets[-1][1], abs(offset_s))
        else:
            self._offsets.append([second, abs(offset_s)])
        if self._barge_at is not None and frame >= self._barge_cut:
            self.barge_in_latency_ms = round((now - self._barge_at) * 1000, 1)
            self._barge_at = None
            self._mouth_closed.set()
            log.info("barge-in: mouth closed %.0f ms after the request", self.barge_in_latency_ms)

    def on_first_frame(self) -> None:
        """Hook: the service layer sends READY=1 here."""

    def fps(self) -> float:
        shown = list(self._shown_at)
        if len(shown) < 2 or time.monotonic() - shown[-1] > 1.0:
            return 0.0  # nothing shown for a second: the loop is not running
        return (len(shown) - 1) / (shown[-1] - shown[0])

    def status(self) -> dict:
        """A snapshot for the control socket and STATUS=; safe from any thread."""
        stats = self.scheduler.stats if self.scheduler is not None else None
        recent = [value for second, value in list(self._offsets)
                  if second >= time.monotonic() - _OFFSET_WINDOW_S]
        ingest_error = self.ingest.error if self.ingest is not None else None
        # A record sink that stopped (disk full) keeps the appliance going: say why here.
        sink_failure = getattr(self.sink, "failure", None)
        # ...and one that went on after its encoder died (a new part): also worth a look.
        sink_incident = getattr(self.sink, "incident", None)
        reading = self.sensors.latest() if self.sensors is not None else None
        snapshot = getattr(self.quality, "snapshot", None)
        return {"source": self.source.status() if self.source is not None else None,
                "pushed": self.pushed.status() if self.pushed is not None else None,
                "level": self.quality.level().label if self.quality is not None else None,
                "clock": getattr(self.clock, "name", None),
                "sink": getattr(self.sink, "name", None),
                "sink_note": self.report.sink_note,  # why a fallback sink is in use
                "fps": round(self.fps(), 2),
                "frames_shown": stats.shown if stats else 0,
                "dropped": stats.dropped if stats else 0,
                "preempted": self.drops.preempted,
                "dropped_own_cost": self.drops.own,
                "late_presents": stats.late_presents if stats else 0,
                "max_av_offset_ms": round(stats.max_av_offset_s * 1000, 2) if stats else 0.0,
                "recent_max_av_offset_ms": round(max(recent, default=0.0) * 1000, 2),
                "barge_ins": self.barge_ins,
                "barge_in_latency_ms": self.barge_in_latency_ms,
                "temperature_c": reading.temperature_c if reading else None,
                "throttled": list(reading.throttled) if reading else [],
                "cpu_other_percent": reading.cpu_other_percent if reading else None,
                "governor": snapshot() if snapshot is not None else None,
                "last_error": ingest_error or self.last_error
                or (f"recording stopped: {sink_failure}" if sink_failure else None)
                or (f"recording: {sink_incident}" if sink_incident else None)}


def run_to_end(appliance: Appliance) -> RunReport:
    """Load, open, run until done, close (always). Raises ApplianceError for user errors."""
    try:
        appliance.load()
        appliance.open()
        return appliance.run()
    finally:
        appliance.close()
