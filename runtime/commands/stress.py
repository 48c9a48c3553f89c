"""`edgemate bench --stress / --thermal-ramp`: a busy, hot box on demand, for the governor.

    phases:  calm (calm_s) -> stress (stress_s, one busy-loop process per core) -> recover
    ramp:    a temperature file the governor reads (governor.sensors.temperature_file),
             e.g. 60 -> 86 -> 65 C: hold, rise, hold the peak, fall, then hold the end value

Load workers are plain child processes (`python -c`), so they load nothing of EdgeMate.
They are stopped on every way out: the `with` block, Ctrl-C (they are in our process group
and die on SIGINT) and our own death (each polls its parent and exits when orphaned).
The controller thread starts and stops them; the frame loop only calls `tick()` (cheap).
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .load_workers import LoadWorkers

log = logging.getLogger(__name__)

def ramp_points(start_c: float, peak_c: float, end_c: float, ramp_s: float) -> list[tuple]:
    """(t, C) corners: hold 1/8, rise 3/8, hold the peak 1/8, fall 3/8; then end_c holds."""
    eighth = ramp_s / 8
    return [(0.0, start_c), (eighth, start_c), (4 * eighth, peak_c), (5 * eighth, peak_c),
            (ramp_s, end_c)]


def temperature_at(points: list[tuple], t: float) -> float:
    if t <= points[0][0]:
        return points[0][1]
    for (t0, c0), (t1, c1) in zip(points, points[1:]):
        if t <= t1:
            return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1
    return points[-1][1]


def write_temperature(path: Path, celsius: float) -> None:
    # Replace, never rewrite in place: the sensor thread must not read a half-written file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{round(celsius * 1000)}\n")  # millidegrees, like sysfs
    os.replace(tmp, path)


@dataclass
class Phase:
    name: str
    start_s: float
    end_s: float
    shown0: int = 0
    dropped0: int = 0
    shown: int = 0
    dropped: int = 0
    max_offset_s: float = 0.0

    def as_dict(self) -> dict:
        seconds = self.end_s - self.start_s
        return {"name": self.name, "start_s": round(self.start_s, 2), "end_s": round(self.end_s, 2),
                "shown": self.shown, "dropped": self.dropped,
                "delivered_fps": round(self.shown / seconds, 2) if seconds > 0 else 0.0,
                "max_av_offset_ms": round(self.max_offset_s * 1000, 2)}


@dataclass
class StressPlan:
    """What to do when: phases (each with or without load) and an optional thermal ramp."""

    total_s: float
    workers: int = 0
    stress: tuple[float, float] | None = None  # (start_s, end_s) of the load
    ramp: list[tuple] | None = None
    ramp_file: Path | None = None
    phases: list[Phase] = field(default_factory=list)

    @classmethod
    def from_args(cls, args, dwell_s: float) -> StressPlan | None:
        """None unless --stress or --thermal-ramp. Recovery lasts long enough for two
        step-ups (PASS -> COARSE -> FULL), each after dwell_s."""
        ramp = getattr(args, "thermal_ramp", None)
        phases = args.stress == "phases"  # a tuple names co-tenant profiles (bench_cotenants)
        if not phases and ramp is None:
            return None
        recover = max(args.calm_seconds, 2 * dwell_s + 10)
        total = 0.0
        plan = cls(total_s=0.0)
        if phases:
            calm, load = args.calm_seconds, args.stress_seconds
            plan.workers = args.stress_workers or os.cpu_count() or 1
            plan.stress = (calm, calm + load)
            total = calm + load + recover
        if ramp is not None:
            plan.ramp = ramp_points(*ramp, args.ramp_seconds)
            total = max(total, args.ramp_seconds + recover)
        plan.total_s = args.seconds if args.seconds is not None else total
        if plan.stress:
            start, end = plan.stress
            plan.phases = [Phase("calm", 0.0, start), Phase("stress", start, end),
                           Phase("recover", end, plan.total_s)]
        else:
            plan.phases = [Phase("ramp", 0.0, plan.total_s)]
        return plan

    def as_dict(self) -> dict:
        return {"workers": self.workers if self.stress else 0,
                "total_s": round(self.total_s, 2),
                "phases": [phase.as_dict() for phase in self.phases],
                "thermal_ramp": None if self.ramp is None else
                {"file": str(self.ramp_file), "points": [[round(t, 2), c] for t, c in self.ramp]}}


class StressRun:
    """Runs a plan beside the appliance: a controller thread + `tick` from the frame loop."""

    def __init__(self, plan: StressPlan, poll_s: float = 0.05):
        self.plan = plan
        self.poll_s = poll_s
        self.workers = LoadWorkers(plan.workers)
        self._tmp = None
        if plan.ramp is not None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgemate-ramp-")
            plan.ramp_file = Path(self._tmp.name) / "temp"
            write_temperature(plan.ramp_file, plan.ramp[0][1])
        self._phase = 0
        self._appliance = None
        self._t0 = 0.0
        self._stop = threading.Event()

    def tick(self) -> None:
        """From the frame loop after each shown frame: the phase's worst offset."""
        appliance = self._appliance
        if appliance is not None:
            phase = self.plan.phases[self._phase]
            phase.max_offset_s = max(phase.max_offset_s, abs(appliance.stats.last_offset_s))

    def _counts(self) -> tuple[int, int]:
        scheduler = getattr(self._appliance, "scheduler", None)
        return (scheduler.stats.shown, scheduler.stats.dropped) if scheduler else (0, 0)

    def _close_phase(self, index: int) -> None:
        phase = self.plan.phases[index]
        shown, dropped = self._counts()
        phase.shown, phase.dropped = shown - phase.shown0, dropped - phase.dropped0

    def _loop(self) -> None:
        plan, last_written = self.plan, None
        while not self._stop.wait(self.poll_s):
            t = time.monotonic() - self._t0
            while self._phase + 1 < len(plan.phases) and t >= plan.phases[self._phase + 1].start_s:
                self._close_phase(self._phase)
                self._phase += 1
                nxt = plan.phases[self._phase]
                nxt.shown0, nxt.dropped0 = self._counts()
                log.info("bench phase %s at %.1f s", nxt.name, t)
            if plan.stress is not None:
                loaded = plan.stress[0] <= t < plan.stress[1]
                if loaded and not self.workers.procs:
                    self.workers.start()
                elif not loaded and self.workers.procs:
                    self.workers.stop()
            if plan.ramp is not None:
                celsius = round(temperature_at(plan.ramp, t), 1)
                if celsius != last_written:
                    write_temperature(plan.ramp_file, celsius)
                    last_written = celsius

    @contextmanager
    def running(self, appliance):
        """Drive the plan while the body runs `appliance.run()`; always stops the load."""
        self._appliance = appliance
        self._t0 = time.monotonic()
        thread = threading.Thread(target=self._loop, name="edgemate-stress", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            ended = time.monotonic() - self._t0
            self._stop.set()
            thread.join(2.0)
            self.workers.stop()
            self._close_phase(self._phase)
            self.plan.phases[self._phase].end_s = ended  # the run may end a little off plan

    def cleanup(self) -> None:
        self.workers.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _ramp(text: str) -> tuple[float, float, float]:
    try:
        start, peak, end = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,PEAK,END in C, e.g. 60,86,65 "
                                         f"(got {text!r})") from None
    return start, peak, end


def _stress(text: str) -> str | tuple[str, ...]:
    from .cotenants import parse_profiles
    if text == "phases":
        return text
    try:
        return parse_profiles(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_stress_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("governor demonstration")
    group.add_argument("--stress", nargs="?", const="phases", default=None, type=_stress,
                       metavar="PROFILES",
                       help="alone: load every core with busy-loop processes between two calm "
                       "phases; with 'all' or a comma list of quiet, tts, busy, niced, "
                       "appliance: the whole clip beside each co-tenant, with lip sync kept")
    group.add_argument("--stress-workers", type=int, default=0, metavar="N",
                       help="load processes (default: one per core)")
    group.add_argument("--stress-seconds", type=float, default=20.0, metavar="S",
                       help="length of the loaded phase (default 20)")
    group.add_argument("--calm-seconds", type=float, default=10.0, metavar="S",
                       help="calm phase before the load; the one after lasts at least this "
                       "and two governor dwells (default 10)")
    group.add_argument("--thermal-ramp", type=_ramp, nargs="?", const=(60.0, 86.0, 65.0),
                       metavar="START,PEAK,END",
                       help="feed the governor a scripted temperature file ramping through "
                       "these C (default 60,86,65)")
    group.add_argument("--ramp-seconds", type=float, default=40.0, metavar="S",
                       help="length of the ramp; the end value then holds (default 40)")
