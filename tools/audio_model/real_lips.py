"""The audio model against real lips: a talking clip's own audio through the runtime, beside
the lip shape mediapipe measured on its frames (tools/faces/lips.py).

Per clip, over its speech frames (frame energy within 30 dB of the loud frames):
- r of `open` with the inner-lip gap, of `wide` with the mouth width and of `round` with
  minus the gap/width ratio, each at lag 0 and at the best lag within +-MAX_LAG frames
  (positive lag: the model is late);
- the bar any model must clear: the log energy of each 40 ms frame, smoothed over 3 frames,
  correlated with the lip gap the same way;
- how far the mouth opens: the share of speech frames with open >= 0.5 for the model and
  for the real lips (gap scaled to its own 2nd..98th percentile range), and the quartiles;
- closures inside speech: runs of speech frames where the real lips (scaled) fall below
  CLOSURE_REAL between speech frames that are open wider, and how many of them the model
  closes too (open below CLOSURE_MODEL within +-2 frames of the run, at its best lag);
- pauses (frames outside speech): how far each mouth is open there.
Pooled figures concatenate the clips' speech frames, each series z-scored per clip.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from runtime import SAMPLE_RATE
from runtime.speech.audio_model import AudioModel

from .evaluate import CLOSED, energy_speech, frame_db

MAX_LAG = 3
CLOSURE_REAL, CLOSURE_MODEL, CLOSURE_SLACK = 0.2, 0.15, 2
QUANTILES = (10, 25, 50, 75, 90)


def clip_audio(video: Path) -> np.ndarray:
    """The clip's own sound track as 16 kHz mono float32 (ffmpeg)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-ac", "1", "-ar", str(SAMPLE_RATE),
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32).copy()


def energy_baseline(audio: np.ndarray, frames: int) -> np.ndarray:
    return np.convolve(frame_db(audio, frames), np.ones(3) / 3, mode="same")


def aligned(model: np.ndarray, real: np.ndarray, mask: np.ndarray, lag: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """(model[k + lag], real[k]) over the frames k where both exist and mask[k]."""
    k = np.arange(max(0, -lag), min(len(real), len(model) - lag))
    k = k[mask[k]]
    return model[k + lag], real[k]


def lagged_r(model: np.ndarray, real: np.ndarray, mask: np.ndarray, lag: int) -> float:
    """r between model[k + lag] and real[k] over frames k where both exist and mask[k]."""
    a, b = aligned(model, real, mask, lag)
    if len(a) < 10 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def best_lag(model: np.ndarray, real: np.ndarray, mask: np.ndarray) -> tuple[int, float]:
    scores = {lag: lagged_r(model, real, mask, lag) for lag in range(-MAX_LAG, MAX_LAG + 1)}
    lag = max(scores, key=scores.get)
    return lag, round(scores[lag], 3)


def _scaled(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(values[mask], [2, 98])
    return np.clip((values - lo) / max(hi - lo, 1e-9), 0, 1)


def evaluate_clip(model: AudioModel, video: Path, lips_json: Path, run_model) -> dict:
    lips = json.loads(lips_json.read_text())
    rows = lips["rows"]
    found = np.array([row["found"] for row in rows])
    gap = np.array([row["gap"] if row["found"] else np.nan for row in rows], float)
    width = np.array([row["width"] if row["found"] else np.nan for row in rows], float)
    audio = clip_audio(video)
    params = run_model(model, audio)
    frames = len(rows)
    speech = energy_speech(audio, frames) & found
    energy = energy_baseline(audio, frames)
    real = {"open": np.nan_to_num(gap), "wide": np.nan_to_num(width),
            "round": -np.nan_to_num(gap / np.where(width > 0, width, np.nan))}
    result = {"clip": video.name, "frames": frames, "speech_frames": int(speech.sum()),
              "face_found": int(found.sum()), "r": {}}
    for index, name in ((0, "open"), (1, "wide"), (2, "round")):
        series = params[:, index]
        lag, r = best_lag(series, real[name], speech)
        result["r"][name] = {"lag0": round(lagged_r(series, real[name], speech, 0), 3),
                             "best": r, "best_lag": lag}
    lag, r = best_lag(energy, real["open"], speech)
    result["energy_baseline"] = {"lag0": round(lagged_r(energy, real["open"], speech, 0), 3),
                                 "best": r, "best_lag": lag}
    real_open = _scaled(real["open"], speech)
    model_open = params[:frames, 0]
    result["open_share"] = {"real": round(float((real_open[speech] >= 0.5).mean()), 3),
                            "model": round(float((model_open[speech] >= 0.5).mean()), 3)}
    result["quantiles"] = {"q": list(QUANTILES),
                           "real": [round(float(v), 3) for v in np.percentile(real_open[speech], QUANTILES)],
                           "model": [round(float(v), 3) for v in np.percentile(model_open[speech], QUANTILES)]}
    result["closures"] = closures_in_speech(model_open, real_open, speech, result["r"]["open"]["best_lag"])
    pause = ~speech & found
    result["pauses"] = {"frames": int(pause.sum()), "real_mean": None, "model_mean": None,
                        "model_closed": None}
    if pause.any():
        result["pauses"].update(real_mean=round(float(real_open[pause].mean()), 3),
                                model_mean=round(float(model_open[pause].mean()), 3),
                                model_closed=round(float((model_open[pause] < CLOSED).mean()), 3))
    result["series"] = {"model_open": model_open, "real_open": real_open,
                        "speech": speech, "audio": audio}
    return result


def closures_in_speech(model_open: np.ndarray, real_open: np.ndarray, speech: np.ndarray,
                       lag: int) -> dict:
    """Real lip closures inside speech (a run below CLOSURE_REAL with wider-open speech frames
    on both sides) and the share the model closes too, looking `lag` frames later."""
    low = speech & (real_open < CLOSURE_REAL)
    runs, start = [], None
    for k in range(len(low) + 1):
        if k < len(low) and low[k]:
            start = k if start is None else start
        elif start is not None:
            if start > 0 and k < len(low) and speech[start - 1] and speech[k]:
                runs.append((start, k))
            start = None
    closed = 0
    for a, b in runs:
        lo, hi = max(0, a + lag - CLOSURE_SLACK), min(len(model_open), b + lag + CLOSURE_SLACK)
        closed += bool(hi > lo and model_open[lo:hi].min() < CLOSURE_MODEL)
    return {"real": len(runs), "model_closed": closed}


def pooled(results: list[dict], model_lags: dict[str, int] | None = None) -> dict:
    """r(open, gap) and the energy baseline over all clips' speech frames, each series
    z-scored per clip, at the lag (within +-MAX_LAG) that is best for the pool."""
    def pool(key: str, lag: int) -> float:
        a_all, b_all = [], []
        for res in results:
            s = res["series"]
            model = s["model_open"] if key == "model" else energy_baseline(s["audio"], len(s["speech"]))
            a, b = aligned(model, s["real_open"], s["speech"], lag)
            a_all.append((a - a.mean()) / (a.std() + 1e-9))
            b_all.append((b - b.mean()) / (b.std() + 1e-9))
        a, b = np.concatenate(a_all), np.concatenate(b_all)
        return float(np.corrcoef(a, b)[0, 1])
    out = {}
    for key in ("model", "energy"):
        scores = {lag: pool(key, lag) for lag in range(-MAX_LAG, MAX_LAG + 1)}
        lag = max(scores, key=scores.get)
        out[key] = {"lag0": round(scores[0], 3), "best": round(scores[lag], 3), "best_lag": lag}
    return out


def main(argv=None) -> int:
    """python -m tools.audio_model.real_lips [--external DIR] [--lips DIR] [--audio-model YAML]"""
    import argparse
    import sys

    from .evaluate import EXTERNAL, REPO, run_model
    parser = argparse.ArgumentParser(prog="python -m tools.audio_model.real_lips", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--external", type=Path, default=EXTERNAL, help="folder of talk_*.mp4 clips")
    parser.add_argument("--lips", type=Path, default=Path.home() / ".cache" / "edgemate" / "lips",
                        help="folder of NAME.lips.json from tools.faces.lips (one per clip)")
    parser.add_argument("--audio-model", type=Path, default=REPO / "models" / "audio" / "audio.yaml")
    args = parser.parse_args(argv)
    clips = sorted(args.external.glob("talk_*.mp4"))
    if not clips:
        print(f"real_lips: no talk_*.mp4 in {args.external}", file=sys.stderr)
        return 1
    model = AudioModel(args.audio_model)
    results = []
    for clip in clips:
        name = clip.stem.split("_")[1]
        lips = args.lips / f"talk_{name}.lips.json"
        if not lips.is_file():
            print(f"real_lips: {lips} missing; measure it with mediapipe 0.10.14:\n"
                  f"  python -m tools.faces.lips {clip} --out {lips}", file=sys.stderr)
            return 1
        results.append(evaluate_clip(model, clip, lips, run_model))
    print("| clip | speech frames | r(open, gap) lag 0 / best (lag) | energy baseline lag 0 / best (lag) "
          "| r(wide, width) best (lag) | r(round, -gap/width) best (lag) | open >= 0.5: real / model |")
    print("|---|---|---|---|---|---|---|")
    for res in results:
        r, e = res["r"], res["energy_baseline"]
        print(f"| {res['clip'].split('_')[1]} | {res['speech_frames']} | {r['open']['lag0']} / "
              f"{r['open']['best']} ({r['open']['best_lag']:+d}) | {e['lag0']} / {e['best']} "
              f"({e['best_lag']:+d}) | {r['wide']['best']} ({r['wide']['best_lag']:+d}) | "
              f"{r['round']['best']} ({r['round']['best_lag']:+d}) | "
              f"{res['open_share']['real']:.0%} / {res['open_share']['model']:.0%} |")
    pool = pooled(results)
    print(f"| pooled | {sum(res['speech_frames'] for res in results)} | {pool['model']['lag0']} / "
          f"{pool['model']['best']} ({pool['model']['best_lag']:+d}) | {pool['energy']['lag0']} / "
          f"{pool['energy']['best']} ({pool['energy']['best_lag']:+d}) | | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
