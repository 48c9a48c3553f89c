"""Streaming mono mix + sample-rate conversion (polyphase Kaiser-windowed sinc, numpy only).

Chunking invariance: output sample n is x(t) at input time t = n * in_rate / out_rate,
interpolated from a fixed window of `taps` inputs with the taps of its phase. Outputs are
computed in fixed blocks of `block` samples, each block with exactly the same array shapes
and numpy operations, and a block is computed only once all its inputs have arrived. So the
floating-point work per output sample does not depend on how the input was cut: 10 ms and
700 ms chunks give bit-identical output.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from runtime import SAMPLE_RATE


MIN_IN_RATE = 8000
MAX_IN_RATE = 96000
#: Passband edge as a fraction of the lower Nyquist rate (7 kHz for 16 kHz out). The stop
#: edge mirrors it around Nyquist (9 kHz): what aliases from 8..9 kHz lands in 7..8 kHz,
#: above the passband, which halves the filter length against a stop edge at 8 kHz.
PASSBAND_FRACTION = 0.875
#: Design stopband attenuation in dB (the target is > 60 dB; the rest is margin).
STOPBAND_DB = 70.0
#: Phases whose (block, taps) coefficient matrix is kept; more distinct ones are gathered
#: per block (only for odd rate pairs whose phase pattern does not repeat every block).
_MAX_CACHED_PATTERNS = 64


def _mono(samples: np.ndarray, channels: int) -> np.ndarray:
    """Mean of the channels as float32, with the same additions for every chunk size."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.shape[1] != channels:
        raise ValueError(f"expected {channels} channels, got {samples.shape[1]}")
    if channels == 1:
        return samples[:, 0].copy()
    mixed = samples[:, 0].copy()
    for channel in range(1, channels):
        mixed += samples[:, channel]
    mixed *= np.float32(1 / channels)
    return mixed


def design_phases(up: int, down: int, in_rate: int, out_rate: int) -> np.ndarray:
    """Kaiser-windowed sinc taps, shape (up, taps): row p interpolates at fraction p/up."""
    nyquist = min(in_rate, out_rate) / 2
    transition_hz = 2 * (1 - PASSBAND_FRACTION) * nyquist
    beta = 0.1102 * (STOPBAND_DB - 8.7)
    # Kaiser's length estimate, in input samples.
    length = (STOPBAND_DB - 7.95) / (2.285 * 2 * math.pi * transition_hz / in_rate) + 1
    taps = 2 * math.ceil(length / 2)
    half = taps / 2
    phase = np.arange(up, dtype=np.float64)[:, None] / up
    # Distance (in input samples) from the interpolated instant to each tap's input sample.
    tau = phase + (half - 1) - np.arange(taps, dtype=np.float64)[None, :]
    cutoff = nyquist / in_rate  # cycles per input sample
    kernel = 2 * cutoff * np.sinc(2 * cutoff * tau)
    window = np.i0(beta * np.sqrt(np.clip(1 - (tau / half) ** 2, 0, 1))) / np.i0(beta)
    kernel *= window
    # Unit DC gain in every phase: no ripple at the phase rate, exact level for speech.
    kernel /= kernel.sum(axis=1, keepdims=True)
    return kernel.astype(np.float32)


class StreamingResampler:
    """Mixes (frames, channels) float32 chunks to mono and resamples them to out_rate.

    `process(chunk)` returns the output samples that are complete so far (float32, 1-D);
    `finish()` returns the rest at the end of an utterance (input padded with silence);
    `reset()` drops everything (barge-in). in_rate == out_rate is an exact passthrough.
    Output sample n always belongs to input time n / out_rate: the filter look-ahead is a
    latency (`latency_in_samples`), never a time shift.
    """

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE, in_channels: int = 1,
                 block_ms: float = 10.0) -> None:
        if not MIN_IN_RATE <= in_rate <= MAX_IN_RATE:
            raise ValueError(f"input rate {in_rate} Hz outside {MIN_IN_RATE} to {MAX_IN_RATE}")
        if out_rate <= 0 or in_channels < 1:
            raise ValueError(f"bad resampler setup: out_rate={out_rate}, in_channels={in_channels}")
        self.in_rate, self.out_rate, self.in_channels = in_rate, out_rate, in_channels
        self.passthrough = in_rate == out_rate
        common = math.gcd(in_rate, out_rate)
        self._up, self._down = out_rate // common, in_rate // common
        self._block = max(1, round(out_rate * block_ms / 1000))
        if self.passthrough:
            self._phases = np.zeros((1, 0), np.float32)
            self.taps = 0
        else:
            self._phases = design_phases(self._up, self._down, in_rate, out_rate)
            self.taps = self._phases.shape[1]
        self._patterns: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._rows = np.arange(self._block, dtype=np.int64)
        self.reset()

    @property
    def latency_in_samples(self) -> int:
        """Input samples that must arrive after instant t before output at t is complete."""
        return self.taps // 2 + math.ceil(self._block * self._down / self._up)

    def reset(self) -> None:
        # The window of output 0 starts taps/2 - 1 samples before input 0: silence.
        self._history = max(0, self.taps // 2 - 1)
        # Input not yet consumed lives in _store[:_filled]: appended in place, never
        # concatenated per chunk (the store grows only when a chunk would not fit).
        self._store = np.zeros(max(4096, 4 * self._history), np.float32)
        self._filled = self._history
        self._buffer_start = -self._history  # input index of self._store[0]
        self._inputs = 0  # input samples received
        self._next_output = 0  # index of the first output of the next block

    def process(self, samples: np.ndarray) -> np.ndarray:
        mono = _mono(samples, self.in_channels)
        if self.passthrough:
            return mono
        self._append(mono)
        self._inputs += len(mono)
        return self._run_blocks(self._inputs)

    def finish(self) -> np.ndarray:
        """Outputs up to the end of the input so far, then reset() for the next utterance."""
        if self.passthrough:
            return np.zeros(0, np.float32)
        total = -(-self._inputs * self._up // self._down)  # outputs with time < end of input
        wanted = total - self._next_output
        if wanted <= 0:
            self.reset()
            return np.zeros(0, np.float32)
        blocks = -(-wanted // self._block)
        last = self._next_output + blocks * self._block - 1
        needed_end = (last * self._down) // self._up + self.taps // 2 + 1
        padding = max(0, needed_end - self._inputs)
        self._append(np.zeros(padding, np.float32))
        out = self._run_blocks(self._inputs + padding)[:wanted]
        self.reset()
        return out

    def _append(self, samples: np.ndarray) -> None:
        end = self._filled + len(samples)
        if end > len(self._store):
            grown = np.zeros(max(end, 2 * len(self._store)), np.float32)
            grown[:self._filled] = self._store[:self._filled]
            self._store = grown
        self._store[self._filled:end] = samples
        self._filled = end

    def _run_blocks(self, available: int) -> np.ndarray:
        """Compute every block whose whole input window lies below input index `available`."""
        up, down, half, block = self._up, self._down, self.taps // 2, self._block
        windows = None
        outputs = []
        while True:
            first = self._next_output
            last_base = ((first + block - 1) * down) // up
            if last_base + half >= available:
                break
            if windows is None:
                windows = sliding_window_view(self._store[:self._filled], self.taps)
            base0, phase0 = divmod(first * down, up)
            rel_start, coefficients = self._pattern(phase0)
            starts = rel_start + (base0 - half + 1 - self._buffer_start)
            # Same shapes and element-wise products for every block; the row sums are
            # therefore identical however the input was chunked.
            products = windows[starts] * coefficients
            outputs.append(products.sum(axis=1))
            self._next_output = first + block
        # Keep only the inputs that later blocks can still reach.
        keep_from = (self._next_output * down) // up - half + 1
        drop = keep_from - self._buffer_start
        if drop > 0:
            kept = max(0, self._filled - drop)
            self._store[:kept] = self._store[self._filled - kept:self._filled].copy()  # the short tail
            self._filled = kept
            self._buffer_start = keep_from
        if not outputs:
            return np.zeros(0, np.float32)
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def _pattern(self, phase0: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-row input offsets and taps of a block whose first output has phase phase0."""
        cached = self._patterns.get(phase0)
        if cached is not None:
            return cached
        numerators = phase0 + self._rows * self._down
        rel_start = numerators // self._up
        coefficients = np.ascontiguousarray(self._phases[numerators % self._up])
        pattern = (rel_start, coefficients)
        if len(self._patterns) < _MAX_CACHED_PATTERNS:
            self._patterns[phase0] = pattern
        return pattern
