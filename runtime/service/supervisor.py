"""`edgemate run` as a service: signals, reload, systemd notify, health, the control socket.

    load config -> Appliance.load() -> open -> run (frame loop) -> close
                     ^ SIGHUP: a new config and its models are loaded and checked while the
                       old appliance keeps running; only a good one replaces it.

- SIGTERM/SIGINT: STOPPING=1, the frame loop ends within a frame, devices close, the
  record sink finishes its MP4.
- SIGHUP: reload. A bad config or model file is logged (and shown by `edgemate status`),
  and the running appliance goes on untouched. Changes under `control:` need a restart.
- READY=1 after the models are loaded and the first frame is shown; STATUS= every
  `service.status_interval_s`; WATCHDOG=1 from the frame loop, only when frames advance.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable

from runtime import __version__
from runtime.config.schema import Config
from runtime.pipeline.appliance import (Appliance, ApplianceError, ApplianceStatus, RunReport,
                                        SpeechControl)
from .health import process_usage, read_temperature_c, trim_heap
from .sd_notify import Notifier
from .status import ServiceStatus, Totals

log = logging.getLogger(__name__)

#: A source read normally returns within its poll (20 ms) or its own stall timeout (a mic's
#: is a second or two); this long without one means the intake thread is stuck in it.
INTAKE_STALL_S = 5.0

#: What the service status shows of the running appliance as it is; the counts are summed
#: over every appliance this service ran instead, and last_error falls back to the service's.
_TOTALLED = {"frames_shown", "drops", "preempted", "barge_ins", "last_error"}
_CARRIED = tuple(f.name for f in dataclasses.fields(ApplianceStatus)
                 if f.name in {g.name for g in dataclasses.fields(ServiceStatus)} and f.name not in _TOTALLED)


class Service:
    """Runs appliances until stopped. `load_config()` reads the config (again on SIGHUP)."""

    def __init__(self, load_config: Callable[[], Config], *, started_at: float | None = None,
                 notifier: Notifier | None = None,
                 make_appliance: Callable[..., Appliance] = Appliance) -> None:
        self._load_config = load_config
        self.started_at = time.monotonic() if started_at is None else started_at
        self.notifier = notifier if notifier is not None else Notifier(None)
        self._make_appliance = make_appliance
        self.totals = Totals()
        self.config: Config | None = None
        self.appliance: Appliance | None = None
        self.state = "starting"
        self.last_error: str | None = None
        self.report = RunReport()
        self._stopping = threading.Event()
        self._reload_wanted = threading.Event()
        self._reload_lock = threading.Lock()  # one reload at a time
        self._next: Appliance | None = None  # a loaded replacement waiting for the swap
        self._accounted: weakref.ref | None = None  # the last appliance added to the totals
        self._ready_sent = False
        self._intake_reported = False  # the stuck intake was logged
        self._loading = False  # the first load (a cold template decode) is running
        self._instance_lock = None
        self._next_status = 0.0
        self.control = None

    # -- lifecycle --------------------------------------------------------------------
    def run(self) -> RunReport:
        """Blocks until stopped or the run ends. Raises ApplianceError (exit 78/1)."""
        from runtime.render.template_cache import STOP_DECODING
        self.config = self._load_config()
        self._lock_instance()  # before seconds of model loading: a second one stops at once
        appliance = self._new_appliance(self.config)
        try:
            self._loading = True
            if self._stopping.is_set():
                STOP_DECODING.set()
            appliance.load()  # bad models: exit 78 before anything opens
        except ApplianceError:
            self._stop_control()  # the lock
            if self._stopping.is_set():  # SIGTERM during a cold template decode: just stop
                log.info("stopped while loading the models")
                self.state = "stopped"
                return self.report
            raise
        except BaseException:
            self._stop_control()
            raise
        finally:
            self._loading = False
            STOP_DECODING.clear()  # process-wide: only ever set while this load runs
        try:
            self._start_control()
        except BaseException:
            self._stop_control()
            raise
        try:
            while True:
                self.appliance = appliance
                try:
                    appliance.open()
                    self.state = "running"
                    self._apply_pending_stop(appliance)
                    appliance.run()
                finally:
                    appliance.close()
                    self._account(appliance)
                replacement, self._next = self._next, None
                if replacement is None or self._stopping.is_set():
                    if replacement is not None:
                        replacement.close()
                    return self.report
                appliance = self.appliance = replacement
                # The old pipeline (ncnn nets, template input caches: tens of MB) is held by
                # reference cycles; free it now, before the new one starts its frame loop,
                # rather than at some later full collection (two pipelines at once on a Pi).
                gc.collect()
                # ...and hand its freed pages back to the OS: glibc keeps them as free heap
                # otherwise, and private memory then saws by the size of a pipeline.
                trim_heap()
                self.notifier.ready(status="reloaded")
        finally:
            self.state = "stopped"
            self._stop_control()

    def _new_appliance(self, config: Config) -> Appliance:
        # READY=1 on its first frame: models loaded, a frame shown.
        return self._make_appliance(config, started_at=self.started_at, tick=self._tick,
                                    first_frame=self._first_frame)

    def _apply_pending_stop(self, appliance: Appliance) -> None:
        # A SIGTERM between two appliances must stop the new one too, and a reload that
        # finished while this one was starting must replace it.
        if self._stopping.is_set() or self._next is not None:
            appliance.stop()

    def _account(self, appliance: Appliance) -> None:
        # Its counts are in the totals now: status() adds no more. A weak reference: holding
        # the old appliance would keep its models and mapped template alive after a reload.
        self._accounted = weakref.ref(appliance)
        report, totals = appliance.report, self.totals
        totals.count("frames_shown", report.frames_shown)
        totals.count("frames_dropped", report.frames_dropped)
        totals.count("frames_preempted", report.frames_preempted)
        totals.count("barge_ins", appliance.stats.barge_ins)
        self.report = report

    def stop(self) -> None:
        """From a signal handler: stop now (the loop ends within a frame)."""
        if not self._stopping.is_set():
            self._stopping.set()
            self.state = "stopping"
            self.notifier.stopping()
        if self._loading:
            from runtime.render.template_cache import STOP_DECODING
            STOP_DECODING.set()
        appliance = self.appliance
        if appliance is not None:
            appliance.stop()

    # -- reload -----------------------------------------------------------------------
    def request_reload(self) -> None:
        """From a signal handler: load and check the new config in a thread, off the loop."""
        if self._stopping.is_set():
            return
        threading.Thread(target=self.reload, name="edgemate-reload", daemon=True).start()

    def reload(self) -> bool:
        """Load the config again; swap appliances if it is good. False: kept the old one."""
        with self._reload_lock:
            self.notifier.reloading()
            self.state = "reloading"
            log.info("reloading the configuration")
            replacement = None
            try:
                config = self._load_config()
                replacement = self._new_appliance(config)
                replacement.load()  # sha256 of every model file before ncnn sees it
            except Exception as err:  # noqa: BLE001 - whatever is wrong, the old one runs on
                self.totals.count("reload_failures")
                self.last_error = f"reload rejected: {' '.join(str(err).split())}"
                log.error("%s; the running configuration stays", self.last_error)
                self.state = "running"
                self.notifier.ready(status="reload rejected, running the previous configuration")
                return False
            if self.config is not None and config.control != self.config.control:
                log.warning("control: settings changed; they take effect after a restart")
            self.config = config
            self.totals.count("reloads")
            self.last_error = None
            self._next = replacement
            current = self.appliance
            if current is not None:
                current.stop()  # the run loop swaps in the replacement
            return True

    # -- systemd ----------------------------------------------------------------------
    def _first_frame(self) -> None:
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(status=self.status_line())
            log.info("ready: first frame shown %.2f s after start",
                     time.monotonic() - self.started_at)

    def _tick(self) -> None:
        """Once per shown frame, from the frame loop: the frames advance, so ping."""
        notifier = self.notifier
        if notifier.watchdog_due() and not self._intake_stuck():
            notifier.watchdog()
        now = time.monotonic()
        if notifier.enabled and now >= self._next_status:
            self._next_status = now + self.config.service.status_interval_s
            notifier.status(self.status_line())

    def _intake_stuck(self) -> bool:
        """Frames advance, but the audio intake has not got past its source's read for
        INTAKE_STALL_S: the watchdog stops, and systemd restarts a service that would
        otherwise show a live picture and never speak again."""
        ingest = getattr(self.appliance, "ingest", None)
        stalled = ingest.stalled_s() if ingest is not None else 0.0
        if stalled < INTAKE_STALL_S:
            self._intake_reported = False
            return False
        if not self._intake_reported:
            self._intake_reported = True
            self.last_error = (f"audio intake stuck for {stalled:.0f} s (the source's read "
                               "does not return): watchdog pings stopped")
            log.error("%s", self.last_error)
        return True

    def status_line(self) -> str:
        status = self.status()
        temp = status.temperature_c
        throttled = f" (throttled: {', '.join(status.throttled)})" if status.throttled else ""
        return (f"{status.fps:.1f} fps, level {status.level}, "
                f"{'no sensor' if temp is None else f'{temp:.0f} C'}{throttled}, "
                f"{status.source}")

    # -- health -----------------------------------------------------------------------
    def status(self) -> ServiceStatus:
        appliance = self.appliance
        live = appliance.status() if appliance is not None else None
        # An appliance already added to the totals (it stopped) adds no more.
        counted = live if live is not None and not (
            self._accounted is not None and appliance is self._accounted()) else None
        # Before an appliance runs, its sensor thread has no reading: read once here.
        base = live if live is not None else ApplianceStatus(temperature_c=read_temperature_c())
        carried = {name: getattr(base, name) for name in _CARRIED}
        totals, governor = self.totals, base.governor

        def total(kept: int, name: str) -> int:
            return kept + (getattr(counted, name) if counted is not None else 0)

        return ServiceStatus(
            version=__version__, pid=os.getpid(), state=self.state,
            uptime_s=round(time.monotonic() - self.started_at, 1), **carried,
            frames_shown=total(totals.frames_shown, "frames_shown"),
            drops=total(totals.frames_dropped, "drops"),
            preempted=total(totals.frames_preempted, "preempted"),
            barge_ins=total(totals.barge_ins, "barge_ins"),
            quality_switches=governor["switch_count"] if governor else None,
            time_at_level_s=governor["time_at_level_s"] if governor else None,
            reloads=totals.reloads, reload_failures=totals.reload_failures,
            says=totals.says, says_rejected=totals.says_rejected,
            config=tuple(str(path) for path in self.config.sources) if self.config else (),
            last_error=base.last_error or self.last_error,
            **process_usage())

    def controls(self) -> SpeechControl | None:
        """What the control socket may do now (say, stop speaking); None until running."""
        appliance = self.appliance
        if appliance is None or not appliance.controls.ready:
            return None
        return appliance.controls

    # -- control socket ---------------------------------------------------------------
    def _start_control(self) -> None:
        if not self.config.control.enabled:
            log.info("control socket disabled (control.enabled: false)")
            return
        from .control import ControlServer
        self.control = ControlServer(self, self.config.control)
        try:
            self.control.start()
        except OSError as err:
            self.control = None
            raise ApplianceError(f"control socket: {err}") from None

    def _stop_control(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        if self._instance_lock is not None:
            self._instance_lock.release()
            self._instance_lock = None

    def _lock_instance(self) -> None:
        """One appliance per control (or speech) socket path, whatever happens to the files."""
        from runtime.system.unix_socket import InstanceLock
        config = self.config
        if config.control.enabled:
            path = config.control.socket
        elif config.audio.source == "stream":
            path = config.audio.stream.socket
        else:
            return  # no socket to share: several may run (each with its own display)
        lock = InstanceLock(path)
        try:
            lock.acquire()
        except OSError as err:
            raise ApplianceError(str(err)) from None
        self._instance_lock = lock


def install_signal_handlers(service: Service) -> None:
    """SIGTERM/SIGINT stop, SIGHUP reloads. Handlers only set flags and start threads."""
    def stop(signum, frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        service.stop()

    def reload(signum, frame):
        log.info("signal SIGHUP: reloading the configuration")
        service.request_reload()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    signal.signal(signal.SIGHUP, reload)
