"""The same audio gives the same samples, features and mouth parameters whatever its chunking."""
import numpy as np
import pytest

from runtime import SAMPLE_RATE
from runtime.audio.resample import StreamingResampler
from runtime.commands.bench import speech_like
from runtime.speech.audio_model import AudioModel
from runtime.speech.features import FbankSettings, StreamingFbank
from runtime.speech.mouth_track import MouthAnalyzer, MouthTrack


def _chunks(signal: np.ndarray, rate: int, chunk_ms: int):
    step = max(1, rate * chunk_ms // 1000)
    return [signal[i:i + step] for i in range(0, len(signal), step)]


def _through_resampler_and_fbank(signal, rate, chunk_ms):
    resampler = StreamingResampler(rate, SAMPLE_RATE, signal.shape[1])
    fbank = StreamingFbank(FbankSettings())
    samples, frames = [], []
    for chunk in _chunks(signal, rate, chunk_ms):
        out = resampler.process(chunk)
        samples.append(out)
        fbank.accept(out)
        frames.append(fbank.pop_frames())
    return np.concatenate(samples), np.concatenate(frames)


@pytest.mark.parametrize("rate, channels", [(44100, 2), (48000, 1), (8000, 1), (16000, 2)])
def test_10ms_and_700ms_chunks_give_identical_samples_and_fbank(rate, channels):
    mono = np.interp(np.arange(int(rate * 3)) / rate, np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE,
                     speech_like(3.0))
    signal = np.stack([mono * (0.5 + 0.5 * c) for c in range(channels)], axis=1).astype(np.float32)
    small = _through_resampler_and_fbank(signal, rate, 10)
    large = _through_resampler_and_fbank(signal, rate, 700)
    assert np.array_equal(small[0], large[0])
    assert np.array_equal(small[1], large[1])
    assert len(small[1]) > 250  # 3 s at 100 frames/s, minus the edges


def _mouth_track(model_path, audio, chunk_ms):
    track = MouthTrack()
    analyzer = MouthAnalyzer(AudioModel(model_path), track)
    for chunk in _chunks(audio, SAMPLE_RATE, chunk_ms):
        analyzer.accept(chunk)
    return np.array([track.get(k) for k in range(track.newest + 1)])


def test_mouth_parameters_do_not_depend_on_chunk_size(model_fixtures):
    audio = speech_like(4.0)
    small = _mouth_track(model_fixtures[0], audio, 10)
    large = _mouth_track(model_fixtures[0], audio, 500)
    assert len(small) == len(large) >= 95
    assert np.array_equal(small, large)
    assert small[:, 0].max() > 0.5  # the fixture model does move the mouth


def test_silence_closes_the_mouth_and_keeps_it_closed(model_fixtures):
    audio = np.concatenate([speech_like(2.0), np.zeros(3 * SAMPLE_RATE, np.float32)])
    params = _mouth_track(model_fixtures[0], audio, 20)
    silent = params[2 * 25 + 3:]  # from 120 ms into the silence
    assert np.all(silent[:, 0] < 0.05)
