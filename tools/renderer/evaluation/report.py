"""Goals with PASS/FAIL, EVAL.json and EVAL.md.

The goals are the issue's, judged on the mean over each held-out set (random combinations
and speech-like sequences separately; each set has its own goal rows).

EVAL.json (schema 1; JSON has no inf/nan: such values are null):
    schema, tool, command, date_utc, elapsed_s, all_goals_pass
    bundle     {path, name, fixture, frame_size [w, h], frames, box_size, crop_size, coarse_size,
                open_scale, source {generator, seed, scale, frames}}
    settings   {pairs, seed, held_out_seed_base, sentences, audio_model, temporal_frames, threads,
                ssim, psnr}
    models     {coarse|fine: {sidecar, param_sha256, bin_sha256, fixture,
                network: {macs, parameters, layers} | null}, macs_per_level {coarse, full}}
    ground_truth_check {frames_checked, template_box_max_abs_diff, crop_boxes_match}
    full_frame_check   {frames, max_abs_diff_outside_box, max_frame_mse_gap, method}
    sets       {random|speech: {status ("ok" or "skipped: why"), rows, rest_rows, notes [str],
                changed_pixel_share_of_box, levels {full|coarse: {crop_psnr_db, crop_ssim,
                changed_region_psnr_db, frame_psnr_db}}, temporal (speech only)}}
               each metric: {n, mean, median, p05, min, max} (+ of_mean_mse for crop_psnr_db)
    temporal   {determinism {repeats, frame, params, full|coarse: {crop_max_abs_diff,
                composite_max_abs_diff}}, sequences {constant_params|slow_ramp|
                slow_ramp_fixed_frame: {notes, temporal}}}
               temporal: {sequences, steps, truth_mean_abs_change, full|coarse: {mean_abs_change,
               ratio_to_truth, within_tolerance}}
    bench      {status ("ok", "failed", "skipped ..."), command, threads, fixtures, stages_ms
                {stage: {p50, p95, n}}, uncapped_fps {full, coarse}, machine} | {status, error}
    goals      [{id, what, value, goal, pass (true/false/null = not measured)}]
    files      {report, json, sheet, plots (null without matplotlib)}
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from .evaluate import STABLE_RATIO_TOLERANCE
from .metrics import PSNR_CAP_DB, SSIM_SIGMA, SSIM_WINDOW

log = logging.getLogger(__name__)

REPORT_SCHEMA = 1
FULL_PSNR_DB, FULL_SSIM, COARSE_PSNR_DB, FULL_OVER_COARSE_DB, FRAME_PSNR_DB = 32.0, 0.95, 27.0, 1.5, 38.0
SETS = (("random", "held-out random combinations"), ("speech", "held-out speech (audio model)"))


def _goal(gid: str, what: str, value, target: str, ok) -> dict:
    return {"id": gid, "what": what, "value": value, "goal": target, "pass": ok}


def _mean(section: dict, level: str, metric: str):
    return section["levels"][level][metric]["mean"]


def goals(result: dict) -> list[dict]:
    out = []
    for name, title in SETS:
        section = result["sets"].get(name)
        ran = isinstance(section, dict) and section.get("status") == "ok"
        values = {}
        if ran:
            values = {"full": _mean(section, "full", "crop_psnr_db"),
                      "ssim": _mean(section, "full", "crop_ssim"),
                      "coarse": _mean(section, "coarse", "crop_psnr_db"),
                      "frame": _mean(section, "full", "frame_psnr_db")}
            if values["full"] is not None and values["coarse"] is not None:
                values["gap"] = round(values["full"] - values["coarse"], 4)
        rows = (("full_crop_psnr_db", "FULL mouth-crop PSNR (mean, dB)", "full", f">= {FULL_PSNR_DB:g}",
                 lambda v: v >= FULL_PSNR_DB),
                ("full_crop_ssim", "FULL mouth-crop SSIM (mean)", "ssim", f">= {FULL_SSIM:g}",
                 lambda v: v >= FULL_SSIM),
                ("coarse_crop_psnr_db", "COARSE mouth-crop PSNR (mean, dB)", "coarse", f">= {COARSE_PSNR_DB:g}",
                 lambda v: v >= COARSE_PSNR_DB),
                ("full_over_coarse_db", "FULL minus COARSE crop PSNR (dB)", "gap", f">= {FULL_OVER_COARSE_DB:g}",
                 lambda v: v >= FULL_OVER_COARSE_DB),
                ("full_frame_psnr_db", "FULL composited full-frame PSNR (mean, dB)", "frame",
                 f">= {FRAME_PSNR_DB:g}", lambda v: v >= FRAME_PSNR_DB))
        for gid, what, key, target, check in rows:
            value = values.get(key)
            out.append(_goal(f"{name}.{gid}", f"{title}: {what}", value, target,
                             None if value is None else bool(check(value))))
    det = result["temporal"]["determinism"]
    worst = max(max(det[lab]["crop_max_abs_diff"], det[lab]["composite_max_abs_diff"])
                for lab in ("full", "coarse"))
    out.append(_goal("temporal.held_constant", "params held constant, same frame, repeated "
                     "renders (+ a second renderer): max abs difference of crop and composite",
                     worst, "== 0", worst == 0))
    ramp = result["temporal"]["sequences"].get("slow_ramp", {}).get("temporal")
    for lab in ("full", "coarse"):
        ratio = ramp[lab]["ratio_to_truth"] if ramp else None
        out.append(_goal(f"temporal.slow_ramp_{lab}", f"slowly moving params, k advancing: {lab.upper()} "
                         "mean frame-to-frame change / truth's", ratio,
                         f"1 +- {STABLE_RATIO_TOLERANCE:g}",
                         None if ratio is None else bool(abs(ratio - 1.0) <= STABLE_RATIO_TOLERANCE)))
    return out


def _clean(value):
    """JSON has no inf/nan: non-finite floats become null (the report says what null means)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(result: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(_clean(result), indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mark(ok) -> str:
    return "not measured" if ok is None else ("PASS" if ok else "**FAIL**")


def _macs(network) -> str:
    if not network or network.get("macs") is None:
        return "not recorded"
    return f"{network['macs'] / 1e6:.1f} M"


def write_markdown(result: dict, path: Path) -> None:
    bundle, models = result["bundle"], result["models"]
    lines = [f"# Renderer evaluation: {bundle['name']}", "",
             f"Made {result['date_utc']} by `{result['command']}` in {result['elapsed_s']:.0f} s. "
             f"Bundle `{bundle['path']}` ({bundle['frame_size'][0]}x{bundle['frame_size'][1]}, "
             f"{bundle['frames']} template frames, box {bundle['box_size']} px, fine {bundle['crop_size']} px, "
             f"coarse {bundle['coarse_size']} px); ground truth rebuilt from its `source` block "
             f"({bundle['source']['generator']}, seed {bundle['source']['seed']}, scale "
             f"{bundle['source']['scale']:g}). Everything runs through the torch-free runtime "
             "(NcnnRenderer, Compositor with the bundle's mask); all numbers are also in EVAL.json.", ""]
    if bundle["fixture"] or any(models[s]["fixture"] for s in ("coarse", "fine")):
        lines += ["**TEST FIXTURE models (hand-wired, not trained): these numbers say nothing about "
                  "a product renderer.**", ""]
    overall = [g["pass"] for g in result["goals"]]
    verdict = "PASS" if overall and all(overall) else ("FAIL" if any(o is False for o in overall) else "INCOMPLETE")
    lines += [f"## Goals: {verdict}", "", "| goal | value | target | result |", "|---|---|---|---|"]
    lines += [f"| {g['what']} | {_fmt(g['value'], 3)} | {g['goal']} | {_mark(g['pass'])} |" for g in result["goals"]]
    bench = result["bench"]
    stages = bench.get("stages_ms", {}) if bench.get("status") == "ok" else {}
    lines += ["", "## Models and cost per stage", "",
              "| stage | sidecar | multiply-adds | parameters | layers | ms p50 / p95 (bench, "
              f"{bench.get('threads', 1)} thread) | param sha256 | bin sha256 |", "|---|---|---|---|---|---|---|---|"]
    for stage in ("coarse", "fine"):
        facts, net = models[stage], models[stage]["network"] or {}
        timing = stages.get(stage)
        lines.append(f"| {stage} | {facts['sidecar']} | {_macs(facts['network'])} | "
                     f"{net.get('parameters', 'not recorded')} | {net.get('layers') or 'not recorded'} | "
                     f"{_fmt(timing['p50'], 3) + ' / ' + _fmt(timing['p95'], 3) if timing else 'n/a'} | "
                     f"`{facts['param_sha256']}` | `{facts['bin_sha256']}` |")
    per_level = models["macs_per_level"]
    lines += ["", f"Multiply-adds per frame: FULL {_macs({'macs': per_level['full']})}, "
              f"COARSE {_macs({'macs': per_level['coarse']})}."]
    if bench.get("status") == "ok":
        other = ", ".join(f"{k} {v['p50']:.3f}" for k, v in stages.items() if k not in ("coarse", "fine"))
        fps = ", ".join(f"{k} {v}" for k, v in bench.get("uncapped_fps", {}).items())
        lines += [f"Other stages (p50 ms): {other or 'none'}. Uncapped fps: {fps}. From `{bench['command']}`"
                  + (" (on fixture models)" if bench.get("fixtures") else "") + "."]
    else:
        error = f" ({bench['error']})" if bench.get("error") else ""
        lines += [f"`edgemate bench`: {bench.get('status')}{error}."]
    lines += ["", "## Mouth crop and composited frame", "",
              "Means over each set (p05 = the worst 5%). Crop = the whole box; mouth region = only the "
              "pixels where the truth differs from the template (the box is mostly unchanged skin, "
              "which lifts the whole-box figure); frame = the composited full frame.", "",
              "| set | level | rows | crop PSNR mean / median / p05 | crop SSIM mean / p05 | "
              "mouth-region PSNR mean / p05 | frame PSNR mean / p05 |", "|---|---|---|---|---|---|---|"]
    for name, title in SETS:
        section = result["sets"].get(name, {})
        if section.get("status") != "ok":
            lines.append(f"| {title} | | | {section.get('status', 'not run')} | | | |")
            continue
        for lab in ("full", "coarse"):
            m = section["levels"][lab]
            c, s, r, f = m["crop_psnr_db"], m["crop_ssim"], m["changed_region_psnr_db"], m["frame_psnr_db"]
            lines.append(f"| {title} | {lab.upper()} | {c['n']} | {_fmt(c['mean'])} / {_fmt(c['median'])} / "
                         f"{_fmt(c['p05'])} | {_fmt(s['mean'], 4)} / {_fmt(s['p05'], 4)} | "
                         f"{_fmt(r['mean'])} / {_fmt(r['p05'])} | {_fmt(f['mean'])} / {_fmt(f['p05'])} |")
    for name, title in SETS:
        section = result["sets"].get(name, {})
        if section.get("status") == "ok":
            lines += ["", f"{title}: {section['rows']} rows ({section['rest_rows']} at rest: template shown, "
                      f"not scored); the mouth region is {100 * (section['changed_pixel_share_of_box'] or 0):.1f}% "
                      "of the box on average."] + [f"- {note}" for note in section["notes"]]
    temporal = result["temporal"]
    det = temporal["determinism"]
    lines += ["", "## Temporal stability", "",
              f"Held constant (params {det['params']} on template frame {det['frame']}, {det['repeats']} renders "
              f"and one more renderer instance): max abs difference FULL crop {det['full']['crop_max_abs_diff']}, "
              f"composite {det['full']['composite_max_abs_diff']}; COARSE crop {det['coarse']['crop_max_abs_diff']}, "
              f"composite {det['coarse']['composite_max_abs_diff']}.", "",
              "Mean absolute frame-to-frame change (0-255 levels, frame coordinates over the union of "
              "the sequence's mouth boxes) of the output against the truth's; ratio goal 1 +- "
              f"{STABLE_RATIO_TOLERANCE:g} (below 1: the output moves less than the truth, above: it "
              "flickers or jumps).", "",
              "| sequence | steps | truth | FULL | FULL ratio | COARSE | COARSE ratio |",
              "|---|---|---|---|---|---|---|"]
    seqs = dict(temporal["sequences"])
    speech = result["sets"].get("speech", {})
    if speech.get("status") == "ok" and "temporal" in speech:
        seqs["speech (held-out)"] = speech
    for name, section in seqs.items():
        t = section["temporal"]
        lines.append(f"| {name} | {t['steps']} | {t['truth_mean_abs_change']:.4f} | "
                     f"{t['full']['mean_abs_change']:.4f} | {t['full']['ratio_to_truth']:.3f} | "
                     f"{t['coarse']['mean_abs_change']:.4f} | {t['coarse']['ratio_to_truth']:.3f} |")
    for name, section in temporal["sequences"].items():
        lines += [f"- {name}: {note}" for note in section["notes"]]
    check, truth_check = result["full_frame_check"], result["ground_truth_check"]
    lines += ["", "## Method", "",
              f"- PSNR on [0, 255] over all three channels; per-sample values are capped at {PSNR_CAP_DB:g} dB "
              "before averaging (an exact match is infinite); `of_mean_mse` in EVAL.json is the PSNR of the "
              "set's mean squared error.",
              f"- SSIM: Wang et al. 2004, {SSIM_WINDOW}x{SSIM_WINDOW} Gaussian window, sigma {SSIM_SIGMA}, "
              "K1 0.01, K2 0.03, on BT.601 luma, mean over the positions where the window fits (no padding).",
              f"- Frame PSNR: {check['method']}; checked on {check['frames']} real full frames (widest mouths "
              f"of the random set): truth vs template outside the box max diff {check['max_abs_diff_outside_box']}, "
              "the frame's squared error from the box and from the full frame differ by at most "
              f"{check['max_frame_mse_gap']:.2g}.",
              f"- Ground truth: the generator's template boxes equal the bundle's on frames "
              f"{truth_check['frames_checked']} (max diff {truth_check['template_box_max_abs_diff']}), crop boxes "
              "equal on every frame. `open` is scaled by the bundle's calibration before drawing the truth, as "
              f"the runtime does before rendering (open_scale {bundle['open_scale']:g}).",
              "- Rows whose parameters are all below the runtime's rest threshold show the template and are not "
              "scored (they are exact by construction); they do count in the temporal sequences.",
              "", "## Contact sheet", "",
              "Template frame 0. First block: the rest mouth and the named combinations; then each parameter "
              "swept alone 0, .25, .5, .75, 1. Rows FULL / COARSE / truth; renderer tiles show their crop PSNR.",
              "", f"![contact sheet]({result['files']['sheet']})"]
    if result["files"].get("plots"):
        lines += ["", f"![plots]({result['files']['plots']})"]
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
