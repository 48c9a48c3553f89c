"""Does the avatar look like the person talking? `python -m tools.eval_avatar BUNDLE --truth
TALKING.mp4`: held-out talking footage of the person (not used to build the bundle) against
the frames the runtime renders for it.

For each usable frame t of the footage, the parameters measured from its mesh
(tools/faces/mouth_params.py, against the mouth at rest the build measured: the bundle's
speech.json, else this footage's own) drive the bundle on template frame j = the loop's frame
at t. The real frame's lower face is laid into template frame j's mouth box exactly as the
build lays its training targets (speech.py SpeechTargets): that box is the truth. Figures:

    psnr, ssim   mouth box, rendered against the truth (FULL, COARSE), and the template's own
                 box (the mouth left shut) as the floor any renderer must beat
    r(gap)       the face mesh's inner-lip gap on the rendered frames against the real frames'
                 (goal >= 0.9), for measured parameters and, end to end, for the audio model
                 run on the footage's own sound
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tools.faces.mouth_params import Rest


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Capped at 100 dB (identical boxes), as the renderer's evaluation caps it."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return min(100.0, 10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of the luma (Gaussian window, sigma 1.5; Wang et al. 2004 constants)."""
    import cv2

    def luma(x):
        return x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    x, y = luma(a), luma(b)
    blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    value = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(value.mean())


def template_source(bundle, mesh):
    """The bundle's template frames with their meshes, boxes and box size as the bundle has them."""
    from tools.faces.track import mesh_points
    from .source import VideoMouthSource

    frames = list(bundle.frames)  # one array per template frame (tiles: new arrays)
    points = []
    for frame in frames:
        found = mesh.process(np.ascontiguousarray(frame)).multi_face_landmarks
        if not found:
            raise ValueError(f"{bundle.path}: no face found in a template frame")
        points.append(mesh_points(found[0].landmark, (frame.shape[1], frame.shape[0])))
    return VideoMouthSource(frames, np.array(points), size=bundle.box_size, boxes=bundle.crop_boxes)


def _audio_params(video: Path) -> np.ndarray | None:
    """The shipped audio model on the footage's own sound, or None without a sound track."""
    from runtime.commands.mouth import analyze_file, default_audio_model
    from runtime.speech.audio_model import AudioModel

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "sound.wav"
        done = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-vn", "-ac", "1",
                               "-ar", "16000", str(wav)], capture_output=True)
        if done.returncode != 0 or not wav.is_file() or wav.stat().st_size < 1000:
            return None
        return analyze_file(wav, AudioModel(default_audio_model()))


def compare(body, measure, mesh, truth: Path, sheet: Path | None = None) -> dict:
    from runtime.quality.levels import Quality
    from tools.eval_avatar import _r, shown
    from .speech import SpeechTargets, load_footage

    bundle = body.bundle
    rest = None
    spec = bundle.path / "speech.json"
    if spec.is_file():
        rest = Rest(**json.loads(spec.read_text())["rest"])
    footage = load_footage(truth, rest=rest, min_seconds=1.0)
    targets = SpeechTargets(footage, template_source(bundle, mesh))
    frames = np.flatnonzero(footage.usable & np.isfinite(footage.params).all(axis=1))
    size = bundle.box_size
    scores = {name: {"psnr": [], "ssim": []} for name in ("full", "coarse", "template")}
    gaps = {"full": [], "coarse": []}
    cells = []
    for n, t in enumerate(frames):
        j = bundle.loop_index(int(t))
        x, y = (int(v) for v in bundle.crop_boxes[j])
        real = targets.target(int(t), j)
        row = [real]
        for level in (Quality.FULL, Quality.COARSE):
            frame = shown(body, footage.params[t], j, level)
            box = frame[y:y + size, x:x + size]
            scores[level.label]["psnr"].append(psnr(box, real))
            scores[level.label]["ssim"].append(ssim(box, real))
            m = measure(frame)
            gaps[level.label].append(m[0] if m else np.nan)
            row.append(box)
        still = np.asarray(bundle.frames[j])[y:y + size, x:x + size]
        scores["template"]["psnr"].append(psnr(still, real))
        scores["template"]["ssim"].append(ssim(still, real))
        if n % max(1, len(frames) // 6) == 0 and len(cells) < 6:
            cells.append(np.concatenate(row + [still], axis=1))
    real_gap = footage.lips["gap"][frames]
    result = {"truth": str(truth), "frames": int(len(frames)), "rest": footage.rest.as_dict(),
              "rest_from": "bundle speech.json" if rest else "the truth footage"}
    for name, s in scores.items():
        result[name] = {"psnr": float(np.mean(s["psnr"])), "ssim": float(np.mean(s["ssim"]))}
    for name, g in gaps.items():
        result[name]["r_gap"] = _r(real_gap, g)
        result[name]["gap_ratio"] = float(np.nanmean(g) / np.nanmean(real_gap))
    audio = _audio_params(truth)
    if audio is not None:
        driven = []
        for t in frames:
            p = audio[min(int(t), len(audio) - 1)]
            m = measure(shown(body, p, bundle.loop_index(int(t)), Quality.FULL))
            driven.append(m[0] if m else np.nan)
        result["audio_full_r_gap"] = _r(real_gap, driven)
    if sheet is not None and cells:
        from tools.avatar.png import write_png
        write_png(sheet, np.concatenate(cells, axis=0))
    return result


def lines(result: dict) -> list[str]:
    out = ["", f"## Against the person talking: {result['truth']} ({result['frames']} frames, "
           f"held out of the build; rest from {result['rest_from']})", "",
           "| shown | mouth-box PSNR dB | SSIM | r(rendered gap, real gap) | rendered / real gap |",
           "|---|---|---|---|---|"]
    for name in ("full", "coarse", "template"):
        r = result[name]
        extra = (f"{r['r_gap']:.3f} | {r['gap_ratio']:.2f}" if "r_gap" in r else "- | -")
        label = name.upper() if name != "template" else "template (mouth left shut)"
        out.append(f"| {label} | {r['psnr']:.2f} | {r['ssim']:.3f} | {extra} |")
    if "audio_full_r_gap" in result:
        out += ["", f"Driven by the audio model on the footage's own sound instead of measured "
                f"parameters: r(rendered gap, real gap) {result['audio_full_r_gap']:.3f} (FULL)."]
    out += ["", "Goal: r(rendered gap, real gap) >= 0.9 with measured parameters. Sheet "
            "(EVAL_truth.png), per row: truth | FULL | COARSE | template.", "",
            "![truth](EVAL_truth.png)", ""]
    return out
