"""Does a recording's mouth follow its speech? Measured on the recorded MP4 itself.

    python -m tools.checks.lipsync_check RECORDING.mp4 --audio SPEECH.wav [--bundle DIR]
        [--audio-model SIDECAR] [--plot OUT.png] [--json]

For each video frame k of a recording made by the record sink (frame k shows audio time
k/25 s; repeats fill dropped indices): the rendered mouth change is the mean absolute
difference between the frame's mouth box and the template's (inside the bundle's mask),
and the audio model's `open` comes from the same WAV run offline through the runtime's
model. Reported: r(open, change) over speech frames, per sentence (speech between pauses
of >= 0.3 s) whether the mouth moved, and a plot of both curves over the waveform.
This reads pixels, not the appliance's own bookkeeping: a mouth shut at PASS shows as a
flat change curve, whatever the logs say.
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from runtime import FPS
from runtime.audio.wav import read_wav
from runtime.commands.lipsync_meter import SPEECH_MIN, pearson
from runtime.commands.mouth import analyze_file, default_audio_model
from runtime.display.record_ffmpeg import find_ffmpeg
from runtime.render.bundle import load_bundle
from runtime.speech.audio_model import AudioModel

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
#: A sentence "moved the mouth" when its largest rendered change is this many levels above
#: the encoder's noise floor (the change measured on the recording's rest frames).
MOVED_LEVELS = 2.0
_PAUSE_FRAMES = 8  # 0.32 s below SPEECH_MIN ends a sentence


def rendered_change(recording: Path, bundle) -> np.ndarray:
    """Per video frame: mean |recorded box - template box| over the mask, in levels."""
    width, height = bundle.frame_size
    size = width * height * 3
    b = bundle.box_size
    weight = bundle.mask / bundle.mask.sum()
    proc = subprocess.Popen([find_ffmpeg(), "-v", "error", "-i", str(recording), "-f", "rawvideo",
                             "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE)
    changes = []
    try:
        while True:
            data = proc.stdout.read(size)
            if len(data) < size:
                break
            frame = np.frombuffer(data, np.uint8).reshape(height, width, 3)
            k = len(changes) % bundle.frame_count
            x, y = (int(v) for v in bundle.crop_boxes[k])
            shown = frame[y:y + b, x:x + b].astype(np.int16)
            template = np.asarray(bundle.frames[k][y:y + b, x:x + b], np.int16)
            if shown.shape != template.shape:  # a box at the frame edge: score what is inside
                h, w = shown.shape[:2]
                template, cut = template[:h, :w], weight[:h, :w]
            else:
                cut = weight
            changes.append(float((np.abs(shown - template).mean(axis=2) * cut).sum()))
    finally:
        proc.stdout.close()
        proc.wait()
    if proc.returncode not in (0, None) and not changes:
        raise SystemExit(f"{recording}: ffmpeg could not decode it (exit {proc.returncode})")
    return np.asarray(changes)


def sentences(opens: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) frame ranges of speech separated by pauses of >= _PAUSE_FRAMES."""
    speaking = opens >= SPEECH_MIN
    spans, start, quiet = [], None, 0
    for k, talk in enumerate(speaking):
        if talk:
            start = k if start is None else start
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet >= _PAUSE_FRAMES:
                spans.append((start, k - quiet + 1))
                start, quiet = None, 0
    if start is not None:
        spans.append((start, len(speaking)))
    return spans


def measure(recording: Path, audio: Path, bundle_dir: Path, model_sidecar: Path) -> dict:
    bundle = load_bundle(bundle_dir)
    params = analyze_file(audio, AudioModel(model_sidecar, 1, False))
    change = rendered_change(recording, bundle)
    n = min(len(change), len(params))
    opens, change = params[:n, 0], change[:n]
    moving = params[:n].max(axis=1) >= SPEECH_MIN
    floor = float(np.median(change[~moving])) if (~moving).any() else 0.0
    rows = []
    for start, end in sentences(params[:n].max(axis=1)):
        peak = float(change[start:end].max())
        rows.append({"start_s": round(start / FPS, 2), "end_s": round(end / FPS, 2),
                     "r": _round(pearson(opens[start:end], change[start:end])),
                     "peak_change": round(peak, 2), "moved": peak - floor >= MOVED_LEVELS})
    return {"recording": str(recording), "frames": n, "speech_frames": int(moving.sum()),
            "noise_floor": round(floor, 2),
            "lip_sync_r": _round(pearson(opens[moving], change[moving])),
            "sentences": rows, "sentences_moved": sum(row["moved"] for row in rows),
            "_curves": (opens, change)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def plot(result: dict, audio: Path, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    samples, rate = read_wav(audio)
    wave = samples.mean(axis=1) if samples.ndim > 1 else samples
    opens, change = result["_curves"]
    t = np.arange(len(opens)) / FPS
    fig, axes = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
    axes[0].plot(np.arange(len(wave)) / rate, wave, lw=0.3, color="0.4")
    axes[0].set_ylabel("speech")
    axes[0].set_title(f"{Path(result['recording']).name}: r(open, rendered change) = "
                      f"{result['lip_sync_r']}, {result['sentences_moved']} of "
                      f"{len(result['sentences'])} sentences moved the mouth")
    scale = max(float(change.max()), 1e-6)
    axes[1].plot(t, opens, label="audio model open", color="tab:blue")
    axes[1].plot(t, change / scale, label=f"rendered mouth change / {scale:.1f} levels",
                 color="tab:red", alpha=0.8)
    for row in result["sentences"]:
        axes[1].axvspan(row["start_s"], row["end_s"], color="tab:green" if row["moved"]
                        else "tab:gray", alpha=0.08)
    axes[1].set_xlabel("s")
    axes[1].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.checks.lipsync_check", description=__doc__.split("\n")[0])
    p.add_argument("recording", type=Path, help="MP4 written by the record sink")
    p.add_argument("--audio", type=Path, required=True, help="the WAV the recording spoke")
    p.add_argument("--bundle", type=Path, default=REPO / "models" / "avatars" / "default")
    p.add_argument("--audio-model", type=Path, default=None, help="audio model sidecar")
    p.add_argument("--plot", type=Path, help="write the curves as PNG")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for path in (args.recording, args.audio):
        if not path.is_file():
            print(f"{path}: no such file", file=sys.stderr)
            return 2
    result = measure(args.recording, args.audio, args.bundle,
                     args.audio_model or default_audio_model())
    if args.plot:
        plot(result, args.audio, args.plot)
    result.pop("_curves")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['frames']} frames, {result['speech_frames']} speech frames; "
              f"r(open, rendered change) {result['lip_sync_r']}; sentences that moved the "
              f"mouth: {result['sentences_moved']} of {len(result['sentences'])}")
        for row in result["sentences"]:
            print(f"  {row['start_s']:6.2f}-{row['end_s']:6.2f} s  r {row['r']}  peak change "
                  f"{row['peak_change']} levels  {'moved' if row['moved'] else 'SHUT'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
