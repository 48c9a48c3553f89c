"""The sections of models/audio/EVAL.md that judge the model by what it was not trained on.

- Against real lips: tools.audio_model.real_lips on each talking clip in ../shared/data/external
  (its face-mesh lip measurement cached as NAME.lips.json), with a plot per clip of the real
  inner-lip gap and the model's `open` over the clip's waveform.
- Room noise: tools.audio_model.room_noise, the share of frames the mouth stays shut in.

Each returns (markdown lines, JSON-ready dict); a section whose inputs are absent says so in
one line instead of a table. Clips are named by letter in the repository (talk_a.png, ...):
the external files' own names and pixels never go in.
"""
from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from runtime import FPS, SAMPLE_RATE


def real_lip_section(model, external: Path, lips_dir: Path, out_dir: Path, run_model) -> tuple[list[str], dict]:
    from .real_lips import evaluate_clip, pooled
    clips = sorted(external.glob("talk_*.mp4"))
    measured = {clip: lips_dir / f"talk_{clip.stem.split('_')[1]}.lips.json" for clip in clips}
    missing = [clip for clip, lips in measured.items() if not lips.is_file()]
    lines = ["## Against real lips", ""]
    if not clips or missing:
        why = (f"no talk_*.mp4 in {external}" if not clips else
               f"no lip measurement for {', '.join(c.name for c in missing)} in {lips_dir} "
               f"(python -m tools.faces.lips CLIP --out {lips_dir}/talk_NAME.lips.json)")
        return lines + [f"Skipped: {why}.", ""], {"skipped": why}
    results = [evaluate_clip(model, clip, measured[clip], run_model) for clip in clips]
    letters = string.ascii_lowercase
    lines += ["Each clip's own audio through the model, against the inner-lip gap (landmarks 13-14 "
              "over the eye-corner distance) that a face mesh (mediapipe 0.10.14, tools.faces.lips) "
              "measured on its frames; speech frames only. Energy baseline: log energy per 40 ms "
              "frame, smoothed over 3 frames. Lag > 0: the model is late. `open >= 0.5`: share of "
              "speech frames, the real gap scaled to its own 2nd-98th percentile range.", "",
              "| clip | speech frames | r(open, gap) lag 0 / best (lag) | energy baseline best (lag) "
              "| r(wide, width) best (lag) | r(round, -gap/width) best (lag) | open >= 0.5 real / model |",
              "|---|---|---|---|---|---|---|"]
    doc: dict = {"clips": []}
    for letter, res in zip(letters, results):
        r, e = res["r"], res["energy_baseline"]
        lines.append(f"| {letter} | {res['speech_frames']} | {r['open']['lag0']} / {r['open']['best']} "
                     f"({r['open']['best_lag']:+d}) | {e['best']} ({e['best_lag']:+d}) | "
                     f"{r['wide']['best']} ({r['wide']['best_lag']:+d}) | {r['round']['best']} "
                     f"({r['round']['best_lag']:+d}) | {res['open_share']['real']:.0%} / "
                     f"{res['open_share']['model']:.0%} |")
        png = out_dir / f"EVAL_lips_{letter}.png"
        _plot(res["series"], png, f"talking clip {letter}")
        doc["clips"].append({"clip": letter, **{k: res[k] for k in
                             ("speech_frames", "r", "energy_baseline", "open_share", "quantiles",
                              "closures", "pauses")},
                             "png": png.name})
    pool = pooled(results)
    lines.append(f"| pooled | {sum(res['speech_frames'] for res in results)} | "
                 f"{pool['model']['lag0']} / {pool['model']['best']} ({pool['model']['best_lag']:+d}) | "
                 f"{pool['energy']['best']} ({pool['energy']['best_lag']:+d}) | | | |")
    lines += ["", "How far each mouth opens in speech (quantiles; the real gap scaled as above), "
              "closures inside speech (the real lips below 0.2 of their range between wider speech "
              "frames; the model counts when its open falls below 0.15 within 2 frames, at its best "
              "lag) and pauses (frames outside speech):", "",
              "| clip | real open q10/25/50/75/90 | model open q10/25/50/75/90 | closures real / "
              "model closes | pause frames | mean open in pauses real / model | model closed in pauses |",
              "|---|---|---|---|---|---|---|"]
    for letter, res in zip(letters, results):
        q, c, pz = res["quantiles"], res["closures"], res["pauses"]
        fmt = "/".join
        lines.append(f"| {letter} | {fmt(f'{v:.2f}' for v in q['real'])} | "
                     f"{fmt(f'{v:.2f}' for v in q['model'])} | {c['real']} / {c['model_closed']} | "
                     f"{pz['frames']} | "
                     + (f"{pz['real_mean']:.2f} / {pz['model_mean']:.2f} | {pz['model_closed']:.0%} |"
                        if pz["frames"] else "- | - |"))
    share_real = float(np.mean([res["open_share"]["real"] for res in results]))
    share_model = float(np.mean([res["open_share"]["model"] for res in results]))
    ok_r = pool["model"]["best"] >= 0.6 and abs(pool["model"]["best_lag"]) <= 2
    ok_margin = pool["model"]["best"] - pool["energy"]["best"] >= 0.2
    ok_share = share_model > 0 and 1 / 1.5 <= share_model / share_real <= 1.5
    lines += ["", f"Goals (issue 14): pooled best r >= 0.6 within +-2 frames: "
                  f"{'PASS' if ok_r else 'FAIL'}; at least 0.2 above the energy baseline: "
                  f"{'PASS' if ok_margin else 'FAIL'}; open >= 0.5 share within 1.5x of the real "
                  f"lips' ({share_model:.0%} vs {share_real:.0%}): {'PASS' if ok_share else 'FAIL'}.",
              ""] + _curve_note(model, letters, results)
    lines += [f"![talking clip {c['clip']}]({c['png']})" for c in doc["clips"]] + [""]
    doc["pooled"] = pool
    doc["goals"] = {"r": bool(ok_r), "margin": bool(ok_margin), "open_share": bool(ok_share)}
    return lines, doc


def _curve_note(model, letters, results) -> list[str]:
    """Where the sidecar's open curve came from: a clip it was calibrated on is no evidence."""
    audio = model.sidecar.extra.get("audio") or {}
    curve = audio.get("open_curve")
    if not curve:
        return ["No open curve: the network's own `open`.", ""]
    made = (model.sidecar.extra.get("recipe") or {}).get("open_curve") or {}
    on = str(made.get("calibrated_on", "not recorded"))
    checks = [f"{letter}: {res['open_share']['model']:.0%} vs {res['open_share']['real']:.0%}"
              for letter, res in zip(letters, results) if letter != made.get("clip")]
    return [f"`open` above {curve['knee']} stretched by {curve['gain']} (`audio.open_curve`), "
            f"calibrated on {on}: its share is fitted, not measured. Held out from the "
            f"calibration: {'; '.join(checks) or 'none'}.", ""]


def _level_table(by_kind: dict, levels, cell: str) -> list[str]:
    """A noise-kind x level table; `cell` formats one value."""
    lines = ["| noise | " + " | ".join(f"{level} dB below" for level in levels) + " |",
             "|---|" + "---|" * len(levels)]
    for kind, row in by_kind.items():
        lines.append(f"| {kind.replace('_', ' ')} | " + " | ".join(format(row[level], cell) for level in levels) + " |")
    return lines


def room_noise_section(model, run_model, seconds: float = 8.0,
                       utterances=()) -> tuple[list[str], dict]:
    """`utterances`: held-out [(audio, targets)] for speech mixed into the noise (optional)."""
    from .room_noise import CLOSED, LEVELS_DB, SPEECH_RMS_DBFS, closure_table, speech_in_noise
    result = closure_table(model, run_model, seconds)
    lines = ["## Room noise", "",
             f"tools/audio_model/room_noise.py: eight kinds a kiosk microphone hears, {seconds:g} s "
             f"each, at each level below speech at {SPEECH_RMS_DBFS:g} dBFS RMS (built apart from the "
             f"training noise). Share of frames with open < {CLOSED}:", "",
             *_level_table(result["by_kind"], LEVELS_DB, ".0%")]
    passed = result["pooled"] >= 0.98
    lines += ["", f"Closed in {result['pooled']:.1%} of all noise frames (goal >= 98%: "
                  f"{'PASS' if passed else 'FAIL'}).", ""]
    doc = {**result, "by_kind": {k: {str(lvl): v for lvl, v in row.items()}
                                 for k, row in result["by_kind"].items()}}
    if utterances:
        mixed = speech_in_noise(model, run_model, utterances)
        lines += [f"Speech in the same noises: {mixed['utterances']} held-out utterances, the "
                  f"speech at {SPEECH_RMS_DBFS:g} dBFS, r(open) against the targets (clean: "
                  f"{mixed['clean']}):", "", *_level_table(mixed["by_kind"], LEVELS_DB, ".3f")]
        lines += ["", f"Largest drop {mixed['max_drop']:.3f} (goal <= 0.1: "
                      f"{'PASS' if mixed['max_drop'] <= 0.1 else 'FAIL'}).", ""]
        doc["speech_in_noise"] = {**mixed, "by_kind": {k: {str(lvl): v for lvl, v in row.items()}
                                                       for k, row in mixed["by_kind"].items()}}
    return lines, doc


def _plot(series: dict, png: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    audio, speech = series["audio"], series["speech"]
    frames = len(speech)
    t = np.arange(frames) / FPS
    fig, ax = plt.subplots(figsize=(10, 3.2))
    wave_t = np.arange(len(audio)) / SAMPLE_RATE
    peak = np.abs(audio).max() + 1e-9
    ax.fill_between(wave_t, -0.5 * np.abs(audio) / peak - 0.6, 0.5 * np.abs(audio) / peak - 0.6,
                    color="0.8", lw=0, label="waveform")
    ax.plot(t, series["real_open"][:frames], color="tab:red", lw=1.4, label="real inner-lip gap (scaled)")
    ax.plot(t, series["model_open"][:frames], color="tab:blue", lw=1.4, label="model open")
    ax.fill_between(t, 1.02, 1.08, where=speech, color="tab:green", alpha=0.5, lw=0, label="speech frames")
    ax.set_ylim(-1.15, 1.12)
    ax.set_xlabel("s")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
