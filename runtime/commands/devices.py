"""`edgemate devices`: what this box offers: audio in/out, displays, thermal sensors."""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from runtime.system.quiet import quiet_stderr

log = logging.getLogger(__name__)

#: Linux sensor nodes (sysfs); none of them exists on macOS.
THERMAL_ZONE_GLOB = "/sys/class/thermal/thermal_zone*"
PI_THROTTLE_NODE = "/sys/devices/platform/soc/soc:firmware/get_throttled"
X86_COUNTER_GLOB = "/sys/devices/system/cpu/cpu*/thermal_throttle/core_throttle_count"


def _no_display_hint() -> str:
    """Where a box with no screen gets one: KMSDRM exists on Linux only."""
    if sys.platform == "darwin":
        return ("a Mac shows a window only in a logged-in user's session: run it as a "
                "LaunchAgent, see systemd/README.md")
    return "a console kiosk uses display.driver: kmsdrm"


def _open_pyaudio():
    """(PyAudio instance, None) or (None, reason) when PyAudio is missing."""
    from runtime.audio.devices import load_pyaudio
    from runtime.audio.source import AudioSourceError
    try:
        pyaudio = load_pyaudio(None, "listing audio devices")
    except AudioSourceError as err:
        return None, str(err)
    try:
        with quiet_stderr():  # PortAudio/ALSA print pages of probing noise
            return pyaudio.PyAudio(), None
    except OSError as err:  # PortAudio without any host API it can start
        return None, f"PortAudio cannot start: {err}"


def audio_devices(direction: str) -> tuple[list[str], str | None]:
    """Names and rates of the input or output devices, or ([], reason)."""
    from runtime.audio.devices import list_devices
    pa, reason = _open_pyaudio()
    if pa is None:
        return [], reason
    try:
        key = "maxInputChannels" if direction == "input" else "maxOutputChannels"
        return [f"{d['name']} ({int(d[key])} ch, {int(d['defaultSampleRate'])} Hz)"
                for d in list_devices(pa, direction)], None
    finally:
        pa.terminate()


def find_input_device(substring: str) -> tuple[bool, str]:
    """Whether the mic source would find its device, and a line saying which or why not."""
    from runtime.audio.devices import find_device
    from runtime.audio.source import AudioSourceError
    pa, reason = _open_pyaudio()
    if pa is None:
        return False, reason
    try:
        info = find_device(pa, substring, "input")
        return True, f"'{info['name']}' at {int(info['defaultSampleRate'])} Hz"
    except AudioSourceError as err:
        return False, str(err)
    finally:
        pa.terminate()


def displays() -> tuple[list[str], str | None]:
    """Desktop sizes SDL can see with its default driver, or the reason it sees none."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as err:
        return [], f"no display (pygame is not installed: pip install pygame-ce; {err})"
    try:
        with quiet_stderr():
            pygame.display.init()
            sizes = pygame.display.get_desktop_sizes()
            driver = pygame.display.get_driver()
    except pygame.error as err:
        return [], f"no display: {' '.join(str(err).split())} ({_no_display_hint()})"
    finally:
        with quiet_stderr():
            pygame.display.quit()
    if driver in ("offscreen", "dummy"):  # SDL's stand-ins when nothing can be shown
        return [], (f"no display (SDL fell back to its '{driver}' driver; "
                    f"{_no_display_hint()})")
    return [f"{w}x{h} (SDL driver {driver})" for w, h in sizes], None


def thermal_sensors() -> list[str]:
    """Every temperature and throttle source seen here; [] on a box with none (macOS has
    no /sys and no psutil.sensors_temperatures)."""
    found = []
    for zone in sorted(glob.glob(THERMAL_ZONE_GLOB)):
        with contextlib.suppress(OSError, ValueError):
            kind = Path(zone, "type").read_text().strip()
            temp = int(Path(zone, "temp").read_text()) / 1000
            found.append(f"{zone}: {kind} {temp:.1f} C")
    found += _psutil_temperatures()
    if os.path.exists(PI_THROTTLE_NODE):
        found.append(f"{PI_THROTTLE_NODE}: Raspberry Pi throttle flags")
    counters = glob.glob(X86_COUNTER_GLOB)
    if counters:
        found.append(f"x86 thermal throttle counters on {len(counters)} CPUs")
    if sys.platform == "darwin" and shutil.which("pmset"):
        try:
            out = subprocess.run(["pmset", "-g", "therm"], capture_output=True, text=True,
                                 timeout=2, stdin=subprocess.DEVNULL)
            found.append("macOS pmset -g therm: " + " ".join(out.stdout.split())[:80])
        except (OSError, subprocess.SubprocessError) as err:
            log.debug("pmset -g therm: %s", err)
    return found


def _psutil_temperatures() -> list[str]:
    try:
        import psutil
        chips = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
    except Exception as err:  # noqa: BLE001 - psutil raises odd errors on odd hwmon drivers
        log.debug("psutil temperatures: %s", err)
        return []
    return [f"psutil {chip}/{reading.label or '-'}: {reading.current:.1f} C"
            for chip, readings in chips.items() for reading in readings
            if reading.current is not None]


def governor_sensors() -> list[str]:
    """What the quality governor would read on this box (shipped default settings)."""
    from runtime.config.loader import ConfigError, load_config
    from runtime.quality.sensors import discover
    try:
        found = discover(load_config().governor.sensors)
    except ConfigError:
        return []
    lines = found.describe()
    if found.temperature is None and not found.throttles:
        lines.append("no temperature or throttle sensor: it decides from its own frame "
                     "cost and drops")
    return lines


def print_devices() -> int:
    for title, direction in (("Audio inputs", "input"), ("Audio outputs", "output")):
        names, reason = audio_devices(direction)
        print(f"{title}:")
        print("\n".join(f"  {n}" for n in names) if names else f"  {reason or 'none'}")
    sizes, why = displays()
    print("Displays:")
    print("\n".join(f"  {s}" for s in sizes) if sizes else f"  {why}")
    sensors = thermal_sensors()
    print("Thermal sensors:")
    print("\n".join(f"  {s}" for s in sensors) if sensors else
          "  none found (the quality governor then decides from frame cost and drops)")
    print("Quality governor reads:")
    print("\n".join(f"  {line}" for line in governor_sensors()) or "  nothing (config unreadable)")
    return 0
