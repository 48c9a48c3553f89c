"""Speaker output through PyAudio; what the listener hears is the master clock.

Timeline: the n-th sample ever written belongs to timeline position n (`written_samples`
counts them). The output callback plays timeline positions in order and always moves on:
when the ring runs dry it plays zeros for those positions (an underrun) and a sample
written later for an already-played position is discarded and counted as late. So the
position never stalls and picture and sound stay on one timeline.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from runtime import SAMPLE_RATE
from runtime.system.quiet import quiet_stderr
from .devices import find_device, load_pyaudio
from .source import AudioSourceError

log = logging.getLogger(__name__)


class Player:
    """float32 mono at `rate` into a preallocated ring, pulled by PyAudio's callback.

    write(samples) -> accepted count (never blocks); position_samples() -> what is heard
    now; flush() -> drop what is not yet played (barge-in).
    """

    def __init__(self, device: str = "", extra_latency_ms: float = 0.0, rate: int = SAMPLE_RATE,
                 pyaudio_module: Any = None, buffer_s: float = 4.0,
                 frames_per_buffer: int = 320,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.device = device
        self.rate = rate
        # Latency the driver does not report (amplifier, HDMI sink), in samples.
        self.extra_latency_samples = extra_latency_ms * rate / 1000
        self.frames_per_buffer = frames_per_buffer
        self._backend = pyaudio_module
        self._clock = clock
        self._ring = np.zeros(max(1, round(buffer_s * rate)), np.float32)
        self._scratch = np.zeros(frames_per_buffer, np.float32)
        self._lock = threading.Lock()
        self._pa: Any = None
        self._stream: Any = None
        self._module: Any = None
        self._reported_latency_s = 0.0
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._write_pos = 0  # timeline position of the next written sample
        self._read_pos = 0  # timeline position of the next sample handed to the device
        self.late_samples = 0  # written after their position had played; discarded
        self.underrun_samples = 0  # positions played as zeros because nothing was written
        # (first position of the last callback's buffer, its DAC time, the stream time
        #  at the callback, our clock at the callback)
        self._anchor: tuple[int, float, float, float] | None = None
        self._last_position = 0.0

    # --- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        if self._stream is not None:
            return
        module = load_pyaudio(self._backend, "playback")
        self._module = module  # the callback may run before pa.open() returns
        # PortAudio probes ALSA, OSS and JACK and prints pages of their complaints straight
        # to fd 2 (a headless box has no card); what matters comes back as exceptions.
        with quiet_stderr():
            pa = module.PyAudio()
        try:
            info = find_device(pa, self.device, "output")
            with quiet_stderr():
                stream = pa.open(format=module.paFloat32, channels=1, rate=self.rate,
                                 output=True, output_device_index=info["index"],
                                 frames_per_buffer=self.frames_per_buffer,
                                 stream_callback=self._callback)
        except AudioSourceError:
            pa.terminate()
            raise
        except (OSError, ValueError) as exc:
            pa.terminate()
            raise AudioSourceError(f"playback: cannot open output device: {exc}") from None
        try:
            self._reported_latency_s = float(stream.get_output_latency())
        except (AttributeError, OSError):
            self._reported_latency_s = 0.0
        self._pa, self._stream = pa, stream
        if hasattr(stream, "is_active") and not stream.is_active():
            stream.start_stream()
        log.info('playback: "%s" at %d Hz, %.0f ms reported latency', info["name"], self.rate,
                 self._reported_latency_s * 1000)

    def close(self) -> None:
        stream, pa = self._stream, self._pa
        self._stream = self._pa = None
        for action in (getattr(stream, "stop_stream", None), getattr(stream, "close", None),
                       getattr(pa, "terminate", None)):
            if action is not None:
                try:
                    action()
                except OSError as exc:
                    log.warning("playback: closing the output failed: %s", exc)

    # --- producer side ---------------------------------------------------------------

    def write(self, samples: np.ndarray) -> int:
        """Queue mono float32 samples; returns how many were taken (late ones included)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        capacity = len(self._ring)
        with self._lock:
            late = min(len(samples), max(0, self._read_pos - self._write_pos))
            self.late_samples += late
            self._write_pos += late
            free = capacity - (self._write_pos - self._read_pos)
            count = min(len(samples) - late, free)
            start = self._write_pos % capacity
            first = min(count, capacity - start)
            self._ring[start:start + first] = samples[late:late + first]
            self._ring[:count - first] = samples[late + first:late + count]
            self._write_pos += count
            return late + count

    def flush(self) -> None:
        """Drop everything not yet handed to the device; the next write plays next."""
        with self._lock:
            self._write_pos = self._read_pos

    # --- clock -----------------------------------------------------------------------

    @property
    def written_samples(self) -> int:
        """Timeline position the next written sample will take."""
        with self._lock:
            return self._write_pos

    @property
    def played_samples(self) -> int:
        """Timeline positions handed to the device so far (heard a little later)."""
        with self._lock:
            return self._read_pos

    def position_samples(self) -> float:
        """Timeline position the listener hears now: what the callbacks consumed, less what
        is still on its way to the DAC (from the callback's time_info), less the extra
        latency. Never decreases."""
        with self._lock:
            anchor, handed_out = self._anchor, self._read_pos
            if anchor is None:
                return 0.0
            first, dac_time, stream_time, callback_clock = anchor
            stream_now = stream_time + (self._clock() - callback_clock)
            position = first + (stream_now - dac_time) * self.rate - self.extra_latency_samples
            position = min(max(position, self._last_position, 0.0), float(handed_out))
            self._last_position = position
            return position

    def _callback(self, in_data: Any, frame_count: int, time_info: dict, status: int) -> tuple:
        """PortAudio's thread: copy the due samples out, or zeros, and move on."""
        now = self._clock()
        if frame_count > len(self._scratch):
            self._scratch = np.zeros(frame_count, np.float32)
        out = self._scratch[:frame_count]
        capacity = len(self._ring)
        with self._lock:
            available = min(frame_count, max(0, self._write_pos - self._read_pos))
            start = self._read_pos % capacity
            first = min(available, capacity - start)
            out[:first] = self._ring[start:start + first]
            out[first:available] = self._ring[:available - first]
            out[available:] = 0.0
            self.underrun_samples += frame_count - available
            stream_time = float(time_info.get("current_time") or 0.0)
            dac_time = float(time_info.get("output_buffer_dac_time") or 0.0)
            if dac_time <= 0.0 or dac_time < stream_time:
                # Some host APIs report no DAC time: fall back to the stream's latency.
                dac_time = stream_time + self._reported_latency_s
            self._anchor = (self._read_pos, dac_time, stream_time, now)
            self._read_pos += frame_count
            data = out.tobytes()
        return data, self._module.paContinue if self._module is not None else 0

    def status(self) -> str:
        with self._lock:
            queued_s = max(0, self._write_pos - self._read_pos) / self.rate
        return (f"playback: {queued_s:.2f} s queued, {self.late_samples} late samples, "
                f"{self.underrun_samples} underrun samples")
