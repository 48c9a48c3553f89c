"""Streaming resampler: chunking invariance (bit-exact), quality, passthrough."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.audio.resample import StreamingResampler


def _noise(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal((frames, channels)) * 0.3
    return noise.astype(np.float32)


def _resample_in_chunks(samples: np.ndarray, rate: int, cuts, out_rate: int = 16000) -> np.ndarray:
    resampler = StreamingResampler(rate, out_rate, samples.shape[1])
    bounds = [0, *cuts, len(samples)]
    parts = [resampler.process(samples[a:b]) for a, b in zip(bounds, bounds[1:])]
    parts.append(resampler.finish())
    return np.concatenate(parts)


def _every(step: int, total: int) -> list[int]:
    return list(range(step, total, step))


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000])
def test_10ms_and_700ms_chunks_give_identical_output(rate):
    samples = _noise(rate * 2 + 123, 2)
    small = _resample_in_chunks(samples, rate, _every(rate // 100, len(samples)))
    large = _resample_in_chunks(samples, rate, _every(rate * 7 // 10, len(samples)))
    assert small.dtype == np.float32
    assert len(small) == -(-len(samples) * 16000 // rate)
    assert np.array_equal(small, large)


@settings(max_examples=40, deadline=None)
@given(rate=st.sampled_from([8000, 11025, 22050, 44100, 48000, 96000]),
       cuts=st.lists(st.integers(0, 9000), max_size=30))
def test_any_chunk_split_gives_identical_output(rate, cuts):
    samples = _noise(9000, 2, seed=rate)
    reference = _resample_in_chunks(samples, rate, [])
    assert np.array_equal(_resample_in_chunks(samples, rate, sorted(cuts)), reference)


def _tone_level_db(rate: int, freq: float, out_rate: int = 16000) -> float:
    t = np.arange(rate * 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[:, None]
    out = _resample_in_chunks(tone, rate, _every(rate // 50, len(tone)), out_rate)
    steady = out[out_rate // 4:-out_rate // 4]  # leave out the filter's edges
    return 20 * np.log10(np.sqrt(2 * np.mean(steady.astype(np.float64) ** 2)) / 0.5)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000])
def test_1khz_keeps_its_level(rate):
    assert abs(_tone_level_db(rate, 1000)) < 0.1


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000])
def test_7khz_is_in_the_passband(rate):
    assert abs(_tone_level_db(rate, 7000)) < 0.1


@pytest.mark.parametrize("rate,freq", [(48000, 10000), (48000, 9500), (96000, 20000),
                                       (44100, 12000)])
def test_above_nyquist_is_attenuated_60db(rate, freq):
    assert _tone_level_db(rate, freq) < -60


def test_upsampling_images_are_attenuated():
    # 3 kHz at 8 kHz in: its image at 5 kHz must not appear in the 16 kHz output.
    t = np.arange(16000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)[:, None]
    out = _resample_in_chunks(tone, 8000, [])[4000:-4000].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    freqs = np.fft.rfftfreq(len(out), 1 / 16000)
    wanted = spectrum[np.argmin(np.abs(freqs - 3000))]
    image = spectrum[np.argmin(np.abs(freqs - 5000))]
    assert 20 * np.log10(image / wanted) < -60


def test_same_rate_is_an_exact_passthrough_with_mono_mix():
    samples = _noise(1000, 2)
    resampler = StreamingResampler(16000, 16000, 2)
    out = resampler.process(samples)
    assert np.array_equal(out, (samples[:, 0] + samples[:, 1]) * np.float32(0.5))
    mono = _noise(500, 1)
    assert np.array_equal(StreamingResampler(16000, 16000, 1).process(mono), mono[:, 0])
    assert len(resampler.finish()) == 0


def test_output_time_is_not_shifted():
    # An impulse at input time 0.5 s must come out at output time 0.5 s.
    samples = np.zeros((48000, 1), np.float32)
    samples[24000] = 1.0
    out = _resample_in_chunks(samples, 48000, [])
    assert int(np.argmax(out)) == 8000


def test_reset_forgets_everything():
    samples = _noise(4800, 1)
    resampler = StreamingResampler(48000, 16000, 1)
    first = np.concatenate([resampler.process(samples), resampler.finish()])
    resampler.process(_noise(1234, 1, seed=5))
    resampler.reset()
    again = np.concatenate([resampler.process(samples), resampler.finish()])
    assert np.array_equal(first, again)


def test_wrong_channel_count_and_rates_are_rejected():
    with pytest.raises(ValueError):
        StreamingResampler(48000, 16000, 1).process(np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError):
        StreamingResampler(4000)
    with pytest.raises(ValueError):
        StreamingResampler(192000)
