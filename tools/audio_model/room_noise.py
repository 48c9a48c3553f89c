"""Room noise as a kiosk microphone hears it, and whether the mouth stays shut in it.

    python -m tools.audio_model.room_noise [--seconds 8] [--audio-model YAML]

Eight kinds, each a function of (samples, Generator) so the set is reproducible from its
seed: room tone, mains hum (50 or 60 Hz with harmonics), a fan or air conditioning (broadband
rumble with a blade tone), distant babble (speech-band noise with a syllable-rate envelope,
no phonemes), quiet music (sustained chords), keyboard clicks, a door, footsteps. Each is set
to LEVELS_DB below a reference speech level (SPEECH_RMS_DBFS, what the demo's speech has at
the runtime's input), and the shipped model runs on it through the runtime. Closure: the
share of frames with open < 0.05 (the goal of issue 14 is >= 98% across the set).

Built apart from the training augmentation (augment.py make_noise) on purpose: a test set
made by the same generator as the training noise would measure what the model was fed.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from runtime import SAMPLE_RATE

#: RMS of speech at the runtime's input, dBFS: the demo clip's speech frames measure -21.5, the two
#: real recordings in ../shared/data/external -22.7 and -10.0.
SPEECH_RMS_DBFS = -20.0
#: Noise levels below that speech, dB (45: a quiet room; 10: a loud lobby).
LEVELS_DB = (45, 35, 25, 15, 10)
CLOSED = 0.05


def _shaped(n: int, rng: np.random.Generator, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 1.0)
    return np.fft.irfft(spectrum * gain(freqs), n)


def room_tone(n, rng):
    return _shaped(n, rng, lambda f: 1 / np.sqrt(f) * (f < 4000))


def mains_hum(n, rng):
    t = np.arange(n) / SAMPLE_RATE
    base = rng.choice((50.0, 60.0))
    return sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6)) / k for k in range(1, 9))


def fan(n, rng):
    t = np.arange(n) / SAMPLE_RATE
    rumble = _shaped(n, rng, lambda f: 1 / f * (f > 30))
    blade = rng.uniform(80, 180)
    return rumble / (np.std(rumble) + 1e-9) + 0.3 * np.sin(2 * np.pi * blade * t)


def babble(n, rng):
    t = np.arange(n) / SAMPLE_RATE
    voices = _shaped(n, rng, lambda f: np.exp(-0.5 * ((f - 500) / 600) ** 2))
    envelope = sum(0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)) for _ in range(4))
    return voices * envelope


def music(n, rng):
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    chord_s = 2.0
    for start in range(0, n, int(chord_s * SAMPLE_RATE)):
        root = 220.0 * 2 ** (rng.integers(0, 12) / 12)
        span = slice(start, min(n, start + int(chord_s * SAMPLE_RATE)))
        for ratio in (1.0, 1.26, 1.5, 2.0):
            out[span] += np.sin(2 * np.pi * root * ratio * t[span]) * np.exp(-(t[span] - t[start]) * 0.8)
    return out


def _bursts(n, rng, times_s, length_s, decay_s, band):
    out = np.zeros(n)
    length = int(length_s * SAMPLE_RATE)
    env = np.exp(-np.arange(length) / (decay_s * SAMPLE_RATE))
    for at in times_s:
        start = int(at * SAMPLE_RATE)
        if start + length > n:
            continue
        burst = _shaped(length, rng, band) * env
        out[start:start + length] += burst / (np.abs(burst).max() + 1e-9)
    return out


def keyboard(n, rng):
    times = np.cumsum(rng.exponential(0.18, int(n / SAMPLE_RATE / 0.18) + 1))
    return _bursts(n, rng, times, 0.02, 0.003, lambda f: (f > 1500).astype(float))


def door(n, rng):
    seconds = n / SAMPLE_RATE
    times = rng.uniform(min(0.5, seconds / 4), max(seconds / 2, seconds - 1.0), 2)  # two slams
    return _bursts(n, rng, times, 0.6, 0.12, lambda f: 1 / f * (f > 40) * (f < 1500))


def footsteps(n, rng):
    times = np.arange(0.3, n / SAMPLE_RATE - 0.2, rng.uniform(0.45, 0.6))
    return _bursts(n, rng, times, 0.12, 0.03, lambda f: 1 / f * (f > 40) * (f < 800))


KINDS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "room_tone": room_tone, "mains_hum": mains_hum, "fan": fan, "babble": babble,
    "music": music, "keyboard": keyboard, "door": door, "footsteps": footsteps}


def noise_clip(kind: str, level_db: float, seconds: float, seed: int = 0) -> np.ndarray:
    """float32 16 kHz mono, its RMS `level_db` below SPEECH_RMS_DBFS. Impulsive kinds
    (clicks, a door, steps) are set by the RMS of their loud 10 %, as a listener would judge them."""
    rng = np.random.default_rng([seed, list(KINDS).index(kind)])
    n = int(seconds * SAMPLE_RATE)
    noise = KINDS[kind](n, rng).astype(np.float64)
    loud = np.abs(noise) >= np.percentile(np.abs(noise), 90)
    rms = np.sqrt(np.mean(noise[loud] ** 2)) if kind in ("keyboard", "door", "footsteps") else np.sqrt(np.mean(noise ** 2))
    target = 10 ** ((SPEECH_RMS_DBFS - level_db) / 20)
    return (noise * target / (rms + 1e-12)).astype(np.float32)


def closure_table(model, run_model, seconds: float = 8.0) -> dict:
    """{kind: {level: share of frames with open < CLOSED}} and the pooled share."""
    table, closed, total = {}, 0, 0
    for kind in KINDS:
        table[kind] = {}
        for level in LEVELS_DB:
            params = run_model(model, noise_clip(kind, level, seconds))
            shut = params[:, 0] < CLOSED
            table[kind][level] = round(float(shut.mean()), 3)
            closed, total = closed + int(shut.sum()), total + len(shut)
    return {"by_kind": table, "pooled": round(closed / total, 4), "seconds": seconds}


def speech_in_noise(model, run_model, utterances, seconds_pad: float = 0.5) -> dict:
    """r(open) against the targets on held-out speech, clean and mixed into every kind at every
    level: {"clean": r, "by_kind": {kind: {level: r}}, "max_drop": ...}. `utterances`:
    [(audio, targets)], the speech set to SPEECH_RMS_DBFS over its loud samples first."""
    def r_of(mix) -> float:
        preds, goals = [], []
        for audio, target in mix:
            pred = run_model(model, audio)
            n = min(len(pred), len(target))
            preds.append(pred[:n, 0])
            goals.append(target[:n, 0])
        a, b = np.concatenate(preds), np.concatenate(goals)
        return round(float(np.corrcoef(a, b)[0, 1]), 4)

    leveled = []
    for audio, target in utterances:
        loud = np.abs(audio) > 0.05 * np.abs(audio).max()
        rms = np.sqrt(np.mean(audio[loud].astype(np.float64) ** 2)) + 1e-12
        leveled.append(((audio * (10 ** (SPEECH_RMS_DBFS / 20) / rms)).astype(np.float32), target))
    clean = r_of(leveled)
    table = {}
    for kind in KINDS:
        table[kind] = {}
        for level in LEVELS_DB:
            mixed = [(np.clip(audio + noise_clip(kind, level, len(audio) / SAMPLE_RATE, seed=n)[:len(audio)],
                              -1, 1), target) for n, (audio, target) in enumerate(leveled)]
            table[kind][level] = r_of(mixed)
    worst = min(min(row.values()) for row in table.values())
    return {"clean": clean, "by_kind": table, "max_drop": round(clean - worst, 4),
            "utterances": len(utterances)}


def main(argv: Sequence[str] | None = None) -> int:
    from runtime.speech.audio_model import AudioModel
    from .evaluate import REPO, run_model
    parser = argparse.ArgumentParser(prog="python -m tools.audio_model.room_noise", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio-model", type=Path, default=REPO / "models" / "audio" / "audio.yaml")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    result = closure_table(AudioModel(args.audio_model), run_model, args.seconds)
    print("| noise | " + " | ".join(f"{level} dB below" for level in LEVELS_DB) + " |")
    print("|---|" + "---|" * len(LEVELS_DB))
    for kind, row in result["by_kind"].items():
        print(f"| {kind} | " + " | ".join(f"{row[level]:.0%}" for level in LEVELS_DB) + " |")
    print(f"\nclosed (open < {CLOSED}) in {result['pooled']:.1%} of all noise frames (goal >= 98%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
