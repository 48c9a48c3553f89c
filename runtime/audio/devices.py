"""PyAudio as an optional backend: importing it and picking devices by name.

PortAudio numbers devices in enumeration order, and card numbers change across boots, so
devices are chosen by a case-insensitive substring of their name, never by index.
"""
from __future__ import annotations

import importlib
from typing import Any

from .source import AudioSourceError

#: How to get PyAudio; named in every "needs PyAudio" error.
PYAUDIO_HINT = ('pip install "edgemate[audio]" (and the system PortAudio, Debian: '
                'portaudio19-dev, macOS: brew install portaudio)')
_CHANNEL_KEYS = {"input": "maxInputChannels", "output": "maxOutputChannels"}


class DeviceNotFoundError(AudioSourceError):
    """No device matches the configured name (or there is no default device)."""


def load_pyaudio(backend: Any, purpose: str) -> Any:
    """The PyAudio module: `backend` is None ("pyaudio"), an import path, or a module-like
    object (tests inject a fake). `purpose` starts the error message, e.g. "mic source"."""
    if backend is None or isinstance(backend, str):
        name = backend or "pyaudio"
        try:
            return importlib.import_module(name)
        except ImportError:
            what = "PyAudio" if name == "pyaudio" else f"PyAudio (backend {name!r})"
            raise AudioSourceError(f"{purpose} needs {what}: {PYAUDIO_HINT}") from None
    return backend


def list_devices(pa: Any, direction: str) -> list[dict]:
    """Device infos (PyAudio dicts, with 'index') that can capture/play (`direction`)."""
    key = _CHANNEL_KEYS[direction]
    infos = (pa.get_device_info_by_index(index) for index in range(pa.get_device_count()))
    return [info for info in infos if int(info.get(key, 0)) > 0]


def find_device(pa: Any, name: str, direction: str) -> dict:
    """The device info for `name` (substring, case-insensitive; "" = the system default).

    Raises DeviceNotFoundError listing the devices there are.
    """
    devices = list_devices(pa, direction)
    if not name:
        try:
            getter = (pa.get_default_input_device_info if direction == "input"
                      else pa.get_default_output_device_info)
            return getter()
        except (OSError, IOError):
            raise DeviceNotFoundError(
                f"no default {direction} device; {direction} devices: {_names(devices)}") from None
    wanted = name.lower()
    exact = [info for info in devices if info["name"].lower() == wanted]
    matches = exact or [info for info in devices if wanted in info["name"].lower()]
    if not matches:
        raise DeviceNotFoundError(
            f'no {direction} device matching "{name}"; {direction} devices: {_names(devices)}')
    return matches[0]


def _names(devices: list[dict]) -> str:
    return ", ".join(f'"{info["name"]}"' for info in devices) or "none"
