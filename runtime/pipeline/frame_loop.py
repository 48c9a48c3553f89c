"""The frame loop: the audio clock decides which frame is due, the frame body renders it.

    scheduler.next_frame() -> params of that frame (mouth track) -> level plan (quality,
    transition) -> body.prepare -> wait for the frame's slot -> body.show -> costs to the
    quality policy, live statistics, callbacks

A frame's cost for the governor is its own work: the wait for its slot sleeps and is not
counted, and CPU time (`time.thread_time`) tells the frame thread's work from time another
process held the core.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime import SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.audio.timeline import Timeline
from runtime.display.null import NullSink
from runtime.display.sink import DisplayError, DisplaySink
from runtime.quality.levels import DropLedger, FrameCost, QualityPolicy
from runtime.quality.transition import LevelTransition
from runtime.schedule.scheduler import FrameScheduler
from runtime.speech.ingest import Ingest
from runtime.speech.mouth_track import MouthTrack
from .frame_body import FrameBody, PreparedFrame
from .live_stats import LiveStats

log = logging.getLogger(__name__)


class LoopError(Exception):
    """The loop cannot go on (the audio intake failed); one-line reason."""


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


@dataclass(frozen=True)
class LoopLimits:
    """When the loop ends by itself (else only on stop() or a quit from the display)."""

    duration_s: float | None = None
    #: A non-looping playlist with on_end: exit ends the run after its last sample.
    exit_at_playlist_end: bool = False


class SinkSlot:
    """The sink frames go to. A display that dies mid-run must not stop the speech: it is
    replaced by a NullSink (and the reason kept); a service restart brings it back."""

    def __init__(self, sink: DisplaySink, frame_size: tuple[int, int], note: str | None = None):
        self.sink, self.frame_size, self.note = sink, frame_size, note
        self.lost: str | None = None

    def display_lost(self, err: DisplayError) -> None:
        self.lost = f"display lost: {err}"
        log.error("display lost (%s): going on without a picture", err)
        self.note = self.sink.close() or self.note
        self.sink = NullSink()
        self.sink.open(self.frame_size)

    def close(self) -> None:
        self.note = self.sink.close() or self.note


#: (frame, template index, params, plan, crop) of every shown frame (the bench's lip-sync
#: measurement); None on a kiosk.
OnFrame = Callable[[int, int, object, object, object], None]


class FrameLoop:
    def __init__(self, *, body: FrameBody, scheduler: FrameScheduler, ingest: Ingest,
                 track: MouthTrack, quality: QualityPolicy, drops: DropLedger,
                 timeline: Timeline, stats: LiveStats, slot: SinkSlot, report: RunReport,
                 limits: LoopLimits, stop: threading.Event, started_at: float,
                 on_frame: OnFrame | None = None, tick: Callable[[], None] | None = None,
                 first_frame: Callable[[], None] | None = None) -> None:
        self.body, self.scheduler, self.ingest, self.track = body, scheduler, ingest, track
        self.quality, self.drops, self.timeline, self.stats = quality, drops, timeline, stats
        self.slot, self.report, self.limits, self._stop = slot, report, limits, stop
        self.started_at = started_at
        self._on_frame, self._tick, self._first_frame = on_frame, tick, first_frame
        self.transition = LevelTransition(quality.level())
        self._fed_audio = 0  # timeline samples handed to a recording sink

    def run(self) -> RunReport:
        """Blocks until stopped, the duration passes, or a non-looping playlist ends."""
        scheduler, report = self.scheduler, self.report
        self.drops.restart()
        self.ingest.start()
        run_start = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.ingest.error:
                    raise LoopError(self.ingest.error)
                frame = scheduler.next_frame()
                if self._ends_before(frame):
                    break
                self._one_frame(frame)
                if report.start_to_first_frame_s is None:
                    report.start_to_first_frame_s = time.monotonic() - self.started_at
                    if self._first_frame is not None:
                        self._first_frame()
                if self._tick is not None:
                    self._tick()
                if self.slot.sink.poll_quit():
                    log.info("quit requested from the display")
                    break
        finally:
            stats = scheduler.stats
            report.frames_shown = stats.shown
            report.frames_dropped = stats.dropped
            report.frames_preempted = self.drops.preempted
            report.max_av_offset_ms = round(stats.max_av_offset_s * 1000, 2)
            report.wall_s = time.monotonic() - run_start
        return report

    def _ends_before(self, frame: int) -> bool:
        audio_pos = frame * SAMPLES_PER_FRAME
        limits = self.limits
        if limits.duration_s is not None and audio_pos >= limits.duration_s * SAMPLE_RATE:
            return True
        ended = self.ingest.ended_at
        return limits.exit_at_playlist_end and ended is not None and audio_pos >= ended

    def _one_frame(self, frame: int) -> None:
        scheduler = self.scheduler
        started, cpu_started = time.perf_counter(), time.thread_time()
        params = self.track.get(frame)
        plan = self.transition.plan(self.quality.level(), params)
        render_cpu = time.thread_time()
        prepared = self.body.prepare(frame, params, plan)
        render_cpu = time.thread_time() - render_cpu  # what a lower level removes
        rendered = time.perf_counter()
        offset = scheduler.present_at(frame)
        slot_started = time.perf_counter()
        self._show(prepared)
        scheduler.shown(frame, offset)
        # The frame's busy time: the wait for its slot in present_at is not cost; the wait
        # sleeps, so the thread's CPU time over the whole frame is its own cost.
        busy = (rendered - started) + (time.perf_counter() - slot_started)
        cpu = time.thread_time() - cpu_started
        self.body.timer.add("frame", cpu)
        own, preempted = self.drops.split(scheduler.stats.dropped)
        self.drops.shown(cpu)
        self.stats.frame_shown(frame, offset)
        self.quality.observe(FrameCost(busy, cpu, own, preempted, plan.level, plan.blended,
                                       render_cpu_s=render_cpu))
        if self._on_frame is not None:
            self._on_frame(frame, prepared.template_index, params, plan, prepared.crop)
        label = plan.level.label
        self.report.levels[label] = self.report.levels.get(label, 0) + 1

    def _show(self, prepared: PreparedFrame) -> None:
        sink = self.slot.sink  # read every frame: a lost display swaps it
        audio = None
        if sink.wants_audio:
            upto = (prepared.number + 1) * SAMPLES_PER_FRAME
            audio = self.timeline.read(self._fed_audio, upto)
            self._fed_audio = upto
        try:
            self.body.show(prepared, sink, audio)
        except DisplayError as err:
            self.slot.display_lost(err)
