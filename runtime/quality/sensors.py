"""Thermal, throttle and CPU-load sensors for the quality governor; each one optional.

    temperature: a configured file, else the Linux thermal zone whose `type` is the CPU/SoC,
                 else psutil's sensors (Linux/FreeBSD only)
    throttling:  Raspberry Pi firmware flags, x86 thermal-throttle counters (deltas),
                 macOS `pmset -g therm` (no root; a subprocess with a timeout)
    CPU load:    psutil, this process left out (its own rendering is not "the box is busy")

A `SensorSampler` reads them in a thread about once a second and keeps the latest `Reading`;
the frame loop only ever takes that reference. A sensor that vanishes, holds garbage or
cannot be opened gives no value and never raises: a box with no sensors at all (many x86
VMs) runs the governor on frame cost and drops alone.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

log = logging.getLogger(__name__)

THERMAL_ROOT = Path("/sys/class/thermal")
PI_THROTTLE_NODE = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
X86_THROTTLE_GLOB = "/sys/devices/system/cpu/cpu*/thermal_throttle/*_throttle_count"
#: Raspberry Pi firmware flag bits that hold *now* (bits 16-19 say "since boot": not used).
PI_FLAGS = {0: "under-voltage", 1: "frequency capped", 2: "throttled", 3: "soft temperature limit"}
#: psutil chips that are the CPU/SoC, in order of preference.
_PSUTIL_CHIPS = ("coretemp", "k10temp", "cpu_thermal", "cpu-thermal", "soc_thermal", "zenpower")


@dataclass(frozen=True)
class Reading:
    """One sample of every sensor; None / () where a sensor is missing or failed."""

    at: float = 0.0  # monotonic seconds of the sample
    temperature_c: float | None = None
    temperature_source: str | None = None
    #: Throttle conditions that hold now, by name ("throttled", "x86 thermal throttle", ...).
    throttled: tuple[str, ...] = ()
    #: CPU used by other processes, in % of all cores (this process left out).
    cpu_other_percent: float | None = None


NO_READING = Reading()


def parse_temperature(text: str) -> float:
    """Degrees C from "54.3", or sysfs millidegrees "54321"; ValueError on anything else."""
    value = float(text.strip().split()[0])
    if value != value or abs(value) == float("inf"):
        raise ValueError(f"not a temperature: {text.strip()[:20]!r}")
    # No SoC runs at 200 C: a larger number is millidegrees, as the kernel writes them.
    return value / 1000.0 if abs(value) > 200 else value


def _read_small(path: Path) -> str:
    # One short read: sysfs nodes are a line; a runaway file must not stall the sampler.
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read(64)


class FileTemperature:
    """A file holding one temperature: a thermal zone's `temp`, or a configured file."""

    def __init__(self, path: Path, source: str):
        self.path = Path(path)
        self.source = source

    def read(self) -> float:
        return parse_temperature(_read_small(self.path))


def find_thermal_zone(types: Sequence[str], root: Path = THERMAL_ROOT) -> tuple[Path, str] | None:
    """(zone directory, type) of the most preferred CPU/SoC zone, chosen by its `type`."""
    found: dict[str, Path] = {}
    for zone in sorted(Path(root).glob("thermal_zone*")):
        with contextlib.suppress(OSError, UnicodeError):
            kind = _read_small(zone / "type").strip()
            found.setdefault(kind, zone)  # the lowest-numbered zone of a type
    wanted = [kind for kind in types if kind in found]
    return (found[wanted[0]], wanted[0]) if wanted else None


class PsutilTemperature:
    """The CPU chip of psutil.sensors_temperatures() (hwmon): the hottest of its readings."""

    source = "psutil"

    def __init__(self, chip: str):
        self.chip = chip
        self.source = f"psutil {chip}"

    @staticmethod
    def find() -> PsutilTemperature | None:
        try:
            import psutil
            chips = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
        except Exception:  # noqa: BLE001 - psutil raises odd errors on odd hwmon drivers
            return None
        names = [chip for chip in _PSUTIL_CHIPS if chips.get(chip)]
        return PsutilTemperature(names[0]) if names else None

    def read(self) -> float:
        import psutil
        entries = psutil.sensors_temperatures().get(self.chip) or []
        values = [entry.current for entry in entries if entry.current is not None]
        if not values:
            raise ValueError(f"psutil chip {self.chip} gave no reading")
        return max(values)


class PiThrottle:
    """Raspberry Pi firmware flags: hex "50005" (sysfs) or "throttled=0x50005" (vcgencmd)."""

    name = "Raspberry Pi throttle flags"

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> tuple[str, ...]:
        text = _read_small(self.path).strip()
        flags = int(text.rpartition("=")[2], 16)
        return tuple(label for bit, label in PI_FLAGS.items() if flags & (1 << bit))


class X86Throttle:
    """Core and package thermal-throttle counters: any increase since the last sample."""

    name = "x86 thermal throttle counters"

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)
        self._last: int | None = None

    def read(self) -> tuple[str, ...]:
        total = 0
        for path in self.paths:
            with contextlib.suppress(OSError, ValueError):  # a CPU taken offline
                total += int(_read_small(Path(path)))
        previous, self._last = self._last, total
        return ("x86 thermal throttle",) if previous is not None and total > previous else ()


def parse_pmset_therm(text: str) -> tuple[str, ...]:
    """Throttle conditions in `pmset -g therm` output (Intel and Apple silicon Macs)."""
    found = []
    speed = re.search(r"CPU_Speed_Limit\s*=\s*(\d+)", text)
    if speed and int(speed.group(1)) < 100:
        found.append(f"macOS CPU speed limit {speed.group(1)}%")
    for kind in ("thermal", "performance"):
        # The level's number is on its own line: "No thermal warning level has been
        # recorded" followed by a timestamped "CPU Power notify" block must not read as 2024.
        level = re.search(rf"{kind} warning level[^\d\n]*(\d+)", text, re.IGNORECASE)
        if level and int(level.group(1)) > 0:
            found.append(f"macOS {kind} warning level {level.group(1)}")
    return tuple(found)


class PmsetThermal:
    """macOS thermal pressure from `pmset -g therm`, at most every `interval_s` (a process
    start costs milliseconds), killed after `timeout_s` so a hung pmset cannot stall us."""

    name = "macOS pmset -g therm"

    def __init__(self, interval_s: float, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run):
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._run = run
        self._next = 0.0
        self._last: tuple[str, ...] = ()

    def read(self) -> tuple[str, ...]:
        now = self._clock()
        if now < self._next:
            return self._last
        self._next = now + self.interval_s
        self._last = ()  # a failed run below leaves no stale pressure behind
        out = self._run(["pmset", "-g", "therm"], capture_output=True, text=True,
                        timeout=self.timeout_s, check=False)
        self._last = parse_pmset_therm(out.stdout or "")
        return self._last


class CpuLoad:
    """CPU used by other processes (% of all cores) since the previous call (psutil).

    Niced processes (nice > 0: batch jobs, indexers) yield to a process at nice 0 and are
    left out, as is this process itself; hypervisor steal is counted: it delays us too."""

    name = "CPU load (psutil)"

    def __init__(self):
        import psutil
        self._psutil = psutil
        self._cpus = psutil.cpu_count() or 1
        self._process = psutil.Process()
        self._we_are_niced = os.nice(0) > 0  # then our own time is in "nice", not "user"
        self._primed = False

    def read(self) -> float | None:
        times = self._psutil.cpu_times_percent(interval=None)
        ours = self._process.cpu_percent(interval=None) / self._cpus
        if not self._primed:  # psutil's first call has nothing to compare with
            self._primed = True
            return None
        spare = times.idle + getattr(times, "iowait", 0.0) + getattr(times, "nice", 0.0)
        busy = 100.0 - spare - (0.0 if self._we_are_niced else ours)
        return round(min(100.0, max(0.0, busy)), 1)


@dataclass
class SensorSet:
    """The sensors found on this box (any may be missing)."""

    temperature: FileTemperature | PsutilTemperature | None = None
    throttles: tuple = ()
    cpu: CpuLoad | None = None

    def describe(self) -> list[str]:
        lines = []
        if self.temperature is not None:
            where = getattr(self.temperature, "path", None)
            lines.append(f"temperature: {self.temperature.source}"
                         + (f" ({where})" if where else ""))
        lines += [getattr(sensor, "name", type(sensor).__name__) for sensor in self.throttles]
        if self.cpu is not None:
            lines.append(self.cpu.name)
        return lines


def _quietly(probe: Callable):
    # Discovery looks at /sys paths that a sandbox (systemd ProtectKernelTunables, a
    # container) may hide or forbid: that is "no sensor", not an error.
    try:
        return probe()
    except OSError:
        return None


def discover(settings, *, system: str | None = None, thermal_root: Path | None = None,
             pi_node: Path | None = None, x86_glob: str | None = None,
             use_psutil: bool = True) -> SensorSet:
    """The sensors of this box for `settings` (config `governor.sensors`); never raises.
    `system`: platform.system() ("Linux", "Darwin"); default: this one. The paths default
    to the module's constants, looked up now (a test points them elsewhere)."""
    system = system or ("Darwin" if sys.platform == "darwin" else platform.system())
    thermal_root = THERMAL_ROOT if thermal_root is None else thermal_root
    pi_node = PI_THROTTLE_NODE if pi_node is None else pi_node
    x86_glob = X86_THROTTLE_GLOB if x86_glob is None else x86_glob
    found = SensorSet()
    if settings.temperature_file is not None:
        # Configured: used even while it does not exist yet (a scripted file may appear later).
        found.temperature = FileTemperature(settings.temperature_file, "file")
    else:
        zone = _quietly(lambda: find_thermal_zone(settings.zone_types, thermal_root))
        if zone is not None:
            found.temperature = FileTemperature(zone[0] / "temp", f"thermal zone {zone[1]}")
        elif use_psutil:
            found.temperature = PsutilTemperature.find()
        if found.temperature is None:
            # macOS has neither /sys nor psutil.sensors_temperatures: "unknown" is normal there.
            log.debug("no temperature sensor (no CPU thermal zone under %s%s)", thermal_root,
                      ", no CPU chip in psutil" if use_psutil else "")
    throttles: list = []
    pi_path = settings.throttle_file if settings.throttle_file is not None else pi_node
    if settings.throttle_file is not None or _quietly(Path(pi_path).exists):
        throttles.append(PiThrottle(pi_path))
    counters = sorted(glob.glob(x86_glob))
    if counters:
        throttles.append(X86Throttle(counters))
    if system == "Darwin":
        if shutil.which("pmset"):
            throttles.append(PmsetThermal(settings.pmset_interval_s, settings.pmset_timeout_s))
        else:  # launchd's PATH always has /usr/bin; a stripped PATH does not
            log.info("pmset not on PATH: no macOS thermal pressure reading")
    found.throttles = tuple(throttles)
    if use_psutil:
        try:
            found.cpu = CpuLoad()
        except Exception as err:  # noqa: BLE001 - psutil missing or broken: no CPU load
            log.warning("CPU load unavailable: %s", err)
    return found


class SensorSampler:
    """Reads a SensorSet every `interval_s` in a daemon thread; `latest()` is free."""

    def __init__(self, sensors: SensorSet, interval_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.sensors = sensors
        self.interval_s = interval_s
        self._clock = clock
        self._latest = NO_READING
        self._failing: set[str] = set()  # sensors whose failure was logged (log once each)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> Reading:
        return self._latest

    def _guarded(self, sensor, default):
        key = getattr(sensor, "source", None) or getattr(sensor, "name", type(sensor).__name__)
        try:
            value = sensor.read()
        except Exception as err:  # noqa: BLE001 - a broken sensor must never stop the loop
            if key not in self._failing:
                self._failing.add(key)
                log.warning("sensor %s unreadable (%s: %s); going on without it",
                            key, type(err).__name__, err)
            return default
        if key in self._failing:
            self._failing.discard(key)
            log.info("sensor %s readable again", key)
        return value

    def sample_once(self) -> Reading:
        """Read every sensor now (the thread does this); never raises."""
        s = self.sensors
        temperature = self._guarded(s.temperature, None) if s.temperature is not None else None
        throttled: list[str] = []
        for sensor in s.throttles:
            throttled += self._guarded(sensor, ())
        cpu = self._guarded(s.cpu, None) if s.cpu is not None else None
        self._latest = Reading(
            at=self._clock(),
            temperature_c=None if temperature is None else round(float(temperature), 1),
            temperature_source=s.temperature.source if temperature is not None else None,
            throttled=tuple(throttled), cpu_other_percent=cpu)
        return self._latest

    def start(self) -> None:
        if self._thread is None:
            self.sample_once()  # a first reading before the first frame
            self._thread = threading.Thread(target=self._loop, name="edgemate-sensors",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample_once()
            except Exception:  # noqa: BLE001 - a bug here must not end the sampling for good
                log.exception("sampling the sensors failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

