"""python -m tools.eval_avatar BUNDLE [--audio SPEECH.wav] [--truth TALKING.mp4] [--out DIR]

Does a bundle's mouth do what the parameters ask? Judged by something that did not make it:
mediapipe's face mesh, run on the frames the runtime renders (NcnnRenderer, the frame path's
patch pasted into the template frame), at FULL and at COARSE:

    sweeps   each of open, wide and press swept 0 -> 1 alone on three template frames: the
             inner-lip gap (landmarks 13-14 / eye corners 33-263) against `open` (goal
             r >= 0.95 and monotonic), the mouth width (61-291) against `wide` (r >= 0.9),
             and the gap with `press` = 1 at open 0.5 (shut: under 0.02)
    speech   the audio model on a speech clip (default: the bundle's demo clip), every frame
             rendered on the advancing loop: r(open, measured gap) (goal >= 0.95)
    still    the frame outside the mouth mask equals the template (no visible box edge);
             the loop's seam against its ordinary frame-to-frame change (picture RMS)
    truth    with --truth: held-out talking footage of the person against what the bundle
             renders for it (mouth-box PSNR and SSIM, r of rendered vs real lip gap;
             tools/make_avatar/truth.py)

Writes DIR/EVAL.md and DIR/EVAL_sheet.png (each parameter swept at FULL and COARSE). Needs the
faces environment (mediapipe 0.10.14, opencv). A report, not a timed test.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

SWEEP = np.linspace(0.0, 1.0, 11)


class Measurer:
    def __init__(self):
        import mediapipe as mp

        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                    refine_landmarks=True)

    def __call__(self, frame: np.ndarray) -> tuple[float, float] | None:
        """(inner-lip gap, mouth width) in eye-corner units: tools/faces/lips.py's measure,
        the one the audio model's real-lip evaluation uses."""
        from tools.faces.lips import measure_frame

        found = self.mesh.process(np.ascontiguousarray(frame)).multi_face_landmarks
        if not found:
            return None
        h, w = frame.shape[:2]
        measured = measure_frame(found[0].landmark, (w, h))
        return measured["gap"], measured["width"]


def frame_body(bundle, renderer):
    """The appliance's own frame body (fused patch, or render + compositor) for `shown`."""
    from runtime.pipeline.frame_body import FrameBody
    from runtime.render.compositor import Compositor
    from runtime.schedule.stage_timer import StageTimer

    return FrameBody(bundle, renderer, Compositor(bundle.mask), StageTimer())


def shown(body, params: np.ndarray, index: int, level) -> np.ndarray:
    """The whole frame as the appliance shows it at template frame `index` (< the loop's
    length, so video frame `index` shows it)."""
    from runtime.quality.transition import RenderPlan

    return body.prepare(index, np.asarray(params, np.float32), RenderPlan(level)).picture.composed()


def _r(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 2 and np.std(b[ok]) > 0 else float("nan")


def sweeps(body, measure, level, indices) -> dict:
    gaps, widths, pressed = [], [], []
    for index in indices:
        for v in SWEEP:
            m = measure(shown(body, np.array([v, 0, 0, 0, 0, 0.5], np.float32), index, level))
            gaps.append((v, m[0] if m else np.nan))
            m = measure(shown(body, np.array([0.2, v, 0, 0, 0, 0.3], np.float32), index, level))
            widths.append((v, m[1] if m else np.nan))
        m = measure(shown(body, np.array([0.5, 0, 0, 1.0, 0, 0.3], np.float32), index, level))
        pressed.append(m[0] if m else np.nan)
    g = np.array(gaps)
    per_frame = g[:, 1].reshape(len(indices), len(SWEEP))
    return {"r_open_gap": _r(g[:, 0], g[:, 1]), "r_wide_width": _r(*np.array(widths).T),
            "monotonic": bool(np.all(np.diff(per_frame, axis=1) > -0.005)),
            "gap_at_open_1": float(np.nanmean(per_frame[:, -1])), "gap_pressed": float(np.nanmax(pressed))}


def speech(body, measure, level, wav: Path, audio_model: Path) -> dict:
    from runtime.commands.mouth import analyze_file
    from runtime.speech.audio_model import AudioModel

    params = analyze_file(wav, AudioModel(audio_model))
    gaps = []
    for k, p in enumerate(params):
        m = measure(shown(body, p, body.bundle.loop_index(k), level))
        gaps.append(m[0] if m else np.nan)
    return {"frames": len(params), "r_open_gap": _r(params[:, 0], gaps)}


def still(body) -> dict:
    from runtime.quality.levels import Quality

    bundle, renderer = body.bundle, body.renderer
    outside = bundle.mask <= 0.0
    worst = 0
    for index in (0, bundle.frame_count // 2):
        made = renderer.render_patch(np.array([1.0, 0.5, 0, 0, 0, 1.0], np.float32), index, Quality.FULL)
        if made is None or made[0] is None:
            continue
        patch, (x, y, w, h) = made
        template = np.asarray(bundle.frames[index])[y:y + h, x:x + w]
        worst = max(worst, int(np.abs(patch.astype(int) - template)[outside].max(initial=0)))
    def change(a: int, b: int) -> float:
        # Two frames at a time: the whole loop as float32 would be 2.2 GB for the default avatar.
        return float(np.sqrt(np.mean((bundle.frames[a].astype(np.float32) - bundle.frames[b]) ** 2)))

    order = [bundle.loop_index(k) for k in range(2 * bundle.frame_count)]
    steps = [change(a, b) for a, b in zip(order, order[1:]) if a != b]
    seam = change(order[bundle.frame_count - 1], order[bundle.frame_count]) \
        if bundle.loop == "forward" and bundle.frame_count > 1 else 0.0
    return {"outside_mask_max_levels": worst, "loop": bundle.loop,
            "seam_rms": seam, "median_step_rms": float(np.median(steps)) if steps else 0.0}


def subpixel_shift(a: np.ndarray, b: np.ndarray, rounds: int = 3) -> np.ndarray:
    """(dx, dy) with b(x) = a(x - d): a global translation by Lucas-Kanade (gradients and the
    difference, iterated with a bilinear re-sample), accurate to a few hundredths of a pixel
    for the sub-pixel steps between neighbouring frames."""
    from tools.make_avatar.warp import sample_bilinear

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(np.float64)
    d = np.zeros(2)
    inner = (slice(2, -2), slice(2, -2))
    for _ in range(rounds):
        moved = sample_bilinear(a[..., None], np.stack([xx - d[0], yy - d[1]], axis=-1))[..., 0]
        gy, gx = np.gradient(moved)
        gx, gy, diff = gx[inner], gy[inner], (b - moved)[inner]
        system = np.array([[np.sum(gx * gx), np.sum(gx * gy)], [np.sum(gx * gy), np.sum(gy * gy)]])
        rhs = -np.array([np.sum(gx * diff), np.sum(gy * diff)])
        if abs(np.linalg.det(system)) < 1e-9:
            break
        d += np.linalg.solve(system, rhs)
    return d


def jitter(body, level, frames: int = 60) -> float:
    """RMS (px) of how far the drawn mouth (rendered minus template) moves from frame to frame
    beyond what the template's mouth region moves: a held open mouth on consecutive loop
    frames. The box
    moves in whole pixels with the face; both crops are taken in the same box, so a box step
    cancels and what is left is the mouth not following the face."""
    bundle = body.bundle
    params = np.array([0.6, 0.2, 0, 0, 0, 0.5], np.float32)
    size = bundle.box_size
    lo, hi = size // 4, 3 * size // 4  # the mouth's part of the box
    order = [bundle.loop_index(k) for k in range(min(frames, 2 * bundle.frame_count))]
    crops = []
    for index in order:
        x, y = (int(v) for v in bundle.crop_boxes[index])
        rendered = shown(body, params, index, level)[y:y + size, x:x + size]
        template = np.asarray(bundle.frames[index])[y:y + size, x:x + size]
        grey_r = rendered.astype(np.float64).mean(axis=2)[lo:hi, lo:hi]
        grey_t = template.astype(np.float64).mean(axis=2)[lo:hi, lo:hi]
        # The change alone (the drawn mouth), so the template's own pixels around it, which
        # move with the face by construction, do not dilute the measure.
        crops.append((grey_r - grey_t, grey_t))
    errors = [subpixel_shift(c0, c1) - subpixel_shift(t0, t1)
              for (c0, t0), (c1, t1) in zip(crops, crops[1:])]
    return float(np.sqrt(np.mean(np.sum(np.square(errors), axis=1)))) if errors else 0.0


def contact_sheet(body, path: Path) -> None:
    from runtime.quality.levels import Quality
    from tools.avatar.png import write_png

    bundle = body.bundle
    rows = []
    x, y = (int(v) for v in bundle.crop_boxes[0])
    s = bundle.box_size
    for level in (Quality.FULL, Quality.COARSE):
        for j in range(6):
            cells = []
            for v in np.linspace(0, 1, 6):
                p = np.zeros(6, np.float32)
                p[j] = v
                cells.append(shown(body, p, 0, level)[y:y + s, x:x + s])
            rows.append(np.concatenate(cells, axis=1))
    write_png(path, np.concatenate(rows, axis=0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.eval_avatar", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--audio", type=Path, help="speech clip (default: the bundle's demo clip)")
    parser.add_argument("--truth", type=Path, help="talking footage of the person held out of "
                        "the build: compare the rendered mouth with the real one")
    parser.add_argument("--out", type=Path, help="report directory (default: the bundle)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from runtime.commands.demo import demo_clip
    from runtime.commands.mouth import default_audio_model
    from runtime.models.ncnn_model import ModelError
    from runtime.quality.levels import Quality
    from runtime.render.bundle import load_bundle
    from runtime.render.renderer import NcnnRenderer

    try:
        bundle = load_bundle(args.bundle)
        body = frame_body(bundle, NcnnRenderer(bundle))
        measure = Measurer()
    except ModelError as err:
        print(f"eval_avatar: {err}", file=sys.stderr)
        return 78
    except ImportError as err:
        print(f"eval_avatar: needs mediapipe 0.10.14 ({err}): pip install -e \".[faces]\"", file=sys.stderr)
        return 1
    wav = args.audio or demo_clip(args.bundle)
    out = args.out or args.bundle
    out.mkdir(parents=True, exist_ok=True)
    indices = sorted({0, bundle.frame_count // 3, 2 * bundle.frame_count // 3})
    lines = [f"# {bundle.name}: the face mesh on rendered frames", "",
             "| level | r(open, gap) | monotonic | gap at open 1 | r(wide, width) | gap, press 1 "
             "| r(open, gap) on speech |", "|---|---|---|---|---|---|---|"]
    for level in (Quality.FULL, Quality.COARSE):
        sw = sweeps(body, measure, level, indices)
        sp = speech(body, measure, level, wav, default_audio_model()) if wav else {"r_open_gap": float("nan")}
        lines.append(f"| {level.label} | {sw['r_open_gap']:.3f} | {sw['monotonic']} | {sw['gap_at_open_1']:.3f} "
                     f"| {sw['r_wide_width']:.3f} | {sw['gap_pressed']:.3f} | {sp['r_open_gap']:.3f} |")
    st = still(body)
    shakes = {level.label: jitter(body, level) for level in (Quality.FULL, Quality.COARSE)}
    lines += ["", f"Outside the mouth mask the frame differs from the template by at most "
              f"{st['outside_mask_max_levels']} grey levels. Loop: {st['loop']}; seam RMS "
              f"{st['seam_rms']:.2f} against a median frame-to-frame change of {st['median_step_rms']:.2f}.",
              "", "Mouth jitter (a held open mouth on consecutive loop frames; how far it moves beyond "
              "the template's own mouth region, Lucas-Kanade, goal <= 0.3 px RMS): "
              + ", ".join(f"{k} {v:.3f} px" for k, v in shakes.items()) + ".",
              "", f"Goals: r(open, gap) >= 0.95 and monotonic; r(wide, width) >= 0.9; press shuts "
              f"(gap < 0.02). Speech clip: {wav}.", "", "![sheet](EVAL_sheet.png)", ""]
    if args.truth is not None:
        from tools.faces.track import TrackError
        from tools.make_avatar.truth import compare, lines as truth_lines
        try:
            result = compare(body, measure, measure.mesh, args.truth, out / "EVAL_truth.png")
        except (TrackError, ValueError) as err:
            print(f"eval_avatar: {err}", file=sys.stderr)
            return 1
        lines += truth_lines(result)
        import json
        (out / "EVAL_truth.json").write_text(json.dumps(result, indent=1) + "\n")
    contact_sheet(body, out / "EVAL_sheet.png")
    (out / "EVAL.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
