"""Evaluate an avatar bundle's renderer against the procedural generator's exact ground truth.

    python -m tools.renderer.evaluate BUNDLE_DIR [--pairs N] [--seed S] [--out-dir DIR] [--skip-bench]
        [--sentences N] [--audio-model YAML] [--bench-seconds S] [--debug]

Writes EVAL.md, EVAL.json, EVAL_sheet.png (and EVAL_plots.png when matplotlib is installed)
into BUNDLE_DIR (or --out-dir). The bundle's avatar.yaml must carry
    source: {generator: "procedural default character", seed: 0, scale: 1.0, frames: 200}
so the generator (tools/avatar) can draw the truth for any mouth on any template frame.
Everything is measured through the torch-free runtime: NcnnRenderer at FULL and COARSE and
the Compositor with the bundle's mask, on held-out random combinations, on held-out speech
(test sentences, test voices, the shipped audio model), and on temporal sequences; plus
multiply-adds per stage from the sidecars and ms per stage from `edgemate bench` (1 thread).
"""
from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_AUDIO_MODEL = REPO / "models" / "audio" / "audio.yaml"
SHEET, PLOTS = "EVAL_sheet.png", "EVAL_plots.png"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.renderer.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path, metavar="BUNDLE_DIR", help="avatar bundle directory")
    p.add_argument("--pairs", type=int, default=300, help="held-out random combinations (default 300)")
    p.add_argument("--seed", type=int, default=0, help="held-out sampling seed, offset from training's (default 0)")
    p.add_argument("--out-dir", type=Path, help="where the report goes (default: BUNDLE_DIR)")
    p.add_argument("--skip-bench", action="store_true", help="do not run `edgemate bench`")
    p.add_argument("--bench-seconds", type=float, default=10.0, help="length of the bench's 25 fps run")
    p.add_argument("--sentences", type=int, default=4, help="held-out sentences for the speech set (0: skip)")
    p.add_argument("--audio-model", type=Path, default=DEFAULT_AUDIO_MODEL,
                   help="audio model sidecar for the speech set and the bench (default: the shipped one)")
    p.add_argument("--temporal-frames", type=int, default=50, help="frames per temporal sequence (default 50)")
    p.add_argument("--verify-frames", type=int, default=3,
                   help="real full truth frames rendered to check the frame-PSNR shortcut (default 3)")
    p.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return p


def _speech(evaluator, args) -> tuple[dict, object]:
    """(JSON section, SetResult or None); a speech set that cannot be made is reported, not fatal."""
    from runtime.models.ncnn_model import ModelError

    from tools.renderer.evaluation.sets import speech_set

    if args.sentences <= 0:
        return {"status": "skipped: --sentences 0"}, None
    try:
        rows = speech_set(args.audio_model, args.sentences, args.seed, evaluator.bundle.frame_count)
    except (RuntimeError, OSError, ModelError, subprocess.SubprocessError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        log.warning("speech set skipped: %s", reason)
        return {"status": f"skipped: {reason}"}, None
    result = evaluator.evaluate(rows)
    return {"status": "ok", **result.summary}, (rows, result)


def evaluate_bundle(args, command: str) -> dict:
    from runtime.render.bundle import load_bundle

    from tools.renderer.evaluation.evaluate import Evaluator
    from tools.renderer.evaluation.report import FULL_PSNR_DB, COARSE_PSNR_DB, REPORT_SCHEMA, goals
    from tools.renderer.evaluation.sheet import write_plots, write_sheet
    from tools.renderer.evaluation.stages import model_facts, run_bench
    from tools.renderer.evaluation.truth import GroundTruth, check_bundle, read_source
    from .evaluation import sets

    started = time.monotonic()
    spec = read_source(args.bundle)
    bundle = load_bundle(args.bundle, exact_template=True)  # compared with the generator's pixels
    truth = GroundTruth(spec, bundle.open_scale)
    truth_check = check_bundle(truth, bundle, args.bundle / "avatar.yaml")
    evaluator = Evaluator(bundle, truth, threads=1)
    out_dir = args.out_dir or args.bundle
    out_dir.mkdir(parents=True, exist_ok=True)

    random_rows = sets.random_set(args.pairs, args.seed, bundle.frame_count)
    full_check = evaluator.check_full_frames(random_rows, args.verify_frames)
    random_result = evaluator.evaluate(random_rows)
    speech_section, speech = _speech(evaluator, args)

    n = args.temporal_frames
    sequences = {}
    ramp_changes = None
    for rows in (sets.constant_sequence(n, 0, bundle.frame_count), sets.slow_ramp(n, 0, bundle.frame_count),
                 sets.slow_ramp(n, 0, bundle.frame_count, advance=False)):
        res = evaluator.evaluate(rows)
        sequences[rows.name] = {"notes": list(rows.notes), "temporal": res.summary["temporal"]}
        if rows.name == "slow_ramp":
            ramp_changes = res.changes
    held = sets.constant_sequence(1, 0, bundle.frame_count)
    determinism = evaluator.determinism(held.params[0], int(held.frames[0]))

    write_sheet(evaluator, out_dir / SHEET)
    speech_plot = None
    if speech is not None:
        speech_plot = (speech[1].crop_psnr, speech[0].params[:, 0])
    plotted = write_plots(out_dir / PLOTS, random_result.crop_psnr, speech_plot, ramp_changes,
                          (FULL_PSNR_DB, COARSE_PSNR_DB))
    if args.skip_bench:
        bench = {"status": "skipped (--skip-bench)"}
    else:
        bench = run_bench(bundle.path, args.bench_seconds, args.audio_model)

    result = {
        "schema": REPORT_SCHEMA, "tool": "tools.renderer.evaluate", "command": command,
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bundle": {"path": str(args.bundle), "name": bundle.name, "fixture": bundle.fixture,
                   "frame_size": list(bundle.frame_size), "frames": bundle.frame_count,
                   "box_size": bundle.box_size, "crop_size": bundle.crop_size,
                   "coarse_size": bundle.coarse_size, "open_scale": bundle.open_scale,
                   "source": spec.as_dict()},
        "settings": {"pairs": args.pairs, "seed": args.seed, "held_out_seed_base": sets.HELD_OUT_BASE,
                     "sentences": args.sentences, "audio_model": str(args.audio_model),
                     "temporal_frames": n, "threads": 1,
                     "ssim": "Gaussian 11x11 sigma 1.5, K1 0.01 K2 0.03, BT.601 luma, valid positions",
                     "psnr": "[0,255], all channels; per-sample values capped at 100 dB before averaging"},
        "models": model_facts(bundle),
        "ground_truth_check": truth_check,
        "full_frame_check": full_check,
        "sets": {"random": {"status": "ok", **random_result.summary}, "speech": speech_section},
        "temporal": {"determinism": determinism, "sequences": sequences},
        "bench": bench,
        "files": {"report": "EVAL.md", "json": "EVAL.json", "sheet": SHEET, "plots": PLOTS if plotted else None},
    }
    result["goals"] = goals(result)
    result["all_goals_pass"] = all(g["pass"] is True for g in result["goals"])
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.pairs < 1 or args.temporal_frames < 3 or args.verify_frames < 0 or args.bench_seconds <= 0:
        _parser().error("need --pairs >= 1, --temporal-frames >= 3, --verify-frames >= 0, --bench-seconds > 0")
    from runtime.models.ncnn_model import ModelError

    from tools.renderer.evaluation.report import write_json, write_markdown
    from tools.renderer.evaluation.truth import EvalError

    command = "python -m tools.renderer.evaluate " + shlex.join(argv)
    try:
        result = evaluate_bundle(args, command)
        out_dir = args.out_dir or args.bundle
        write_json(result, out_dir / "EVAL.json")
        write_markdown(result, out_dir / "EVAL.md")
    except (EvalError, ModelError, OSError, ValueError) as err:
        if args.debug:
            raise
        print(f"eval_renderer: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 1
    failed = [g["id"] for g in result["goals"] if g["pass"] is False]
    print(f"wrote {out_dir / 'EVAL.md'}: " + ("all goals met" if result["all_goals_pass"] else
          f"goals not met: {', '.join(failed) or 'none'}; not measured: "
          f"{', '.join(g['id'] for g in result['goals'] if g['pass'] is None) or 'none'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
