"""How far `open` reaches: the audio model's open curve, calibrated on one real talking clip.

On its own training speech the network opens as far as its targets do (21.7% of speech
frames at open >= 0.5, targets 23.3%), but the targets open less than real lips: a person's
inner-lip gap, scaled to its own 2nd-98th percentile range, is at >= 0.5 in 32-42% of their
speech frames, the network's open in 10-21% (issue 14). So the runtime stretches `open`
above a knee (runtime/speech/audio_model.py, `audio.open_curve`; below the knee nothing
changes, so a shut mouth stays shut and the silence figures stay as they are) by the gain
that gives one clip's speech frames the real lips' share. The other clips are the check, and
the report says which clip was used.

    python -m tools.audio_model.calibrate --on a [--write]

Clips are named by letter in sorted order of ../shared/data/external/talk_*.mp4 (as in
models/audio/EVAL.md); their lip measurements come from tools.faces.lips. `--write` records
the curve in the sidecar's `audio.open_curve` and its recipe (so `train --rebuild` keeps it).
"""
from __future__ import annotations

import argparse
import string
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from runtime.speech.audio_model import OPEN_GAIN_RANGE, AudioModel, stretch_open

#: `open` at or below this is left alone (the silence figures count open < 0.05 as shut).
KNEE = 0.05


def stretched(params: np.ndarray, knee: float, gain: float) -> np.ndarray:
    """(frames, 6) params with the runtime's open curve applied to `open`."""
    out = params.copy()
    out[:, 0] = stretch_open(out[:, 0], knee, gain)
    return out


def fit_gain(raw_open: np.ndarray, speech: np.ndarray, real_share: float, knee: float = KNEE) -> float:
    """The smallest gain (to 0.001) that gives the speech frames `real_share` at open >= 0.5."""
    low, high = OPEN_GAIN_RANGE

    def share(gain: float) -> float:
        return float((stretch_open(raw_open[speech], knee, gain) >= 0.5).mean())

    if share(high) < real_share:
        return high
    while high - low > 1e-3:
        mid = (low + high) / 2
        low, high = (mid, high) if share(mid) < real_share else (low, mid)
    return round(high, 3)


def write_curve(sidecar: Path, curve: dict) -> None:
    """audio.open_curve and recipe.open_curve of the sidecar (comments at its top kept)."""
    text = sidecar.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    doc = yaml.safe_load(text)
    doc["audio"]["open_curve"] = {"knee": curve["knee"], "gain": curve["gain"]}
    doc.setdefault("recipe", {})["open_curve"] = curve
    sidecar.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def main(argv: Sequence[str] | None = None) -> int:
    from .evaluate import EXTERNAL, REPO, run_model
    from .real_lips import evaluate_clip, pooled
    parser = argparse.ArgumentParser(prog="python -m tools.audio_model.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--on", required=True, help="the clip (letter) to calibrate on")
    parser.add_argument("--external", type=Path, default=EXTERNAL)
    parser.add_argument("--lips", type=Path, default=Path.home() / ".cache" / "edgemate" / "lips")
    parser.add_argument("--audio-model", type=Path, default=REPO / "models" / "audio" / "audio.yaml")
    parser.add_argument("--write", action="store_true", help="record the curve in the sidecar")
    args = parser.parse_args(argv)
    clips = sorted(args.external.glob("talk_*.mp4"))
    letters = dict(zip(string.ascii_lowercase, clips))
    if args.on not in letters:
        print(f"calibrate: no clip {args.on!r}: {len(clips)} talk_*.mp4 in {args.external} "
              f"({', '.join(letters) or 'none'})", file=sys.stderr)
        return 1
    lips = {c: args.lips / f"talk_{c.stem.split('_')[1]}.lips.json" for c in clips}
    missing = [str(path) for path in lips.values() if not path.is_file()]
    if missing:
        print(f"calibrate: no lip measurement {missing[0]} (python -m tools.faces.lips CLIP "
              f"--out {missing[0]})", file=sys.stderr)
        return 1
    model = AudioModel(args.audio_model, open_curve=False)
    said: dict[int, np.ndarray] = {}  # the network's params per clip's audio, run once

    def run_once(m, audio: np.ndarray) -> np.ndarray:
        key = hash(audio.tobytes())
        if key not in said:
            said[key] = run_model(m, audio)
        return said[key]

    raw = {c: evaluate_clip(model, c, lips[c], run_once) for c in clips}
    series = raw[letters[args.on]]["series"]
    real_share = raw[letters[args.on]]["open_share"]["real"]
    gain = fit_gain(series["model_open"], series["speech"], real_share)
    with_curve = {c: evaluate_clip(model, c, lips[c], lambda m, a: stretched(run_once(m, a), KNEE, gain))
                  for c in clips}
    print(f"calibrated on clip {args.on}: knee {KNEE}, gain {gain} (its real share {real_share:.0%})")
    print("| clip | open >= 0.5: real / network / with the curve | median open in speech: network / "
          "with the curve | r(open, gap) best |")
    print("|---|---|---|---|")
    for letter, clip in letters.items():
        a, b = raw[clip], with_curve[clip]
        role = " (calibration)" if letter == args.on else " (check)"
        print(f"| {letter}{role} | {a['open_share']['real']:.0%} / {a['open_share']['model']:.0%} / "
              f"{b['open_share']['model']:.0%} | {np.median(a['series']['model_open'][a['series']['speech']]):.2f}"
              f" / {np.median(b['series']['model_open'][b['series']['speech']]):.2f} | "
              f"{a['r']['open']['best']} / {b['r']['open']['best']} |")
    print(f"pooled r(open, gap) best: {pooled(list(raw.values()))['model']['best']} -> "
          f"{pooled(list(with_curve.values()))['model']['best']}")
    if args.write:
        write_curve(args.audio_model, {
            "knee": KNEE, "gain": gain, "clip": args.on, "calibrated_on": f"real talking clip {args.on} "
            "(../shared/data/external, not in the repository)",
            "command": f"python -m tools.audio_model.calibrate --on {args.on} --write"})
        print(f"written: {args.audio_model} audio.open_curve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
