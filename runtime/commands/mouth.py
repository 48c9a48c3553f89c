"""`edgemate mouth FILE.wav`: the six mouth parameters per 40 ms video frame of a WAV file.

The numbers are the ones the appliance would show for that file: the same resampler, fbank,
audio model and MouthAnalyzer, fed in the appliance's chunk size. At the end, silence is fed
past the model's look-ahead so that every frame of the file gets its value. Useful on its own
for game engines and 2D rigs (JSON or CSV on stdout).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Sequence, TextIO

import numpy as np

from runtime import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.audio.resample import StreamingResampler
from runtime.audio.wav import WavReader
from runtime.speech.audio_model import MOUTH_PARAMS, AudioModel
from runtime.speech.mouth_track import MouthAnalyzer, MouthTrack


#: Input read per chunk: 20 ms at the file's rate, like an audio source delivers it.
CHUNK_MS = 20


class MouthError(Exception):
    """A file or model that cannot be analysed; the message is one line for users."""


def default_audio_model() -> Path:
    """The audio model the default configuration points at (models.audio)."""
    from runtime.config.loader import load_config
    return Path(load_config(None, []).models.audio)


def analyze_samples(chunks, rate: int, channels: int, model: AudioModel) -> np.ndarray:
    """(frames, 6) for the audio in `chunks` ((n, channels) float32 arrays at `rate`)."""
    resampler = StreamingResampler(rate, SAMPLE_RATE, channels)
    total_in = 0
    pieces = []
    for chunk in chunks:
        total_in += len(chunk)
        pieces.append(resampler.process(chunk))
    pieces.append(resampler.finish())
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    frames = -(-total_in * FPS // rate)  # every started 40 ms frame of the file
    track = MouthTrack(capacity=frames + model.lookahead_steps + 8)
    analyzer = MouthAnalyzer(model, track)
    analyzer.reset(0)
    step = SAMPLE_RATE * CHUNK_MS // 1000
    for first in range(0, len(audio), step):
        analyzer.accept(audio[first:first + step])
    # Silence past the end: the look-ahead and the fbank window of the last frame.
    tail = int(np.ceil(analyzer.latency_s * SAMPLE_RATE)) + 2 * SAMPLES_PER_FRAME
    analyzer.accept(np.zeros(tail + max(0, frames * SAMPLES_PER_FRAME - len(audio)), np.float32))
    return np.array([track.get(k) for k in range(frames)], np.float32).reshape(frames, len(MOUTH_PARAMS))


def analyze_file(path: Path, model: AudioModel) -> np.ndarray:
    try:
        with WavReader(path) as reader:
            rate, channels = reader.rate, reader.channels

            def chunks():
                size = max(1, rate * CHUNK_MS // 1000)
                while True:
                    block = reader.read(size)
                    if block is None or len(block) == 0:
                        return
                    yield block
            return analyze_samples(chunks(), rate, channels, model)
    except FileNotFoundError:
        raise MouthError(f"{path}: no such file") from None
    except ValueError as err:  # unsupported rate or channel count
        raise MouthError(f"{path}: {err}") from None


def write_result(params: np.ndarray, fmt: str, out: TextIO) -> None:
    rounded = np.round(params.astype(np.float64), 4)
    if fmt == "json":
        json.dump({"fps": FPS, "names": list(MOUTH_PARAMS), "frames": rounded.tolist()}, out)
        out.write("\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["frame", "time_s", *MOUTH_PARAMS])
    for k, row in enumerate(rounded):
        writer.writerow([k, f"{k / FPS:.2f}", *(f"{v:.4f}" for v in row)])


def add_parser(sub) -> argparse.ArgumentParser:
    mouth = sub.add_parser("mouth", help="six mouth parameters per 40 ms frame of a WAV file")
    mouth.add_argument("wav", type=Path, metavar="FILE.wav")
    mouth.add_argument("--format", choices=("json", "csv"), default="json")
    mouth.add_argument("--audio-model", type=Path, help="audio model sidecar (default: the shipped one)")
    return mouth


def run_mouth(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The `edgemate mouth` command; one-line errors on stderr, exit 1."""
    from runtime.audio.wav import WavError
    from runtime.config.loader import ConfigError
    from runtime.models.ncnn_model import ModelError
    try:
        sidecar = args.audio_model or default_audio_model()
        params = analyze_file(args.wav, AudioModel(sidecar))
    except (MouthError, ModelError, ConfigError, WavError) as err:
        print(f"edgemate mouth: {str(err).splitlines()[0]}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"edgemate mouth: {args.wav}: {err.strerror or err}", file=sys.stderr)
        return 1
    try:
        write_result(params, args.format, out or sys.stdout)
    except BrokenPipeError:  # `edgemate mouth x.wav | head`: the reader has what it wanted
        sys.stderr.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgemate-mouth")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run_mouth(parser.parse_args(["mouth", *(argv if argv is not None else sys.argv[1:])]))
