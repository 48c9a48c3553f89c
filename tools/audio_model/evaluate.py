"""Evaluate the shipped audio model through the runtime (ncnn) and write models/audio/EVAL.md.

    python -m tools.audio_model.evaluate [--audio-model models/audio/audio.yaml] [--corpus /work/cache/corpus]

Everything runs through `runtime.commands.mouth.analyze_samples`: the runtime's resampler, fbank,
ncnn model and MouthAnalyzer, exactly what `edgemate mouth` and the appliance compute.
- Held-out voices (the corpus' test split: voices and sentences never in training), padded
  with 0.5 s of silence before and 1.0 s after: Pearson r per parameter against the targets,
  silence closure (frames at least 120 ms into a silence with open < 0.05) and onset delay
  (frames between the target's open rising past 0.15 and the prediction's).
- Robustness: the same set at 10 dB SNR (white noise), through a telephone band and at
  0.8x / 1.2x speed; the drop of r(open) against the clean set.
- Real recordings (../shared/data/external/speech_*_16k.wav, never copied here): a PNG per
  file (waveform + six parameters) and the share of frames closed in silence and moving in
  speech, silence and speech told apart by frame energy.
Writes EVAL.md and EVAL.json (+ PNGs) next to the model's sidecar.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from runtime import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.audio.wav import read_wav
from runtime.commands.mouth import analyze_samples
from runtime.speech.audio_model import MOUTH_PARAMS, AudioModel

from .augment import add_noise, change_speed, pad_silence, telephone
from .synth_corpus import is_natural, load_corpus
from .visemes import LEAD_S, Segment, frame_targets, speech_mask

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
EXTERNAL = REPO.parent / "shared" / "data" / "external"
CONDITIONS = ("clean", "snr10", "telephone", "speed0.8", "speed1.2")
GOALS = {"r_open": 0.85, "r_mean": 0.65, "silence_closure": 0.98, "onset_delay_frames": 1.0,
         "robust_drop": 0.1}
CLOSED, RISE, SETTLE_FRAMES = 0.05, 0.15, 3  # 3 frames = 120 ms into a silence


def condition(audio, segments, name: str, rng: np.random.Generator):
    if name == "snr10":
        audio = add_noise(audio, 10.0, rng, "white")
    elif name == "telephone":
        audio = telephone(audio)
    elif name.startswith("speed"):
        audio, segments = change_speed(audio, segments, float(name[5:]))
    return audio, segments


def run_model(model: AudioModel, audio: np.ndarray) -> np.ndarray:
    chunk = SAMPLE_RATE // 50
    return analyze_samples((audio[i:i + chunk, None] for i in range(0, len(audio), chunk)),
                           SAMPLE_RATE, 1, model)


def settled_silence(speech: np.ndarray) -> np.ndarray:
    """Frames at least 120 ms into a run of non-speech frames (the issue's definition)."""
    out = np.zeros(len(speech), bool)
    run = 0
    for k, is_speech in enumerate(speech):
        run = 0 if is_speech else run + 1
        out[k] = run > SETTLE_FRAMES
    return out


def first_above(values: np.ndarray, level: float) -> int | None:
    hits = np.flatnonzero(values >= level)
    return int(hits[0]) if hits.size else None


def evaluate_set(model: AudioModel, corpus: Path, metas: Sequence[dict], name: str) -> dict:
    preds, targets, closed, delays, sources = [], [], [], [], []
    closed_no_lead, target_closed, delays_from_speech = [], [], []
    for n, meta in enumerate(metas):
        samples, _ = read_wav(corpus / "wav" / f"{meta['id']}.wav")
        rng = np.random.default_rng([7, n])
        audio, segments = condition(samples[:, 0].copy(), meta["segments"], name, rng)
        audio, segments = pad_silence(audio, segments, 0.5, 1.0)
        segs = [Segment(*s) for s in segments]
        pred = run_model(model, audio)
        target = frame_targets(segs, meta["table"], len(audio) / SAMPLE_RATE)[: len(pred)]
        speech = speech_mask(segs, meta["table"], len(pred))
        preds.append(pred)
        targets.append(target)
        # engine-language:voice (espeak-en:f2, festival-en:kal_diphone, flite-en:rms)
        tag = f"{meta['engine']}-{meta['table'].split('-')[1]}:{meta['voice'].split('+')[-1]}"
        sources.append(np.full(len(pred), tag))
        settled = settled_silence(speech)
        closed.append(pred[settled, 0] < CLOSED)
        # The same without the frame just before speech resumes, where the targets (and real
        # mouths) already open for the coming sound (tools.audio_model.visemes.LEAD_S).
        before_speech = np.zeros(len(speech), bool)
        before_speech[:-1] = speech[1:] & ~speech[:-1]
        closed_no_lead.append(pred[settled & ~before_speech, 0] < CLOSED)
        target_closed.append(target[settled, 0] < CLOSED)
        t_rise, p_rise = first_above(target[:, 0], RISE), first_above(pred[:, 0], RISE)
        if t_rise is not None and p_rise is not None:
            delays.append(p_rise - t_rise)
            speech_start = int(np.flatnonzero(speech)[0]) if speech.any() else p_rise
            delays_from_speech.append(p_rise - speech_start)
    pred, target, source = np.concatenate(preds), np.concatenate(targets), np.concatenate(sources)
    r = {p: _pearson(pred[:, i], target[:, i]) for i, p in enumerate(MOUTH_PARAMS)}
    by_source = {}
    for tag in sorted(set(source.tolist())):
        pick = source == tag
        by_source[tag] = _pearson(pred[pick, 0], target[pick, 0])
    delays_a = np.array(delays)
    return {"utterances": len(metas), "frames": int(len(pred)), "r": r,
            "r_mean": round(float(np.mean(list(r.values()))), 4),
            "silence_closure": round(float(np.concatenate(closed).mean()), 4),
            "silence_closure_without_anticipation": round(float(np.concatenate(closed_no_lead).mean()), 4),
            "silence_closure_of_targets": round(float(np.concatenate(target_closed).mean()), 4),
            "onset_delay_frames": {"median": float(np.median(delays_a)),
                                   "mean": round(float(delays_a.mean()), 3),
                                   "share_within_1": round(float(np.mean(np.abs(delays_a) <= 1)), 4),
                                   "median_from_first_phoneme": float(np.median(delays_from_speech))},
            "r_open_by_voice": by_source}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return round(float(np.corrcoef(a, b)[0, 1]), 4)


def frame_db(audio: np.ndarray, frames: int) -> np.ndarray:
    """Energy of each 40 ms video frame, dB (the audio zero-padded or cut to `frames`)."""
    n = frames * SAMPLES_PER_FRAME
    padded = np.pad(audio, (0, max(0, n - len(audio))))[:n]
    return 10 * np.log10(np.mean(padded.reshape(frames, -1) ** 2, axis=1) + 1e-10)


def energy_speech(audio: np.ndarray, frames: int) -> np.ndarray:
    """Speech frames of a real recording: energy within 30 dB of the loud frames, 40 ms hangover."""
    db = frame_db(audio, frames)
    active = db > np.percentile(db, 95) - 30
    held = active.copy()
    held[1:] |= active[:-1]
    held[:-1] |= active[1:]
    return held


def evaluate_recording(model: AudioModel, path: Path, png: Path) -> dict:
    samples, rate = read_wav(path)
    params = analyze_samples([samples], rate, samples.shape[1], model)
    mono = samples.mean(axis=1)
    audio16 = mono if rate == SAMPLE_RATE else np.interp(
        np.arange(int(len(mono) * SAMPLE_RATE / rate)) * rate / SAMPLE_RATE, np.arange(len(mono)), mono)
    speech = energy_speech(audio16, len(params))
    silent = settled_silence(speech)
    moving = params.max(axis=1) >= 0.1
    result = {"file": path.name, "seconds": round(len(mono) / rate, 2), "frames": len(params),
              "speech_frames": int(speech.sum()), "settled_silence_frames": int(silent.sum()),
              "silence_frames": int((~speech).sum()),
              "closed_in_silence": round(float((params[silent, 0] < CLOSED).mean()), 4) if silent.any() else None,
              "closed_in_any_silence": round(float((params[~speech, 0] < CLOSED).mean()), 4) if (~speech).any() else None,
              "moving_in_speech": round(float(moving[speech].mean()), 4) if speech.any() else None,
              "open_mean_in_speech": round(float(params[speech, 0].mean()), 4) if speech.any() else None,
              "png": png.name}
    plot_recording(mono, rate, params, speech, png, path.name)
    return result


def plot_recording(mono, rate, params, speech, png: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(7, 1, figsize=(14, 11), sharex=True)
    t_audio = np.arange(len(mono)) / rate
    axes[0].plot(t_audio, mono, lw=0.3, color="black")
    t_frames = (np.arange(len(params)) + 0.5) / FPS
    axes[0].fill_between(t_frames, -1, 1, where=speech, color="tab:green", alpha=0.12, step="mid",
                         label="speech (energy)")
    axes[0].set_ylim(-1.05 * np.max(np.abs(mono)) - 1e-3, 1.05 * np.max(np.abs(mono)) + 1e-3)
    axes[0].set_ylabel("audio")
    axes[0].legend(loc="upper right")
    axes[0].set_title(f"{title}: edgemate mouth (shipped audio model)")
    for i, name in enumerate(MOUTH_PARAMS):
        axes[i + 1].plot(t_frames, params[:, i], lw=1.0, color=f"C{i}")
        axes[i + 1].set_ylim(-0.02, 1.02)
        axes[i + 1].set_ylabel(name)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


def _mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def write_report(result: dict, out_dir: Path, extra: Sequence[str] = ()) -> None:
    """EVAL.json and EVAL.md; `extra`: more markdown lines (tools.audio_model.eval_real)."""
    (out_dir / "EVAL.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    clean, net = result["held_out"]["clean"], result["network"]
    od = clean["onset_delay_frames"]
    lines = ["# Audio model evaluation", "",
             f"Model `{result['model']}` (bin sha256 {result['bin_sha256'][:16]}...): {net['layers']}; "
             f"{net['parameters']} parameters, {net['macs_per_step']} multiply-adds per 40 ms frame, "
             f"look-ahead {result['lookahead_ms']:g} ms; trained {result['train_minutes']:.1f} min on "
             "the CPU. Run through the runtime (ncnn via `runtime.commands.mouth.analyze_samples`: the "
             "runtime's resampler, fbank, model and MouthAnalyzer). Written by "
             "`python -m tools.audio_model.evaluate`; all numbers also in EVAL.json.", "",
             f"## Held-out voices ({clean['utterances']} utterances, {clean['frames']} frames)", "",
             "Voices never heard in training (espeak-ng variants "
             f"{', '.join(result['test_voices']['espeak_variants'])}; festival "
             f"{', '.join(result['test_voices']['festival'])}), sentences never said in training, "
             "0.5 s of silence before and 1 s after each utterance.", "",
             "| parameter | Pearson r |", "|---|---|"]
    lines += [f"| {p} | {v:.3f} |" for p, v in clean["r"].items()]
    lines += ["", "| figure | value | goal | |", "|---|---|---|---|",
              f"| r(open) | {clean['r']['open']:.3f} | >= 0.85 | {_mark(clean['r']['open'] >= GOALS['r_open'])} |",
              f"| mean r of the six | {clean['r_mean']:.3f} | >= 0.65 | {_mark(clean['r_mean'] >= GOALS['r_mean'])} |",
              f"| silence closure: frames >= 120 ms into a silence with open < 0.05 | "
              f"{clean['silence_closure']:.4f} | >= 0.98 | "
              f"{_mark(clean['silence_closure'] >= GOALS['silence_closure'])} |",
              f"| onset delay (prediction's open rising past {RISE} minus the target's), frames | "
              f"median {od['median']:+.0f}, mean {od['mean']:+.2f}; {od['share_within_1'] * 100:.0f}% "
              f"within +-1; from the first phoneme's frame: median {od['median_from_first_phoneme']:+.0f} "
              f"| <= 1 | {_mark(od['median'] <= GOALS['onset_delay_frames'])} |",
              "", "Silence closure in detail: the targets themselves score "
              f"{clean['silence_closure_of_targets']:.4f} on the same frames (the mouth starts "
              f"forming a sound {LEAD_S * 1000:.0f} ms before it is heard, tools/audio_model/visemes.py LEAD_S, "
              "so the frame just before speech resumes may already be open). Leaving that one "
              f"frame out, the model scores {clean['silence_closure_without_anticipation']:.4f}.", "",
              "r(open) per held-out voice: " + ", ".join(
                  f"{k} {v:.3f}" for k, v in clean["r_open_by_voice"].items()), ""]
    natural = result.get("held_out_natural")
    if natural:
        lines += [f"A held-out voice built from a real speaker's recordings (flite "
                  f"{', '.join(v.split(':')[1] for v in result['test_voices'].get('natural', []))}; "
                  f"{natural['utterances']} utterances): r(open) {natural['r']['open']:.3f}, mean r "
                  f"{natural['r_mean']:.3f}, silence closure {natural['silence_closure']:.4f}.", ""]
    lines += ["## Robustness (same held-out set)", "",
              "| condition | r(open) | drop | mean r | silence closure | goal: drop <= 0.1 |",
              "|---|---|---|---|---|---|"]
    for name in CONDITIONS:
        res = result["held_out"][name]
        drop = clean["r"]["open"] - res["r"]["open"]
        lines.append(f"| {name} | {res['r']['open']:.3f} | {drop:+.3f} | {res['r_mean']:.3f} | "
                     f"{res['silence_closure']:.4f} | {_mark(drop <= GOALS['robust_drop'])} |")
    lines += ["", "snr10: white noise 10 dB below the speech; telephone: 300-3400 Hz through 8 kHz; "
              "speed: resampled 0.8x / 1.2x (pitch moves too).", "", "## Real recordings", "",
              "../shared/data/external (not in the repository). Speech and silence told apart by "
              "frame energy (within 30 dB of the loud frames, 40 ms hangover); settled silence = "
              "at least 120 ms into a silence; moving = some parameter >= 0.1.", "",
              "| file | seconds | speech frames | silence frames (settled) | closed in settled silence "
              "| closed in any silence | moving in speech | mean open in speech |",
              "|---|---|---|---|---|---|---|---|"]
    for rec in result["recordings"]:
        lines.append(f"| {rec['file']} | {rec['seconds']} | {rec['speech_frames']} | "
                     f"{rec['silence_frames']} ({rec['settled_silence_frames']}) | "
                     f"{rec['closed_in_silence']} | {rec['closed_in_any_silence']} | "
                     f"{rec['moving_in_speech']} | {rec['open_mean_in_speech']} |")
    if not result["recordings"]:
        lines.append("| (../shared/data/external not present: skipped) | | | | | | | |")
    lines += [""] + [f"![{rec['file']}]({rec['png']})" for rec in result["recordings"]]
    lines += ["", *extra]
    (out_dir / "EVAL.md").write_text("\n".join(lines) + "\n")


def _held_out_speech(corpus: Path, metas: Sequence[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(audio with 0.5 s / 1 s of silence around it, per-frame targets) of held-out utterances."""
    out = []
    for meta in metas:
        samples, _ = read_wav(corpus / "wav" / f"{meta['id']}.wav")
        audio, segments = pad_silence(samples[:, 0].copy(), meta["segments"], 0.5, 1.0)
        segs = [Segment(*s) for s in segments]
        out.append((audio, frame_targets(segs, meta["table"], len(audio) / SAMPLE_RATE)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.audio_model.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio-model", type=Path, default=REPO / "models" / "audio" / "audio.yaml")
    parser.add_argument("--corpus", type=Path, default=Path("/work/cache/corpus"))
    parser.add_argument("--external", type=Path, default=EXTERNAL)
    parser.add_argument("--limit", type=int, help="use only the first N held-out utterances")
    parser.add_argument("--lips", type=Path, default=Path.home() / ".cache" / "edgemate" / "lips",
                        help="folder of talk_*.lips.json (tools.faces.lips) for the real-lip section")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tqdm import tqdm
    import yaml

    model = AudioModel(args.audio_model)
    sidecar = yaml.safe_load(args.audio_model.read_text())
    tests = load_corpus(args.corpus, "test")
    # The first part's voices (the figures every earlier model was measured on) and, apart,
    # the natural voices never heard in training (flite rms).
    metas = [m for m in tests if not is_natural(m)][: args.limit]
    natural = [m for m in tests if is_natural(m)][: args.limit]
    result = {"model": args.audio_model.name, "bin_sha256": model.sidecar.bin_sha256,
              "test_voices": sidecar["recipe"]["test_voices"], "goals": GOALS, "held_out": {},
              "network": sidecar["network"], "lookahead_ms": sidecar["audio"]["lookahead_ms"],
              "train_minutes": sidecar.get("training", {}).get("train_seconds", 0) / 60,
              "recordings": []}
    for name in tqdm(CONDITIONS, desc="conditions"):
        result["held_out"][name] = evaluate_set(model, args.corpus, metas, name)
        log.info("%s: r(open) %.3f", name, result["held_out"][name]["r"]["open"])
    if natural:
        result["held_out_natural"] = evaluate_set(model, args.corpus, natural, "clean")
    out_dir = args.audio_model.parent
    for wav in ("speech_a_16k.wav", "speech_b_16k.wav"):
        if (args.external / wav).exists():
            result["recordings"].append(evaluate_recording(
                # Named by letter: the external files' own names never appear in the repo.
                model, args.external / wav, out_dir / f"EVAL_real_{wav.split('_')[1]}.png"))
    from .eval_real import real_lip_section, room_noise_section
    lip_lines, result["real_lips"] = real_lip_section(model, args.external, args.lips, out_dir, run_model)
    noise_lines, result["room_noise"] = room_noise_section(model, run_model,
                                                           utterances=_held_out_speech(args.corpus, metas[:60]))
    write_report(result, out_dir, extra=lip_lines + noise_lines)
    print(f"wrote {out_dir / 'EVAL.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
