"""`edgemate devices`: what this box offers: audio in/out, displays, thermal sensors."""
from __future__ import annotations

import contextlib
import glob
import os
import platform
import shutil
import subprocess
from pathlib import Path

from .quiet import quiet_stderr

AUDIO_EXTRA_HINT = 'PyAudio is not installed: pip install "edgemate[audio]" (needs portaudio19-dev)'


def _pyaudio():
    try:
        import pyaudio
    except ImportError:
        return None
    return pyaudio


def audio_devices() -> tuple[list[dict], str | None]:
    """[{name, inputs, outputs, rate}], or ([], reason) when PyAudio is missing or failing."""
    pyaudio = _pyaudio()
    if pyaudio is None:
        return [], AUDIO_EXTRA_HINT
    with quiet_stderr():
        pa = pyaudio.PyAudio()
    try:
        devices = []
        for index in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(index)
            devices.append({"name": info["name"], "inputs": int(info["maxInputChannels"]),
                            "outputs": int(info["maxOutputChannels"]),
                            "rate": int(info["defaultSampleRate"])})
        return devices, None
    finally:
        pa.terminate()


def find_input_device(substring: str) -> tuple[bool, str]:
    devices, reason = audio_devices()
    if reason:
        return False, reason
    inputs = [d for d in devices if d["inputs"] > 0]
    if not inputs:
        return False, "no audio input devices found"
    if not substring:
        return True, f"system default input ({len(inputs)} inputs present)"
    match = [d for d in inputs if substring.lower() in d["name"].lower()]
    if match:
        return True, f"'{match[0]['name']}' at {match[0]['rate']} Hz"
    return False, (f"no input device name contains '{substring}' "
                   f"(inputs: {', '.join(d['name'] for d in inputs)})")


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


def print_devices() -> int:
    devices, reason = audio_devices()
    print("Audio inputs:")
    print(f"  {reason}" if reason else "\n".join(
        f"  {d['name']} ({d['inputs']} ch, {d['rate']} Hz)" for d in devices if d["inputs"]) or "  none")
    print("Audio outputs:")
    print(f"  {reason}" if reason else "\n".join(
        f"  {d['name']} ({d['outputs']} ch, {d['rate']} Hz)" for d in devices if d["outputs"]) or "  none")
    sizes, why = displays()
    print("Displays:")
    print("\n".join(f"  {s}" for s in sizes) if sizes else f"  {why}")
    sensors = thermal_sensors()
    print("Thermal sensors:")
    print("\n".join(f"  {s}" for s in sensors) if sensors else
          "  none found (the quality governor then decides from frame cost and drops)")
    return 0
