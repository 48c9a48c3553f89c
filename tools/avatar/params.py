"""Mouth-parameter sampling for training pairs: rest, sparse random mixes, speech-like runs.

The mix covers the whole unit cube (the renderer must draw every combination) while
spending most samples where speech lives: few parameters active at once, press/bite rarely
together with a wide-open jaw, round and wide rarely both high, and smooth trajectories
(visemes with coarticulation and pauses) so a trainer can also learn temporal smoothness.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Viseme targets (open, wide, round, press, bite, teeth) for the speech-like trajectories.
VISEMES = {
    "a": (0.85, 0.3, 0.0, 0.0, 0.0, 0.15), "e": (0.45, 0.7, 0.0, 0.0, 0.0, 0.4),
    "i": (0.25, 0.9, 0.0, 0.0, 0.0, 0.6), "o": (0.6, 0.0, 0.8, 0.0, 0.0, 0.0),
    "u": (0.2, 0.0, 1.0, 0.0, 0.0, 0.0), "m": (0.0, 0.1, 0.0, 1.0, 0.0, 0.0),
    "f": (0.1, 0.2, 0.0, 0.0, 1.0, 0.3), "t": (0.3, 0.3, 0.0, 0.0, 0.0, 0.9),
    "s": (0.15, 0.6, 0.0, 0.0, 0.0, 0.8), "sh": (0.25, 0.0, 0.7, 0.0, 0.0, 0.7),
    "l": (0.35, 0.2, 0.0, 0.0, 0.0, 0.7),
}
ACTIVE_PROB = (0.7, 0.35, 0.3, 0.2, 0.15, 0.3)  # per parameter, for the sparse random mix


@dataclass(frozen=True)
class ParamMix:
    """Fractions of each sample kind (they need not sum to 1; they are normalised)."""

    rest: float = 0.12
    sparse: float = 0.40
    uniform: float = 0.08
    speech: float = 0.40
    speech_run: tuple[int, int] = (25, 100)  # frames per speech-like run

    def describe(self) -> dict:
        total = self.rest + self.sparse + self.uniform + self.speech
        return {
            "rest": round(self.rest / total, 4),
            "sparse_random": round(self.sparse / total, 4),
            "uniform_random": round(self.uniform / total, 4),
            "speech_like": round(self.speech / total, 4),
            "speech_run_frames": list(self.speech_run),
            "sparse_active_prob": dict(zip(("open", "wide", "round", "press", "bite", "teeth"), ACTIVE_PROB)),
            "correlations": "press>0.5 -> open,teeth x0.25 (90%); bite>0.5 -> open<=0.3, round x0.3; "
                            "round and wide both active -> the smaller x0.3",
            "visemes": {k: list(v) for k, v in VISEMES.items()},
        }


def sample_sparse(rng: np.random.Generator, n: int) -> np.ndarray:
    active = rng.random((n, 6)) < np.asarray(ACTIVE_PROB)
    values = rng.beta(1.4, 1.4, (n, 6))
    p = np.where(active, values, 0.0)
    pressed = (p[:, 3] > 0.5) & (rng.random(n) < 0.9)
    p[pressed, 0] *= 0.25
    p[pressed, 5] *= 0.25
    biting = p[:, 4] > 0.5
    p[biting, 0] = np.minimum(p[biting, 0], 0.3)
    p[biting, 2] *= 0.3
    both = (p[:, 1] > 0) & (p[:, 2] > 0)
    smaller = np.where(p[:, 1] < p[:, 2], 1, 2)
    p[both, smaller[both]] *= 0.3
    return p


def speech_run(rng: np.random.Generator, length: int) -> np.ndarray:
    """(length, 6): visemes every 2-5 frames with jittered strength, pauses closing the mouth,
    smoothed forward and backward (coarticulation) so the run moves like speech."""
    names = list(VISEMES)
    keys_t, keys_v = [0], [np.zeros(6)]
    t = int(rng.integers(0, 6))
    while t < length + 6:
        if rng.random() < 0.12:  # a pause: the mouth closes and rests
            t += int(rng.integers(4, 15))
            keys_t.append(t)
            keys_v.append(np.zeros(6))
        else:
            target = np.asarray(VISEMES[names[int(rng.integers(len(names)))]])
            v = np.clip(target * rng.uniform(0.55, 1.1) + rng.normal(0, 0.05, 6) * (target > 0), 0, 1)
            t += int(rng.integers(2, 6))
            keys_t.append(t)
            keys_v.append(v)
    keys_t_arr, keys_v_arr = np.asarray(keys_t, float), np.asarray(keys_v)
    frames = np.arange(length, dtype=float)
    out = np.stack([np.interp(frames, keys_t_arr, keys_v_arr[:, j]) for j in range(6)], axis=1)
    for _ in range(1):  # forward-backward exponential smoothing: zero-phase, no lag
        for rows in (range(1, length), range(length - 2, -1, -1)):
            step = -1 if rows.step == 1 else 1
            for i in rows:
                out[i] = 0.6 * out[i] + 0.4 * out[i + step]
    return np.clip(out, 0.0, 1.0)


def sample_pairs(rng: np.random.Generator, n: int, frames: int, mix: ParamMix = ParamMix()
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(template_index (n,), params (n, 6) float32, sequence (n,) int32: -1 for independent
    samples, else the id of the speech-like run the row belongs to, rows in run order)."""
    total = mix.rest + mix.sparse + mix.uniform + mix.speech
    n_speech = int(round(n * mix.speech / total))
    n_rest = int(round(n * mix.rest / total))
    n_uniform = int(round(n * mix.uniform / total))
    n_sparse = max(0, n - n_speech - n_rest - n_uniform)
    index, params, seq = [], [], []
    run_id = 0
    left = n_speech
    while left > 0:
        length = min(left, int(rng.integers(mix.speech_run[0], mix.speech_run[1] + 1)))
        start = int(rng.integers(frames))
        index.append((start + np.arange(length)) % frames)  # consecutive template frames
        params.append(speech_run(rng, length))
        seq.append(np.full(length, run_id))
        run_id += 1
        left -= length
    for block in (np.zeros((n_rest, 6)), rng.random((n_uniform, 6)), sample_sparse(rng, n_sparse)):
        index.append(rng.integers(0, frames, len(block)))
        params.append(block)
        seq.append(np.full(len(block), -1))
    return (np.concatenate(index).astype(np.int32), np.concatenate(params).astype(np.float32),
            np.concatenate(seq).astype(np.int32))
