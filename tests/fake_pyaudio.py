"""A fake PyAudio for tests: devices, a paced capture stream, a callback output stream.

Two ways to use it:
- in-process: `backend = FakeBackend(...)` is a module-like object (PyAudio, paInt16, ...)
  that tests steer directly (unplug, hang, glitch);
- by import path "fake_pyaudio" in a spawned child process: the module-level API reads its
  scenario from the JSON file named by $FAKE_PYAUDIO_CONFIG.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np

paFloat32 = 1
paInt16 = 8
paContinue = 0
paComplete = 1
paAbort = 2
paUnanticipatedHostError = -9999

DEFAULT_DEVICES = (
    {"name": "Built-in Output", "maxInputChannels": 0, "maxOutputChannels": 2,
     "defaultSampleRate": 48000.0},
    {"name": "USB PnP Sound Device: Audio (hw:1,0)", "maxInputChannels": 1,
     "maxOutputChannels": 0, "defaultSampleRate": 48000.0},
    {"name": "HDMI Speaker", "maxInputChannels": 0, "maxOutputChannels": 2,
     "defaultSampleRate": 48000.0},
)


def get_sample_size(fmt: int) -> int:
    return 2 if fmt == paInt16 else 4


class FakeBackend:
    """One fake audio system. Device lists are taken at PyAudio() time, like PortAudio."""

    paFloat32, paInt16, paContinue, paComplete, paAbort = (
        paFloat32, paInt16, paContinue, paComplete, paAbort)

    def __init__(self, devices=DEFAULT_DEVICES, tone_hz: float = 440.0,
                 output_latency_s: float = 0.05, manual_callbacks: bool = False,
                 clock=time.monotonic, hang_on_open: int | None = None) -> None:
        self.devices = [dict(info) for info in devices]
        self.tone_hz = tone_hz
        self.output_latency_s = output_latency_s
        self.manual_callbacks = manual_callbacks  # output: the test calls stream.pump()
        self.clock = clock
        self.hang_on_open = hang_on_open  # the n-th opened capture hangs after a few chunks
        self.unplugged: set[str] = set()
        self.opens = 0
        self.streams: list = []
        self._hang = threading.Condition()
        self._hanging = False
        self._glitch_s = 0.0

    # what tests steer
    def get_sample_size(self, fmt: int) -> int:
        return get_sample_size(fmt)

    def unplug(self, name_part: str) -> None:
        """The device vanishes: live reads raise OSError -9999, new PyAudio()s lack it."""
        self.unplugged.add(name_part)

    def plug(self, name_part: str) -> None:
        self.unplugged.discard(name_part)

    def set_hanging(self, hanging: bool) -> None:
        """While hanging, capture reads block (a hung driver); on release they fail."""
        with self._hang:
            self._hanging = hanging
            self._hang.notify_all()

    def glitch(self, seconds: float) -> None:
        """The next read comes `seconds` late with a full host buffer: an input overflow."""
        self._glitch_s = seconds

    def is_present(self, name: str) -> bool:
        return not any(part in name for part in self.unplugged)

    def PyAudio(self) -> FakePyAudio:  # noqa: N802 - mirrors pyaudio.PyAudio
        return FakePyAudio(self)


class FakePyAudio:
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self._devices = [dict(info, index=index) for index, info in enumerate(backend.devices)
                         if backend.is_present(info["name"])]
        self.terminated = False

    def get_device_count(self) -> int:
        return len(self._devices)

    def get_device_info_by_index(self, index: int) -> dict:
        return dict(self._devices[index])

    def _default(self, key: str) -> dict:
        for info in self._devices:
            if info[key] > 0:
                return dict(info)
        raise OSError(-9996, "No Default Device Available")

    def get_default_input_device_info(self) -> dict:
        return self._default("maxInputChannels")

    def get_default_output_device_info(self) -> dict:
        return self._default("maxOutputChannels")

    def open(self, rate, channels, format, input=False, output=False,  # noqa: A002
             input_device_index=None, output_device_index=None, frames_per_buffer=1024,
             start=True, stream_callback=None):
        if input:
            self.backend.opens += 1
            info = self.get_device_info_by_index(input_device_index or 0)
            stream = FakeInputStream(self.backend, info["name"], rate, channels,
                                     hang_after=3 if self.backend.opens == self.backend.hang_on_open
                                     else None)
        else:
            stream = FakeOutputStream(self.backend, rate, channels, frames_per_buffer,
                                      stream_callback)
            if start:
                stream.start_stream()
        self.backend.streams.append(stream)
        return stream

    def terminate(self) -> None:
        self.terminated = True


class FakeInputStream:
    def __init__(self, backend: FakeBackend, name: str, rate: int, channels: int,
                 hang_after: int | None) -> None:
        self.backend, self.name, self.rate, self.channels = backend, name, rate, channels
        self.hang_after = hang_after
        self.reads = 0
        self._phase = 0
        self._next_due = time.monotonic()
        self._backlog = 0
        self.closed = False

    def read(self, num_frames: int, exception_on_overflow: bool = True) -> bytes:
        backend = self.backend
        self.reads += 1
        if self.hang_after is not None and self.reads > self.hang_after:
            threading.Event().wait()  # hung inside the driver for good: only a kill helps
        with backend._hang:
            if backend._hanging:
                while backend._hanging:
                    backend._hang.wait()
                raise OSError(paUnanticipatedHostError, "Unanticipated host error")
        if not backend.is_present(self.name):
            raise OSError(paUnanticipatedHostError, "Unanticipated host error")
        self._backlog = 0
        if backend._glitch_s:
            time.sleep(backend._glitch_s)
            backend._glitch_s = 0.0
            self._backlog = round(0.05 * self.rate)
            self._next_due = time.monotonic()
        # Pace like a real device: a read returns when its last sample has been captured.
        self._next_due += num_frames / self.rate
        delay = self._next_due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self._next_due = time.monotonic()
        times = (self._phase + np.arange(num_frames)) / self.rate
        self._phase += num_frames
        tone = (0.5 * np.sin(2 * math.pi * backend.tone_hz * times) * 32767).astype("<i2")
        return np.repeat(tone[:, None], self.channels, axis=1).tobytes()

    def get_read_available(self) -> int:
        return self._backlog

    def stop_stream(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeOutputStream:
    """Calls the callback from a thread at the stream's pace (or on pump() in manual mode)."""

    def __init__(self, backend: FakeBackend, rate: int, channels: int, frames: int,
                 callback) -> None:
        self.backend, self.rate, self.channels, self.frames = backend, rate, channels, frames
        self.callback = callback
        self.played: list[np.ndarray] = []
        self._active = False
        self._thread: threading.Thread | None = None

    def get_output_latency(self) -> float:
        return self.backend.output_latency_s

    def is_active(self) -> bool:
        return self._active

    def start_stream(self) -> None:
        self._active = True
        if not self.backend.manual_callbacks and self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def pump(self, callbacks: int = 1) -> None:
        for _ in range(callbacks):
            self._call()

    def _call(self) -> None:
        now = self.backend.clock()
        time_info = {"input_buffer_adc_time": 0.0, "current_time": now,
                     "output_buffer_dac_time": now + self.backend.output_latency_s}
        data, flag = self.callback(None, self.frames, time_info, 0)
        assert len(data) == self.frames * 4 * self.channels
        assert flag == paContinue
        self.played.append(np.frombuffer(data, np.float32).copy())

    def _run(self) -> None:
        due = time.monotonic()
        while self._active:
            self._call()
            due += self.frames / self.rate
            time.sleep(max(0.0, due - time.monotonic()))

    def stop_stream(self) -> None:
        self._active = False
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def close(self) -> None:
        self.stop_stream()


# --- module-level API, for a spawned child importing "fake_pyaudio" ------------------------

_module_backend: FakeBackend | None = None


def _backend_from_env() -> FakeBackend:
    global _module_backend
    if _module_backend is None:
        config = {}
        path = os.environ.get("FAKE_PYAUDIO_CONFIG")
        if path:
            config = json.loads(Path(path).read_text())
        _module_backend = FakeBackend(devices=config.get("devices", DEFAULT_DEVICES))
        counter = config.get("open_counter")
        if counter:
            # Each child counts its open in a file; the n-th child's capture hangs.
            opened = int(Path(counter).read_text() or 0) + 1 if Path(counter).exists() else 1
            Path(counter).write_text(str(opened))
            if opened == config.get("hang_in_child"):
                _module_backend.hang_on_open = 1
    return _module_backend


def PyAudio() -> FakePyAudio:  # noqa: N802 - mirrors pyaudio.PyAudio
    return _backend_from_env().PyAudio()
