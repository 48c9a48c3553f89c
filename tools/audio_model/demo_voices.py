"""Voices for the demo clip (tools.audio_model.make_demo_speech) and the measurements used to pick one.

A voice is written ENGINE:NAME[,knob=value...]:
    espeak:en-us+f3,rate=160,pitch=55,range=60     (rate in words per minute, pitch/range 0-100)
    festival:kal_diphone,stretch=1.1               (Duration_Stretch: > 1 is slower; HTS
                                                    voices such as cmu_us_slt_arctic_hts ignore it)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

_KNOBS = {"espeak": {"rate": "rate_wpm", "pitch": "pitch", "range": "pitch_range"},
          "festival": {"stretch": "stretch"}}
#: Debian packages a voice needs (festival voices come one package each).
_PACKAGES = {"espeak": "espeak-ng", "cmu_us_slt_arctic_hts": "festival festvox-us-slt-hts",
             "kal_diphone": "festival festvox-kallpc16k"}


@dataclass(frozen=True)
class Voice:
    engine: str  # espeak | festival
    name: str  # espeak-ng voice (accent+variant) or festival voice
    rate_wpm: int = 165
    pitch: int = 50
    pitch_range: int = 50
    stretch: float = 1.0
    why: str = ""

    @property
    def spec(self) -> str:
        knobs = ",".join(f"{k}={v}" for k, v in self.knobs().items())
        return f"{self.engine}:{self.name}" + (f",{knobs}" if knobs else "")

    @property
    def package(self) -> str:
        return _PACKAGES.get(self.engine) or _PACKAGES.get(self.name, "festival (and the voice)")

    def knobs(self) -> dict:
        knobs = {short: getattr(self, field) for short, field in _KNOBS[self.engine].items()}
        if self.name.endswith("_hts"):
            knobs.pop("stretch", None)  # ignored by HTS voices (see _parse)
        return knobs

    def utterance(self, uid: str, text: str):
        from .synth_corpus import Utterance
        table = "espeak-en" if self.engine == "espeak" else "festival-en"
        return Utterance(uid, "demo", self.engine, table, self.name, text, rate_wpm=self.rate_wpm,
                         pitch=self.pitch, pitch_range=self.pitch_range, stretch=self.stretch)


def _parse(spec: str) -> Voice:
    engine, _, rest = spec.partition(":")
    if engine not in _KNOBS or not rest:
        raise ValueError(f"--voice {spec!r}: must be espeak:NAME[,rate=,pitch=,range=] "
                         f"or festival:NAME[,stretch=]")
    name, *pairs = rest.split(",")
    values: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in _KNOBS[engine]:
            raise ValueError(f"--voice {spec!r}: unknown knob {key!r} for {engine} "
                             f"(allowed: {', '.join(_KNOBS[engine])})")
        field = _KNOBS[engine][key]
        try:
            values[field] = float(value) if field == "stretch" else int(value)
        except ValueError:
            raise ValueError(f"--voice {spec!r}: {key} must be a number (got {value!r})") from None
    # Checked: festival's HTS engine times phones itself; Duration_Stretch changes nothing.
    if name.endswith("_hts") and values.get("stretch", 1.0) != 1.0:
        raise ValueError(f"--voice {spec!r}: HTS voices ignore stretch (allowed: 1.0 only)")
    return Voice(engine, name, **values)


def parse_voice(spec: str) -> Voice:
    """'ENGINE:NAME[,knob=value...]' -> Voice (with the recorded reason if it is a candidate);
    ValueError names what is allowed."""
    voice = _parse(spec)
    reasons = {_parse(candidate).spec: why for candidate, why in CANDIDATES.items()}
    return Voice(**{**voice.__dict__, "why": reasons.get(voice.spec, "")})


#: Candidates compared with `python -m tools.audio_model.make_demo_speech --compare` on SCRIPT, each
#: peak-normalised to -3 dBFS (none clipped before or after). Spectral flatness: lower is
#: more tonal (less buzz and hiss); share above 4 kHz: brightness/harshness on small speakers.
CANDIDATES = {
    "festival:cmu_us_slt_arctic_hts":
        "chosen: HTS statistical voice (female, US), natural prosody; the most tonal spectrum "
        "(flatness -33 dB, 0.5% energy above 4 kHz: no buzz or hiss), moderate intonation "
        "(F0 170 Hz, IQR 2.2 semitones), its own pace lands the script at 21 s, no clipping; "
        "also a training voice of the audio model",
    "festival:kal_diphone": "diphone voice (male, US, F0 108 Hz): audible joins between diphones",
    "espeak:en-us+f3,rate=160,pitch=55,range=60":
        "formant voice: buzzy and hissy (flatness -23 dB, 4.5% above 4 kHz)",
    "espeak:en-us+Annie,rate=150": "formant voice: bright (centroid 1.06 kHz), high F0 242 Hz",
    "espeak:en-us+f4,rate=150": "formant voice: 3.6% above 4 kHz, flatness -29 dB",
    "espeak:en-us+m3": "formant voice (male): flatness -28 dB",
}
DEFAULT_VOICE = "festival:cmu_us_slt_arctic_hts"


def _f0_track(clip: np.ndarray, rate: int) -> np.ndarray:
    """F0 in Hz of voiced 40 ms frames (10 ms hop), by normalised autocorrelation (60-400 Hz)."""
    size, hop = int(0.04 * rate), int(0.01 * rate)
    if len(clip) < size:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(clip, size)[::hop].astype(np.float64)
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames ** 2).sum(axis=1)
    frames = frames[energy > 1e-3 * energy.max()]
    spectrum = np.fft.rfft(frames * np.hanning(size), 2 * size, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :size]
    acf /= np.maximum(acf[:, :1], 1e-12)
    low, high = rate // 400, rate // 60
    lags = low + np.argmax(acf[:, low:high], axis=1)
    voiced = acf[np.arange(len(acf)), lags] > 0.5
    return rate / lags[voiced]


def measure(clip: np.ndarray, rate: int) -> dict:
    """Figures to compare voices by: level, clipping, brightness, buzz, intonation."""
    clip = np.asarray(clip, np.float64)
    size = int(0.032 * rate)
    frames = np.lib.stride_tricks.sliding_window_view(clip, size)[::size // 2]
    power = np.abs(np.fft.rfft(frames * np.hanning(size), axis=1)) ** 2
    loud = power.sum(axis=1) > 1e-3 * power.sum(axis=1).max()  # speech frames, not pauses
    power = power[loud] + 1e-12
    freqs = np.fft.rfftfreq(size, 1 / rate)
    centroid = (power * freqs).sum(axis=1) / power.sum(axis=1)
    flatness = np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)
    f0 = _f0_track(clip, rate)
    # Interquartile range, not std: a stray octave error of the tracker barely moves it.
    semitones = 12 * np.log2(f0 / np.median(f0)) if f0.size else np.zeros(1)
    figures = {
        "peak_dbfs": round(20 * np.log10(max(np.abs(clip).max(), 1e-12)), 2),
        "clipped_samples": int(np.count_nonzero(np.abs(clip) >= 32767 / 32768)),
        "speech_rms_dbfs": round(10 * np.log10(np.mean(frames[loud] ** 2) + 1e-20), 1),
        "centroid_hz": int(np.median(centroid)),
        "above_4khz_pct": round(100 * power[:, freqs > 4000].sum() / power.sum(), 1),
        "flatness_db": round(float(10 * np.log10(np.median(flatness))), 1),
        "f0_median_hz": int(np.median(f0)) if f0.size else 0,
        "f0_iqr_semitones": round(float(np.subtract(*np.percentile(semitones, [75, 25]))), 2),
    }
    return {key: value if isinstance(value, int) else float(value) for key, value in figures.items()}
