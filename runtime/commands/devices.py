"""`edgemate devices`: what this box offers: audio in/out, displays, thermal sensors."""
from __future__ import annotations

import contextlib
import glob
import os
import platform
import shutil
import subprocess
from pathlib import Path

from runtime.system.quiet import quiet_stderr

def _open_pyaudio():
    """(PyAudio instance, None) or (None, reason) when PyAudio is missing."""
    from runtime.audio.devices import load_pyaudio
    from runtime.audio.source import AudioSourceError
    try:
        pyaudio = load_pyaudio(None, "listing audio devices")
    except AudioSourceError as err:
        return None, str(err)
    with quiet_stderr():  # PortAudio/ALSA print pages of probing noise
        return pyaudio.PyAudio(), None


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
    import pygame
    try:
        with quiet_stderr():
            pygame.display.init()
            sizes = pygame.display.get_desktop_sizes()
            driver = pygame.display.get_driver()
    except pygame.error as err:
        return [], f"no display: {err} (a console kiosk uses display.driver: kmsdrm)"
    finally:
        with quiet_stderr():
            pygame.display.quit()
    if driver in ("offscreen", "dummy"):  # SDL's stand-ins when nothing can be shown
        return [], (f"no display (SDL fell back to its '{driver}' driver; "
                    "a console kiosk uses display.driver: kmsdrm)")
    return [f"{w}x{h} (SDL driver {driver})" for w, h in sizes], None


def thermal_sensors() -> list[str]:
    found = []
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        with contextlib.suppress(OSError, ValueError):
            kind = Path(zone, "type").read_text().strip()
            temp = int(Path(zone, "temp").read_text()) / 1000
            found.append(f"{zone}: {kind} {temp:.1f} C")
    with contextlib.suppress(Exception):
        import psutil
        if hasattr(psutil, "sensors_temperatures"):
            for chip, readings in psutil.sensors_temperatures().items():
                for reading in readings:
                    found.append(f"psutil {chip}/{reading.label or '-'}: {reading.current:.1f} C")
    for node in ("/sys/devices/platform/soc/soc:firmware/get_throttled",):
        if os.path.exists(node):
            found.append(f"{node}: Raspberry Pi throttle flags")
    counters = glob.glob("/sys/devices/system/cpu/cpu*/thermal_throttle/core_throttle_count")
    if counters:
        found.append(f"x86 thermal throttle counters on {len(counters)} CPUs")
    if platform.system() == "Darwin" and shutil.which("pmset"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["pmset", "-g", "therm"], capture_output=True, text=True, timeout=2)
            found.append("macOS pmset -g therm: " + " ".join(out.stdout.split())[:80])
    return found


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
