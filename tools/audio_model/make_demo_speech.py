"""The default avatar's demo clip: a lobby greeting spoken by our own speech synthesis.

    python -m tools.audio_model.make_demo_speech --out models/avatars/default/demo.wav
    python -m tools.audio_model.make_demo_speech --compare      # measure the candidate voices

English, about 20 s: each sentence of SCRIPT is synthesized on its own (tools.audio_model.synth_corpus:
espeak-ng in a fresh process per sentence, or festival), resampled to 16 kHz with the
runtime's resampler, trimmed to its speech, and laid end to end with pauses of digital
silence between sentences (so `edgemate demo` shows the mouth closing and the idle loop).
The clip is peak-normalised to -3 dBFS and written as 16 kHz mono PCM16 (the rate the audio
model runs at; the runtime's WAV reader takes 8 to 96 kHz). A sidecar `demo.yaml` next to
it holds each sentence's text and start/end in seconds, the voice, rate, duration, the
WAV's sha256 and the command that rebuilds it. The same command gives the same clip: the
same timing and level, normally the same bytes (an espeak-ng rebuild once differed in its
noise, inside a long test process).

The voice is festival's HTS voice cmu_us_slt_arctic_hts (Debian festvox-us-slt-hts); why, with
the figures of the other candidates, is in tools/audio_model/demo_voices.py (CANDIDATES).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from runtime import SAMPLE_RATE
from runtime.audio.wav import read_wav, write_wav

from .demo_voices import CANDIDATES, DEFAULT_VOICE, Voice, measure, parse_voice

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Line:
    text: str
    pause_after_s: float  # digital silence after this sentence (none after the last)


#: A friendly lobby/signage greeting. The fourth line is there for the mouth: "oo" (cool,
#: smoothie, blue, to), "ee" (feel, free, peach, seats), m/b/p (menu, grab, peach, smoothie,
#: blue) and f/v (feel, free, view, of).
SCRIPT = (
    Line("Hello, and welcome to our lobby!", 0.8),
    Line("We are open every day, from nine in the morning until six.", 0.6),
    Line("If you need help, just ask at the information desk by the door.", 1.0),
    Line("Feel free to view the menu, grab a cool peach smoothie, "
         "or relax on the blue seats.", 0.7),
    Line("Thank you for visiting, and have a wonderful day!", 0.0),
)


@dataclass(frozen=True)
class ClipSettings:
    lead_in_s: float = 0.4  # silence before the first word: the avatar is seen at rest first
    tail_s: float = 0.6  # and after the last, so the mouth is seen closing
    peak_dbfs: float = -3.0
    #: Where a sentence's speech begins and ends: first/last sample above this (-54 dBFS).
    trim_threshold: float = 0.002
    #: Kept around the threshold crossings so soft onsets (f, h) and decays are not clipped.
    trim_margin_s: float = 0.02


class DemoError(Exception):
    """One line for the user."""


def synth_lines(lines: Sequence[Line], voice: Voice) -> list[np.ndarray]:
    """Each line as float32 16 kHz mono, synthesized apart (a pure function of line and voice)."""
    from .synth_corpus import synthesize

    utterances = [voice.utterance(f"demo-{n:02d}", line.text) for n, line in enumerate(lines)]
    with tempfile.TemporaryDirectory(prefix="edgemate-demo-") as tmp:
        synthesize(Path(tmp), utterances, workers=1, progress=False)
        return [read_wav(Path(tmp) / "wav" / f"{u.id}.wav")[0][:, 0] for u in utterances]


def trim(samples: np.ndarray, settings: ClipSettings) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > settings.trim_threshold)
    if loud.size == 0:
        raise DemoError("the synthesizer returned silence for a sentence")
    margin = int(round(settings.trim_margin_s * SAMPLE_RATE))
    return samples[max(0, loud[0] - margin):loud[-1] + 1 + margin]


def assemble(lines: Sequence[Line], speech: Sequence[np.ndarray],
             settings: ClipSettings) -> tuple[np.ndarray, list[dict]]:
    """Trimmed sentences with exact zero gaps, peak-normalised; (clip, per-sentence timings)."""
    parts = [np.zeros(int(round(settings.lead_in_s * SAMPLE_RATE)), np.float32)]
    timings, at = [], len(parts[0])
    for n, (line, samples) in enumerate(zip(lines, speech)):
        spoken = trim(samples, settings)
        gap = 0.0 if n == len(lines) - 1 else line.pause_after_s
        silence = np.zeros(int(round(gap * SAMPLE_RATE)), np.float32)
        # Seconds to 6 places: round(s * 16000) gives back the exact sample.
        timings.append({"text": line.text, "start_s": round(at / SAMPLE_RATE, 6),
                        "end_s": round((at + len(spoken)) / SAMPLE_RATE, 6),
                        "pause_after_s": round(len(silence) / SAMPLE_RATE, 6)})
        parts += [spoken, silence]
        at += len(spoken) + len(silence)
    parts.append(np.zeros(int(round(settings.tail_s * SAMPLE_RATE)), np.float32))
    clip = np.concatenate(parts).astype(np.float64)
    peak = float(np.abs(clip).max())
    clip *= 10 ** (settings.peak_dbfs / 20) / peak
    return clip.astype(np.float32), timings


def engine_version(voice: Voice) -> str:
    """The synthesizer's version: the bytes depend on it, so the sidecar records it."""
    command = ["espeak-ng", "--version"] if voice.engine == "espeak" else ["festival", "--version"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout.strip().splitlines() or ["unknown"])[0]


def recipe(out: Path, voice: Voice, sentences: int) -> str:
    """The rebuild command, with the output path as seen from the repository root."""
    try:
        shown = out.resolve().relative_to(REPO)
    except ValueError:
        shown = out
    command = f"python -m tools.audio_model.make_demo_speech --out {shown} --voice {voice.spec}"
    return command + (f" --sentences {sentences}" if sentences < len(SCRIPT) else "")


def build(out: Path, voice: Voice, sentences: int = len(SCRIPT),
          settings: ClipSettings = ClipSettings()) -> dict:
    """Write `out` (WAV) and its .yaml sidecar (demo.wav: demo.yaml), each atomically, for
    the first `sentences` lines of SCRIPT; returns the sidecar."""
    lines = SCRIPT[:sentences]
    clip, timings = assemble(lines, synth_lines(lines, voice), settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    side = out.with_suffix(".yaml")
    tmp, side_tmp = out.with_name(out.name + ".part"), side.with_name(side.name + ".part")
    try:
        write_wav(tmp, clip, SAMPLE_RATE, "pcm16")
        sidecar = {
            "what": "demo clip of the default avatar (edgemate demo), made by our own speech "
                    "synthesis: tools/audio_model/make_demo_speech.py",
            "file": out.name,
            "sha256": hashlib.sha256(tmp.read_bytes()).hexdigest(),
            "sample_rate": SAMPLE_RATE, "channels": 1, "sample_format": "pcm16",
            "duration_s": round(len(clip) / SAMPLE_RATE, 6),
            "peak_dbfs": settings.peak_dbfs,
            "voice": {"engine": voice.engine, "name": voice.name, **voice.knobs(),
                      "engine_version": engine_version(voice), "why": voice.why},
            "sentences": timings,
            "recipe": recipe(out, voice, len(lines)),
            "recipe_needs": f"Debian packages {voice.package}; the same command gives the same clip",
            "measured": measure(clip, SAMPLE_RATE),
        }
        side_tmp.write_text(yaml.safe_dump(sidecar, sort_keys=False, allow_unicode=True, width=100))
        # The sidecar takes its place first: a new WAV on disk means its sidecar is there too.
        os.replace(side_tmp, side)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        side_tmp.unlink(missing_ok=True)
    return sidecar


def compare(voices: Sequence[Voice], lines: Sequence[Line], settings: ClipSettings) -> list[dict]:
    """Synthesize the script with each voice and measure it (no files kept)."""
    rows = []
    for voice in voices:
        speech = synth_lines(lines, voice)
        raw_clipped = sum(int(np.count_nonzero(np.abs(s) >= 32767 / 32768)) for s in speech)
        clip, timings = assemble(lines, speech, settings)
        spoken_s = sum(t["end_s"] - t["start_s"] for t in timings)
        words = sum(len(line.text.split()) for line in lines)
        rows.append({"voice": voice.spec, "duration_s": round(len(clip) / SAMPLE_RATE, 2),
                     "words_per_min": int(60 * words / spoken_s), "clipped_samples_raw": raw_clipped,
                     **measure(clip, SAMPLE_RATE)})
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.audio_model.make_demo_speech",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="the WAV to write (demo.yaml goes next to it)")
    parser.add_argument("--voice", help=f"ENGINE:NAME[,knob=value...] (default {DEFAULT_VOICE})")
    parser.add_argument("--compare", action="store_true", help="measure the candidate voices")
    parser.add_argument("--sentences", type=int, help="only the first N sentences (tests)")
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    sentences = args.sentences or len(SCRIPT)
    if not 1 <= sentences <= len(SCRIPT):
        _parser().error(f"--sentences: must be 1 to {len(SCRIPT)} (got {sentences})")
    try:
        if args.compare:
            voices = [parse_voice(args.voice)] if args.voice else [parse_voice(v) for v in CANDIDATES]
            for row in compare(voices, SCRIPT[:sentences], ClipSettings()):
                print("  ".join(f"{k}={v}" for k, v in row.items()))
            return 0
        if args.out is None:
            _parser().error("--out is required (or --compare)")
        voice = parse_voice(args.voice or DEFAULT_VOICE)
        missing = "espeak-ng" if voice.engine == "espeak" else "festival"
        if shutil.which(missing) is None:
            raise DemoError(f"{missing} is not installed (Debian: apt install {voice.package})")
        side = build(args.out, voice, sentences)
    except subprocess.CalledProcessError as err:
        if args.debug:
            raise
        print(f"make_demo_speech: {err.cmd[0]} failed (exit {err.returncode}); is the voice "
              f"installed? (Debian: apt install {parse_voice(args.voice or DEFAULT_VOICE).package})",
              file=sys.stderr)
        return 1
    except (DemoError, ValueError, RuntimeError, OSError) as err:
        if args.debug:
            raise
        print(f"make_demo_speech: {err}", file=sys.stderr)
        return 1
    log.info("%s: %.2f s, %d sentences, voice %s, sha256 %s", args.out, side["duration_s"],
             len(side["sentences"]), side["voice"]["name"], side["sha256"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
