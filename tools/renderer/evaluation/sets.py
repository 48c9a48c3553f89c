"""Held-out mouth parameters: random combinations, speech from the audio model, slow ramps.

None of it is what the renderer was trained on. Training pairs come from
tools/avatar/params.py sample_pairs seeded with the dataset seed (default_rng([seed, shard,
count])); the random set here draws from default_rng([HELD_OUT_BASE + seed, ...]). The
speech set is English test sentences (every fifth line of tools/audio_model/sentences/sentences_en.txt, never
said in training) spoken by test voices (tools/audio_model/synth_corpus.py TEST_VARIANTS and festival's
test voice, never heard in training), turned into parameters by the shipped audio model
through the runtime (runtime.commands.mouth.analyze_samples: what `edgemate mouth` computes).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime import SAMPLE_RATE
from runtime.render.renderer import REST_EPSILON

from tools.avatar.params import sample_sparse

log = logging.getLogger(__name__)

#: Offset of every held-out seed from the dataset seed the training pairs used.
HELD_OUT_BASE = 1000
UNIFORM_SHARE = 0.25  # the rest of the random set is the sparse, speech-shaped mix
SPEECH_PAD_S = 0.3    # silence around each sentence: the mouth closes and opens like in use


@dataclass(frozen=True)
class ParamSet:
    """Rows to render: template frame k and its six mouth parameters, with a sequence id
    (-1 = independent row; otherwise consecutive rows of a sequence are consecutive frames)."""

    name: str
    frames: np.ndarray    # (n,) int template indices
    params: np.ndarray    # (n, 6) float32
    sequence: np.ndarray  # (n,) int
    notes: tuple[str, ...] = ()


def random_set(count: int, seed: int, frame_count: int) -> ParamSet:
    """Sparse speech-shaped mixes and uniform combinations on random template frames.

    Rows with every value under the runtime's REST_EPSILON are redrawn: the renderer does not
    run for them (the template is shown, exactly the truth), so they would only pad the mean.
    """
    rng = np.random.default_rng([HELD_OUT_BASE + seed, 1])
    rows: list[np.ndarray] = []
    n_uniform = int(round(count * UNIFORM_SHARE))
    while sum(len(r) for r in rows) < count:
        need = count - sum(len(r) for r in rows)
        sparse = sample_sparse(rng, max(0, need - n_uniform))
        uniform = rng.random((min(need, n_uniform), 6))
        n_uniform -= len(uniform)
        block = np.concatenate([uniform, sparse])
        rows.append(block[block.max(axis=1) >= REST_EPSILON])
    params = np.concatenate(rows)[:count].astype(np.float32)
    frames = rng.integers(0, frame_count, count)
    return ParamSet("random", frames, params, np.full(count, -1),
                    (f"{int(round(count * UNIFORM_SHARE))} uniform in [0,1]^6, the rest sparse "
                     "random mixes (tools/avatar/params.py sample_sparse), random template frames, "
                     f"seed [{HELD_OUT_BASE + seed}, 1]",))


def _voices(count: int, rng: np.random.Generator, festival: bool) -> list[tuple[str, str]]:
    """(engine, voice) pairs cycling through the held-out voices."""
    from tools.audio_model.synth_corpus import ESPEAK_ACCENTS, FESTIVAL_VOICES, TEST_VARIANTS

    pool = [("espeak", f"{ESPEAK_ACCENTS['en'][i % len(ESPEAK_ACCENTS['en'])]}+{variant}")
            for i, variant in enumerate(TEST_VARIANTS)]
    if festival:
        pool.insert(1, ("festival", FESTIVAL_VOICES["test"][0]))
    order = [int(i) for i in rng.permutation(len(pool))]
    return [pool[order[n % len(pool)]] for n in range(count)]


def synthesize_sentences(count: int, seed: int, work: Path) -> list[dict]:
    """Synthesize `count` held-out sentences; returns [{voice, text, audio (float32 16 kHz)}]."""
    from runtime.audio.wav import read_wav

    from tools.audio_model.synth_corpus import Utterance, load_corpus, read_sentences, sentence_split, synthesize

    rng = np.random.default_rng([HELD_OUT_BASE + seed, 2])
    pool = sentence_split(read_sentences("sentences_en.txt"), "test")
    texts = [pool[int(i)] for i in rng.choice(len(pool), size=min(count, len(pool)), replace=False)]
    voices = _voices(len(texts), rng, festival=shutil.which("festival") is not None)
    utterances = []
    for n, (text, (engine, voice)) in enumerate(zip(texts, voices)):
        uid = f"test-eval-{n:02d}"
        if engine == "festival":
            utterances.append(Utterance(uid, "test", "festival", "festival-en", voice, text))
        else:
            utterances.append(Utterance(uid, "test", "espeak", "espeak-en", voice, text,
                                        rate_wpm=int(rng.integers(140, 200))))
    synthesize(work, utterances, workers=1, progress=False)
    out = []
    for meta in load_corpus(work, "test"):
        samples, _ = read_wav(work / "wav" / f"{meta['id']}.wav")
        out.append({"voice": f"{meta['engine']}:{meta['voice']}", "text": meta["text"],
                    "audio": samples[:, 0].astype(np.float32)})
    return out


def speech_set(audio_model: Path, sentences: int, seed: int, frame_count: int) -> ParamSet:
    """Per-frame parameters of held-out speech, rendered on consecutive template frames.

    Raises RuntimeError/OSError when no speech can be made here (no espeak-ng, no model):
    the caller reports the set as skipped with that reason.
    """
    from runtime.commands.mouth import analyze_samples
    from runtime.speech.audio_model import AudioModel

    model = AudioModel(audio_model)
    rng = np.random.default_rng([HELD_OUT_BASE + seed, 3])
    with tempfile.TemporaryDirectory(prefix="eval-renderer-speech-") as tmp:
        spoken = synthesize_sentences(sentences, seed, Path(tmp))
    if not spoken:
        raise RuntimeError("speech synthesis produced no utterances")
    frames, params, sequence, notes = [], [], [], []
    pad = np.zeros(int(SPEECH_PAD_S * SAMPLE_RATE), np.float32)
    chunk = SAMPLE_RATE // 50  # 20 ms: the chunk size an audio source delivers
    for n, utt in enumerate(spoken):
        audio = np.concatenate([pad, utt["audio"], pad])
        track = analyze_samples((audio[i:i + chunk, None] for i in range(0, len(audio), chunk)),
                                SAMPLE_RATE, 1, model)
        start = int(rng.integers(frame_count))
        frames.append((start + np.arange(len(track))) % frame_count)
        params.append(track)
        sequence.append(np.full(len(track), n))
        notes.append(f"{utt['voice']}: \"{utt['text']}\" ({len(track)} frames from template frame {start})")
    return ParamSet("speech", np.concatenate(frames), np.concatenate(params).astype(np.float32),
                    np.concatenate(sequence), tuple(notes))


def constant_sequence(length: int, start: int, frame_count: int) -> ParamSet:
    """One mid-range mouth held while the template loop advances (head sways, blinks)."""
    params = np.tile(np.array([0.55, 0.3, 0.15, 0.0, 0.0, 0.4], np.float32), (length, 1))
    return ParamSet("constant_params", (start + np.arange(length)) % frame_count, params,
                    np.zeros(length, int), ("open .55, wide .3, round .15, teeth .4 held; k advancing",))


def slow_ramp(length: int, start: int, frame_count: int, advance: bool = True) -> ParamSet:
    """open 0 -> 0.8 over the sequence, wide/round/teeth drifting slowly (at most ~0.02/frame)."""
    t = np.linspace(0.0, 1.0, length)
    params = np.stack([0.8 * t,
                       0.25 + 0.15 * np.sin(2 * np.pi * t),
                       0.15 + 0.1 * np.sin(2 * np.pi * t + 2.0),
                       np.zeros(length),
                       np.zeros(length),
                       0.1 + 0.3 * t], axis=1).astype(np.float32)
    frames = (start + np.arange(length)) % frame_count if advance else np.full(length, start % frame_count)
    name = "slow_ramp" if advance else "slow_ramp_fixed_frame"
    how = "k advancing" if advance else f"template frame {start % frame_count} held"
    return ParamSet(name, frames, params, np.zeros(length, int),
                    (f"open 0->0.8 linear, wide/round drift by a sine, teeth 0.1->0.4; {how}",))
