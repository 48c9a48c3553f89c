"""Corpus utterances -> (fbank features, mouth targets) exactly as the runtime will see them.

Features come from the runtime's own `StreamingFbank` with the settings the sidecar will
carry, so training and appliance features are computed by the same code. Targets come from
`tools.audio_model.visemes`. Training variants (clean-ish + augmented) are computed once into shards
under a cache folder (float16 features), then trained on from memory.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from runtime import SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.audio.wav import read_wav
from runtime.speech.features import FbankSettings, StreamingFbank

from .augment import AugmentSettings, random_chain, warp_fbank
from .synth_corpus import worker_pool
from .visemes import Segment, frame_targets, speech_mask, targets_recipe

log = logging.getLogger(__name__)

FRAMES_PER_STEP = 4
SHARD_SIZE = 400


@dataclass(frozen=True)
class Example:
    """One utterance variant: fbank frames, per-video-frame targets and speech mask."""

    features: np.ndarray  # (fbank frames, bins) float32/float16
    targets: np.ndarray  # (video frames, 6) float32
    speech: np.ndarray  # (video frames,) bool


def fbank(audio: np.ndarray, settings: FbankSettings = FbankSettings()) -> np.ndarray:
    stream = StreamingFbank(settings)
    stream.accept(audio)
    return stream.pop_frames()


def load_utterance(corpus: Path, meta: dict) -> tuple[np.ndarray, list[list]]:
    samples, rate = read_wav(corpus / "wav" / f"{meta['id']}.wav")
    assert rate == SAMPLE_RATE, rate
    return samples[:, 0].copy(), meta["segments"]


def make_example(audio: np.ndarray, segments: list[list], table: str,
                 settings: FbankSettings = FbankSettings()) -> Example:
    frames = -(-len(audio) // SAMPLES_PER_FRAME)
    segs = [Segment(*s) for s in segments]
    return Example(fbank(audio, settings), frame_targets(segs, table, len(audio) / SAMPLE_RATE),
                   speech_mask(segs, table, frames))


def _variants(job: tuple[Path, dict, int, int, AugmentSettings]) -> list[Example]:
    corpus, meta, variants, seed, augment = job
    audio, segments = load_utterance(corpus, meta)
    out = []
    for v in range(variants):
        rng = np.random.default_rng([seed, int(meta["id"].split("-")[1]), v])
        aug_audio, aug_segments = random_chain(audio, segments, rng, augment, light=(v == 0))
        ex = make_example(aug_audio, aug_segments, meta["table"])
        features = ex.features
        if v > 0 and augment.vtlp_p > 0 and rng.random() < augment.vtlp_p:
            features = warp_fbank(features, float(rng.uniform(*augment.vtlp_range)))
        out.append(Example(features.astype(np.float16), ex.targets, ex.speech))
    return out


def build_cache(corpus: Path, cache: Path, metas: Sequence[dict], variants: int, seed: int,
                augment: AugmentSettings = AugmentSettings(), workers: int = 2,
                progress: bool = True) -> list[Path]:
    """Write shards of augmented examples (resumable: finished shards are kept)."""
    from tqdm import tqdm

    cache.mkdir(parents=True, exist_ok=True)
    # JSON round trip: tuples come back as lists, and the stored key must compare equal.
    # The targets are stored too: a change of the viseme table or blending invalidates shards.
    key = json.loads(json.dumps({"variants": variants, "seed": seed, "augment": asdict(augment),
                                 "count": len(metas), "targets": targets_recipe()}))
    key_path = cache / "key.json"
    if key_path.exists() and json.loads(key_path.read_text()) != key:
        for old in cache.glob("shard-*.npz"):
            old.unlink()  # another recipe: the old shards do not belong to it
    key_path.write_text(json.dumps(key))
    shards = []
    with worker_pool(workers) as pool, tqdm(total=len(metas), disable=not progress,
                                            desc="features") as bar:
        for first in range(0, len(metas), SHARD_SIZE):
            path = cache / f"shard-{first // SHARD_SIZE:04d}.npz"
            shards.append(path)
            chunk = metas[first:first + SHARD_SIZE]
            if path.exists():
                bar.update(len(chunk))
                continue
            examples = []
            for result in pool.imap(_variants, [(corpus, m, variants, seed, augment) for m in chunk],
                                    chunksize=4):
                examples.extend(result)
                bar.update(1)
            save_shard(path, examples)
    return shards


def save_shard(path: Path, examples: Sequence[Example]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, features=np.concatenate([e.features for e in examples]),
             targets=np.concatenate([e.targets for e in examples]),
             speech=np.concatenate([e.speech for e in examples]),
             feature_counts=np.array([len(e.features) for e in examples]),
             target_counts=np.array([len(e.targets) for e in examples]))
    tmp.rename(path)


def load_shards(paths: Sequence[Path]) -> list[Example]:
    examples = []
    for path in paths:
        with np.load(path) as data:
            f_ends = np.cumsum(data["feature_counts"])
            t_ends = np.cumsum(data["target_counts"])
            feats, targets, speech = data["features"], data["targets"], data["speech"]
            for n in range(len(f_ends)):
                f0 = f_ends[n - 1] if n else 0
                t0 = t_ends[n - 1] if n else 0
                examples.append(Example(feats[f0:f_ends[n]], targets[t0:t_ends[n]],
                                        speech[t0:t_ends[n]]))
    return examples


def step_pairs(example: Example, lookahead_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, frames_per_step * bins) inputs and (steps, 6) targets aligned like the runtime:
    the output of step n belongs to video frame n - lookahead_steps (earlier steps: zeros,
    the mouth is closed before the audio starts)."""
    steps = len(example.features) // FRAMES_PER_STEP
    inputs = example.features[: steps * FRAMES_PER_STEP].reshape(steps, -1).astype(np.float32)
    targets = np.zeros((steps, 6), np.float32)
    frames = np.arange(steps) - lookahead_steps
    valid = (frames >= 0) & (frames < len(example.targets))
    targets[valid] = example.targets[frames[valid]]
    return inputs, targets
