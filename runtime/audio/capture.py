"""The microphone capture worker: runs in a child process (or, in tests, a thread).

PortAudio can hang inside a read when a USB device goes away, so the capture lives where
it can be killed. The worker opens the device, then sends messages through a pipe:

    ("ready", rate, channels, device_name)
    ("chunk", timestamp, overflow_count, int16 bytes)
    ("error", "config" | "device", one-line reason)

This module imports only the standard library (and the backend), so a spawned child
starts fast.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from runtime.system.quiet import quiet_stderr
from .devices import DeviceNotFoundError, find_device, load_pyaudio
from .source import AudioSourceError


#: Capture rates a mic may be asked for (audio.mic.rate): those every USB and HAT codec
#: offers; the stream is resampled to 16 kHz anyway.
CAPTURE_RATES = (16000, 22050, 44100, 48000)


@dataclass(frozen=True)
class CaptureSettings:
    device: str  # name substring; "" = default input
    rate: int | None  # Hz, one of CAPTURE_RATES; None = the device's native rate
    channels: int
    chunk_ms: int


class CaptureTimeline:
    """Capture timestamps from the sample count (no scheduling jitter).

    PyAudio's blocking read hides input overflows (exception_on_overflow=False), so they
    are inferred: when the samples' capture time suddenly falls behind the wall clock by
    more than the slack, samples were lost; count an overflow and re-anchor. A slow drift
    (the device clock against ours) only re-anchors.
    """

    def __init__(self, rate: int, slack_s: float) -> None:
        self.rate, self.slack_s = rate, slack_s
        self._anchor: float | None = None  # monotonic time of the anchor sample
        self._frames = 0  # frames since the anchor
        self._last_lag = 0.0

    def stamp(self, captured_end: float, frames: int) -> tuple[float, bool]:
        """(time of the chunk's first sample, whether samples were lost before it).

        `captured_end`: when the chunk's last sample was captured (now - backlog).
        """
        duration = frames / self.rate
        if self._anchor is None:
            self._anchor, self._frames = captured_end - duration, 0
        start = self._anchor + self._frames / self.rate
        lag = captured_end - (start + duration)
        lost = lag - self._last_lag > self.slack_s
        self._last_lag = lag
        if lost or lag > self.slack_s or lag < 0:
            # Lost samples, drift, or an estimate ahead of what can have been captured.
            self._anchor, self._frames, self._last_lag = captured_end - duration, 0, 0.0
            start = self._anchor
        self._frames += frames
        return start, lost


def capture_main(backend: Any, settings: CaptureSettings, conn: Any, stop: Any) -> None:
    """Worker entry point. `backend`: an import path (child process) or a module-like
    object (thread). `conn`: the sending end of a multiprocessing Pipe. `stop`: an Event."""
    pa = stream = None
    try:
        module = load_pyaudio(backend, "mic source")
        with quiet_stderr():  # PortAudio's probing noise (ALSA, JACK) on fd 2
            pa = module.PyAudio()
        info = find_device(pa, settings.device, "input")
        rate = settings.rate or int(info["defaultSampleRate"])
        channels = max(1, min(settings.channels, int(info["maxInputChannels"])))
        frames = max(1, round(rate * settings.chunk_ms / 1000))
        stream = pa.open(format=module.paInt16, channels=channels, rate=rate, input=True,
                         input_device_index=info["index"], frames_per_buffer=frames)
        conn.send(("ready", rate, channels, info["name"]))
        timeline = CaptureTimeline(rate, slack_s=max(0.1, 3 * frames / rate))
        overflows = 0
        while not stop.is_set():
            data = stream.read(frames, exception_on_overflow=False)
            now = time.monotonic()
            try:
                backlog = int(stream.get_read_available())
            except (AttributeError, OSError):
                backlog = 0
            start, lost = timeline.stamp(now - backlog / rate, frames)
            overflows += lost
            conn.send(("chunk", start, overflows, data))
    except (DeviceNotFoundError, AudioSourceError) as exc:
        _send(conn, ("error", "config", str(exc)))
    except (OSError, EOFError, ValueError) as exc:
        # OSError -9999 (unplugged) and its kin; EOF/pipe errors when the parent left.
        _send(conn, ("error", "device", f"device error: {exc}"))
    except Exception as exc:  # noqa: BLE001 - anything from the driver ends this capture only
        _send(conn, ("error", "device", f"capture failed: {type(exc).__name__}: {exc}"))
    finally:
        _quietly(getattr(stream, "stop_stream", None))
        _quietly(getattr(stream, "close", None))
        _quietly(getattr(pa, "terminate", None))
        _quietly(getattr(conn, "close", None))


def _send(conn: Any, message: tuple) -> None:
    try:
        conn.send(message)
    except (OSError, ValueError):
        pass  # the parent is gone or gave up on us


def _quietly(action: Any) -> None:
    if action is None:
        return
    try:
        action()
    except Exception:  # noqa: BLE001 - cleanup of a broken device must not mask the cause
        pass
