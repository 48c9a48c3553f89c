"""Synthesized speech with exact phoneme timing: the audio model's training corpus.

    python -m tools.audio_model.synth_corpus --out /work/cache/corpus [--seed 0] [--train 3600 --test 300]

Three engines:
- espeak-ng through its C library (tools.audio_model.espeak_voice), initialised with phoneme
  events in IPA: every phoneme arrives with its sample position in the audio, so its timing
  is exact. English (several accents) and Mandarin (pinyin with tone numbers), many voice
  variants, speaking rates, pitches and pitch ranges.
- festival (`festival -b` on a generated script), which saves segment end times per
  utterance: the HTS voice cmu_us_slt_arctic_hts and the diphone voices kal_diphone, ked_diphone.
- flite through its C library (tools.audio_model.flite_voices): voices built from recordings
  of real people (slt, rms, awb, kal16), with the segment timing flite computed.

The espeak-ng voices are formant synthesis: a model that only heard them followed real speech
no better than its loudness (issue 14). A second part of the plan, the *natural* voices (flite
and festival's diphone voices, `NATURAL_VOICES`), is drawn from a random stream of its own, so
adding it left every utterance of the first part (and every file already made) unchanged.

The split is by voice: a voice is (engine, accent, variant); test voices (`TEST_VARIANTS`,
festival `kal_diphone`, flite `rms`) are never heard in training. Test utterances also use sentences never
said in training (every fifth line of the sentence files). The plan of utterances is a pure
function of the seed, and each utterance is a pure function of its plan entry (espeak-ng keeps
state between utterances, so each one is synthesized in a freshly forked process); an
utterance already on disk is skipped, so an interrupted run resumes.
Output per utterance: `wav/ID.wav` (16 kHz mono PCM16, resampled with the runtime's
resampler) and `meta/ID.json` (text, voice, settings, phoneme segments in seconds).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Sequence

import numpy as np

from runtime import SAMPLE_RATE
from runtime.audio.resample import StreamingResampler
from runtime.audio.wav import read_wav, write_wav

from .espeak_voice import Espeak, espeak_segments

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "sentences"
ESPEAK_ACCENTS = {
    "en": ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan"),
    "cmn": ("cmn-latn-pinyin",),
}
TRAIN_VARIANTS = ("m1", "m2", "m3", "m5", "m6", "m7", "f1", "f3", "f4", "f5", "klatt", "klatt2",
                  "Alex", "Annie", "adam", "anika", "benjamin", "caleb", "david", "edward",
                  "linda", "max", "paul", "robert", "steph", "travis", "zac", "belinda")
TEST_VARIANTS = ("f2", "m4", "klatt3", "Andrea", "john")
FESTIVAL_VOICES = {"train": ("cmu_us_slt_arctic_hts",), "test": ("kal_diphone",)}
#: Share of utterances per source in each split.
SOURCE_SHARES = (("espeak-en", 0.55), ("espeak-cmn", 0.3), ("festival-en", 0.15))
FESTIVAL_BATCH = 25
#: The natural-voice part of the plan: (engine, voice) per split. rms (flite) and kal_diphone
#: (festival, also a test voice of the first part) are never heard in training.
NATURAL_VOICES = {"train": (("flite", "slt"), ("flite", "awb"), ("flite", "kal16"),
                            ("festival", "ked_diphone")),
                  "test": (("flite", "rms"),)}
#: Natural utterances are numbered from here (ids stay `split-NUMBER`, apart from the first part).
NATURAL_ID_BASE = 100000


def is_natural(meta: dict) -> bool:
    """True for an utterance (metadata) of the natural-voice part of the plan."""
    return int(meta["id"].split("-")[1]) >= NATURAL_ID_BASE

@dataclass(frozen=True)
class Utterance:
    """One planned utterance; everything needed to synthesize it again."""

    id: str
    split: str
    engine: str  # espeak | festival | flite
    table: str  # which phoneme table of tools.audio_model.visemes reads its segments
    voice: str
    text: str
    rate_wpm: int = 175  # espeak only
    pitch: int = 50  # espeak only (0-100)
    pitch_range: int = 50  # espeak only (0-100)
    stretch: float = 1.0  # festival Duration_Stretch, flite duration_stretch


def read_sentences(name: str) -> list[str]:
    lines = (DATA_DIR / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def sentence_split(sentences: Sequence[str], split: str) -> list[str]:
    """Every fifth sentence is a test sentence."""
    return [s for n, s in enumerate(sentences) if (n % 5 == 4) == (split == "test")]


def plan(seed: int, train: int, test: int, natural_train: int = 0,
         natural_test: int = 0) -> list[Utterance]:
    """The whole corpus as a deterministic function of the seed: the espeak-ng / festival part,
    then the natural-voice part (its own random stream)."""
    return _first_plan(seed, train, test) + natural_plan(seed, natural_train, natural_test)


def natural_plan(seed: int, train: int, test: int) -> list[Utterance]:
    """English from voices built on recordings of people, at speaking rates 0.8-1.3x."""
    rng = random.Random(f"{seed}-natural")
    pool = {split: sentence_split(read_sentences("sentences_en.txt"), split) for split in ("train", "test")}
    utterances = []
    for split, count in (("train", train), ("test", test)):
        for n in range(count):
            engine, voice = rng.choice(NATURAL_VOICES[split])
            text = " ".join(rng.sample(pool[split], rng.choice((1, 1, 2))))
            utterances.append(Utterance(f"{split}-{NATURAL_ID_BASE + n}", split, engine, "festival-en",
                                        voice, text, stretch=round(rng.uniform(0.8, 1.3), 3)))
    return utterances


def _first_plan(seed: int, train: int, test: int) -> list[Utterance]:
    rng = random.Random(seed)
    texts = {"en": read_sentences("sentences_en.txt"), "cmn": read_sentences("sentences_cmn.txt")}
    utterances = []
    for split, count in (("train", train), ("test", test)):
        variants = TRAIN_VARIANTS if split == "train" else TEST_VARIANTS
        for n in range(count):
            pick = rng.random()
            source = _pick_source(pick)
            lang = "cmn" if source == "espeak-cmn" else "en"
            pool = sentence_split(texts[lang], split)
            text = " ".join(rng.sample(pool, rng.choice((1, 1, 2))))
            uid = f"{split}-{n:05d}"
            if source == "festival-en":
                utterances.append(Utterance(uid, split, "festival", "festival-en",
                                            rng.choice(FESTIVAL_VOICES[split]), text,
                                            stretch=round(rng.uniform(0.8, 1.3), 3)))
            else:
                voice = f"{rng.choice(ESPEAK_ACCENTS[lang])}+{rng.choice(variants)}"
                utterances.append(Utterance(uid, split, "espeak", source, voice, text,
                                            rate_wpm=rng.randint(120, 240), pitch=rng.randint(15, 85),
                                            pitch_range=rng.randint(20, 90)))
    return utterances


def _pick_source(pick: float) -> str:
    """The source whose cumulative share first exceeds `pick` (the last one takes the rest)."""
    total = 0.0
    for name, share in SOURCE_SHARES[:-1]:
        total += share
        if pick < total:
            return name
    return SOURCE_SHARES[-1][0]


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Any rate to 16 kHz with the runtime's own resampler (what the appliance does)."""
    if rate == SAMPLE_RATE:
        return samples.astype(np.float32)
    resampler = StreamingResampler(rate, SAMPLE_RATE)
    return np.concatenate([resampler.process(samples), resampler.finish()])


def _save(out: Path, utt: Utterance, audio: np.ndarray, segments: list[list]) -> None:
    write_wav(out / "wav" / f"{utt.id}.wav", audio, SAMPLE_RATE)
    meta = {**asdict(utt), "duration_s": len(audio) / SAMPLE_RATE, "segments": segments}
    tmp = out / "meta" / f"{utt.id}.json.tmp"
    tmp.write_text(json.dumps(meta, ensure_ascii=False))
    tmp.rename(tmp.with_suffix(""))  # the .json appears only when the utterance is complete


def _synth_espeak(job: tuple[Path, Utterance]) -> int:
    """Synthesize one utterance in a forked child of this (pool worker) process.

    espeak-ng keeps state from one utterance to the next (durations and waveforms change with
    what was said before), so only a process that has never synthesized anything makes an
    utterance a pure function of its plan entry. This worker never initialises espeak-ng
    itself; each child does, once, and exits.
    """
    out, utt = job
    pid = os.fork()
    if pid == 0:  # the child: never return into the pool's machinery
        code = 1
        try:
            # espeak-ng draws noise (breath, frication) from libc's rand(), whose state the
            # fork copies from the parent: any C library in the parent that called rand()
            # before (a test suite runs many) changed the samples. srand(1) is the state a
            # fresh process starts in, so every utterance is the same bytes as from the CLI.
            ctypes.CDLL(None).srand(1)
            espeak = Espeak()
            pcm, events = espeak.synth(utt)
            audio = to_16k(pcm.astype(np.float32) / 32768.0, espeak.rate)
            _save(out, utt, audio, espeak_segments(events, len(pcm), espeak.rate))
            code = 0
        except BaseException as err:  # reported by the parent through the exit code
            print(f"espeak-ng failed on {utt.id} ({utt.voice}): {err}", file=sys.stderr)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"espeak-ng synthesis of {utt.id} ({utt.voice}) failed")
    return 1


def _festival_script(jobs: Sequence[Utterance], work: Path) -> str:
    lines = []
    for utt in jobs:
        text = utt.text.replace("\\", " ").replace('"', " ")
        lines += [f"(voice_{utt.voice})", f"(Parameter.set 'Duration_Stretch {utt.stretch})",
                  f'(set! utt (utt.synth (Utterance Text "{text}")))',
                  f'(utt.save.wave utt "{work / utt.id}.wav" \'riff)',
                  f'(utt.save.segs utt "{work / utt.id}.segs")']
    return "\n".join(lines) + "\n"


def read_festival_segs(path: Path) -> list[list]:
    """xlabel file (header, '#', then 'end_time colour phone') -> [start_s, end_s, phone]."""
    segments, start, body = [], 0.0, False
    for line in path.read_text().splitlines():
        if line.strip() == "#":
            body = True
            continue
        parts = line.split()
        if body and len(parts) >= 3:
            end = float(parts[0])
            if end > start:
                segments.append([start, end, parts[2]])
            start = end
    return segments


def _synth_festival(job: tuple[Path, list[Utterance]]) -> int:
    out, utts = job
    with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
        work = Path(tmp)
        (work / "batch.scm").write_text(_festival_script(utts, work))
        done = subprocess.run(["festival", "-b", str(work / "batch.scm")],
                              capture_output=True, timeout=600)
        if done.returncode != 0:
            # Usually a voice that is not installed (its Debian package: festvox-*).
            voices = sorted({utt.voice for utt in utts})
            detail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            raise SystemExit(f"festival failed (exit {done.returncode}) for voice(s) "
                             f"{', '.join(map(str, voices))}: {detail[-1] if detail else 'no output'}; "
                             f"is the voice installed? (Debian: apt-get install festvox-us-slt-hts "
                             f"festvox-kallpc16k festvox-kdlpc16k)")
        for utt in utts:
            samples, rate = read_wav(work / f"{utt.id}.wav")
            audio = to_16k(samples[:, 0], rate)
            _save(out, utt, audio, read_festival_segs(work / f"{utt.id}.segs"))
    return len(utts)


def _synth_flite(job: tuple[Path, list[Utterance]]) -> int:
    from .flite_voices import synth

    out, utts = job
    for utt in utts:
        samples, rate, segments = synth(utt.voice, utt.text, utt.stretch)
        _save(out, utt, to_16k(samples, rate), segments)
    return len(utts)


_BATCH_ENGINES = {"festival": _synth_festival, "flite": _synth_flite}


def _batches(utts: list[Utterance]) -> list[list[Utterance]]:
    return [utts[i:i + FESTIVAL_BATCH] for i in range(0, len(utts), FESTIVAL_BATCH)]


def _run_batch(item: tuple[str, tuple[Path, list[Utterance]]]) -> int:
    engine, job = item
    return _BATCH_ENGINES[engine](job)


class _SerialPool:
    """Pool stand-in that runs in this process (workers=1: no fork, easy to debug)."""

    def imap_unordered(self, func, items, chunksize=1):
        return map(func, items)

    imap = imap_unordered

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _worker_init() -> None:
    # A forked worker inherits the parent's Python signal handlers (an application or test
    # may have set SIGTERM to "stop gracefully"); Pool.terminate() relies on SIGTERM killing.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent


def worker_pool(workers: int):
    """multiprocessing.Pool for workers > 1, else an in-process stand-in."""
    return Pool(workers, initializer=_worker_init) if workers > 1 else _SerialPool()


def synthesize(out: Path, utterances: Sequence[Utterance], workers: int = 2,
               progress: bool = True) -> int:
    """Synthesize whatever of `utterances` is not on disk yet; returns how many were made."""
    from tqdm import tqdm

    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "meta").mkdir(parents=True, exist_ok=True)
    todo = [u for u in utterances if not (out / "meta" / f"{u.id}.json").exists()]
    espeak = [(out, u) for u in todo if u.engine == "espeak"]
    batched = [(engine, (out, batch)) for engine in _BATCH_ENGINES
               for batch in _batches([u for u in todo if u.engine == engine])]
    log.info("%d of %d utterances to synthesize", len(todo), len(utterances))
    done = 0
    with tqdm(total=len(todo), disable=not progress, desc="synth") as bar:
        # festival runs as its own process per batch (and is deterministic): no pool needed
        # beyond the parallelism; espeak-ng needs a clean process per utterance.
        with worker_pool(workers) as pool:
            # flite keeps no state between utterances that changes them: batches per worker too.
            for count in pool.imap_unordered(_run_batch, batched):
                done += count
                bar.update(count)
        if espeak:
            # Always real worker processes (even for one): _synth_espeak forks per utterance,
            # which must not happen in a many-threaded parent such as a test runner.
            with Pool(max(1, workers), initializer=_worker_init) as pool:
                for count in pool.imap_unordered(_synth_espeak, espeak, chunksize=8):
                    done += count
                    bar.update(count)
    (out / "plan.json").write_text(json.dumps([asdict(u) for u in utterances], ensure_ascii=False))
    return done


def load_corpus(out: Path, split: str | None = None) -> list[dict]:
    """Metadata of every synthesized utterance (optionally one split), in plan order."""
    metas = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((out / "meta").glob("*.json"))]
    return [m for m in metas if split is None or m["split"] == split]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.audio_model.synth_corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/work/cache/corpus"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=3600, help="training utterances")
    parser.add_argument("--test", type=int, default=300, help="held-out-voice utterances")
    parser.add_argument("--natural-train", type=int, default=0, help="natural-voice training utterances")
    parser.add_argument("--natural-test", type=int, default=0, help="natural-voice held-out utterances")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    made = synthesize(args.out, plan(args.seed, args.train, args.test, args.natural_train,
                                     args.natural_test), args.workers)
    log.info("synthesized %d utterances into %s", made, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
