"""The avatar build, step by step: track, choose the loop, write the dataset, train, bundle.

Each step is resumable: tracking is quick and simply runs again; the dataset's finished
shards are kept (tools/avatar/dataset.py); training continues from its last checkpoint
(tools/renderer/train.py). Everything but the bundle lives in the work directory.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tools.avatar.dataset import DatasetSpec, write_pairs
from tools.avatar.png import write_png
from tools.faces.quality import ADVICE
from tools.faces.track import PHOTO_SUFFIXES, TrackError, require_usable, track
from .loop import LoopChoice, choose_loop, thumbnails
from .source import VideoMouthSource

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEMO_CLIP = REPO / "models" / "avatars" / "default" / "demo.wav"


@dataclass(frozen=True)
class BuildSettings:
    source: Path  # an idle video (mouth closed) or a photo
    out: Path
    work: Path
    min_loop_s: float = 3.0
    max_loop_s: float = 8.0
    pairs: int = 4096  # the builds measured in docs/AVATAR_BUILDER.md
    steps: int = 1200  # docs/AVATAR_BUILDER.md: from 1200 the mesh figures stop improving
    threads: int = 2
    seed: int = 0
    shard_size: int = 512
    speech_video: Path | None = None  # the same person talking: real mouths (speech.py)
    speech_share: float = 0.5  # of the training pairs, when there is talking footage

#: Training steps with talking footage: real frames are harder to fit than the mouth model;
#: 1200 -> 3000 took r(rendered gap, real gap) on held-out frames from 0.85 to 0.96
#: (docs/AVATAR_BUILDER.md) for a 16-minute build.
SPEECH_STEPS = 3000


@dataclass
class BuildReport:
    """What the summary says: what was found, rejected and chosen, and what it took."""

    source: str
    frames: int = 0
    usable: int = 0
    rejected: dict = field(default_factory=dict)
    loop: LoopChoice | None = None
    box_size: int = 0
    seconds: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    bundle: Path | None = None
    speech: dict | None = None  # what the talking footage gave (frames, usable, openings)

    def lines(self) -> list[str]:
        out = [f"input     {self.source}: {self.frames} frames at 25 fps, {self.usable} usable"]
        if self.rejected:
            out.append("rejected  " + ", ".join(f"{n} {why} ({ADVICE[why].split(':')[0]})"
                                                 for why, n in sorted(self.rejected.items())))
        if self.loop is not None:
            c = self.loop
            out.append(f"template  frames {c.start}..{c.start + c.length - 1} ({c.length / 25:.1f} s), "
                       f"{c.mode}, seam {c.seam_ratio:.2f} of a frame change, mouth box {self.box_size} px")
        if self.speech is not None:
            s = self.speech
            out.append(f"speech    {s['source']}: {s['frames']} frames, {s['usable']} usable; "
                       f"open >= 0.5 in {s['open_half_share']:.0%} of them, p95 open "
                       f"{s['open_p95']:.2f}; {s['share']:.0%} of the pairs")
        for warning in self.warnings:
            out.append(f"warning   {warning}")
        out.append("time      " + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())
                   + f" (total {sum(self.seconds.values()) / 60:.1f} min)")
        if self.bundle is not None:
            out.append(f"bundle    {self.bundle} (report: {self.bundle / 'training_curves.png'})")
            out.append(f"next      edgemate check --bundle {self.bundle}; "
                       f"edgemate demo --bundle {self.bundle}")
        return out


def choose_template(settings: BuildSettings, report: BuildReport):
    """Track the input and pick the template: (frames, points, LoopChoice)."""
    started = time.monotonic()
    result, frames = track(settings.source)
    report.frames, report.usable = len(frames), int(result.usable.sum())
    report.rejected = result.rejected()
    require_usable(result)
    if settings.source.suffix.lower() in PHOTO_SUFFIXES or len(frames) == 1:
        # A photo: a still template (breathing and blinks drawn into a real face would need
        # a model of its own; a still face is honest).
        choice = LoopChoice(0, 1, "forward", 0.0, 0.0, False)
    else:
        min_frames = int(settings.min_loop_s * 25)
        max_frames = min(int(settings.max_loop_s * 25), len(frames) - 1)
        try:
            choice = choose_loop(thumbnails(frames), result.points, result.usable,
                                 min_frames=min(min_frames, max_frames), max_frames=max_frames)
        except ValueError as err:
            raise TrackError(f"{settings.source}: {err}: use a longer idle video") from None
        if choice.talking:
            report.warnings.append(
                f"the mouth moves in the idle video (open ratio spread {choice.open_spread:.2f}, "
                "idle is under 0.08): the person may be talking; a clip with the mouth closed "
                "makes a better avatar")
    report.loop = choice
    loop_frames = [frames[k] for k in range(choice.start, choice.start + choice.length)]
    points = result.points[choice.start:choice.start + choice.length]
    report.seconds["track"] = time.monotonic() - started
    return loop_frames, points, choice


def write_dataset(settings: BuildSettings, frames: list, points: np.ndarray, choice: LoopChoice,
                  report: BuildReport, progress=None) -> Path:
    started = time.monotonic()
    source = VideoMouthSource(frames, points)
    report.box_size = source.box_size
    pairs_source, speech_note = source, ""
    if settings.speech_video is not None:
        pairs_source = _footage_pairs(settings, source, report, choice.mode)
        speech_note = f", talking footage {settings.speech_video.name} ({settings.speech_share:.0%})"
    dataset = settings.work / "dataset"
    (dataset / "frames").mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        target = dataset / "frames" / f"{k:04d}.png"
        if not target.is_file():
            write_png(target, frame)
    np.save(dataset / "crop_boxes.npy", source.crop_boxes())
    height, width = frames[0].shape[:2]
    spec = DatasetSpec(
        source=f"real video {settings.source.name} (tools/make_avatar, mouth model{speech_note})",
        seed=settings.seed, frame_size=(width, height), box_size=source.box_size,
        frames=len(frames), pairs=settings.pairs, shard_size=settings.shard_size,
        generator={"command": f"python -m tools.make_avatar --video {settings.source}"
                              + (f" --speech-video {settings.speech_video}" if settings.speech_video else ""),
                   **({"speech": report.speech} if report.speech else {}),
                   "loop": {"start": choice.start, "length": choice.length, "mode": choice.mode,
                            "seam_ratio": choice.seam_ratio}},
        loop=choice.mode)
    write_pairs(dataset, spec, pairs_source, progress)
    report.seconds["dataset"] = time.monotonic() - started
    return dataset


def _footage_pairs(settings: BuildSettings, template: VideoMouthSource, report: BuildReport,
                   loop: str):
    from tools.avatar.make_default import _Progress
    from .speech import FootagePairs, load_footage

    import cv2
    capture = cv2.VideoCapture(str(settings.speech_video))
    rate = capture.get(cv2.CAP_PROP_FPS) or 25.0
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)  # 0 or less where the container does not say
    expected = int(count * 25.0 / rate) if count > 0 and 1 <= rate <= 240 else None
    capture.release()
    bar = _Progress(expected, "talking frames")
    footage = load_footage(settings.speech_video, progress=lambda n: bar(1))
    bar.close()
    measured = footage.params[footage.usable]
    report.speech = {"source": settings.speech_video.name, "frames": len(footage.frames),
                     "usable": int(footage.usable.sum()), "rest": footage.rest.as_dict(),
                     "open_p95": float(np.percentile(measured[:, 0], 95)),
                     "open_half_share": float((measured[:, 0] >= 0.5).mean()),
                     "share": settings.speech_share,
                     "measure": "tools/faces/mouth_params.py"}
    return FootagePairs(template, footage, settings.speech_share, loop)


def train_bundle(settings: BuildSettings, dataset: Path, report: BuildReport) -> Path:
    from tools.renderer.train import DEFAULT_RECIPE, build

    started = time.monotonic()
    recipe = dict(DEFAULT_RECIPE)
    feather = max(4, int(round(report.box_size * 24 / 256)))  # the default avatar's share
    recipe.update(name=settings.out.name, steps=settings.steps, threads=settings.threads,
                  seed=settings.seed, checkpoint_every=250, feather_px=feather,
                  command=f"python -m tools.make_avatar --video {settings.source} --out {settings.out} "
                          f"--steps {settings.steps} --pairs {settings.pairs}"
                          + (f" --speech-video {settings.speech_video}" if settings.speech_video else ""),
                  dataset_command=None, demo_audio="demo.wav")
    settings.out.mkdir(parents=True, exist_ok=True)
    if DEMO_CLIP.is_file() and not (settings.out / "demo.wav").is_file():
        shutil.copyfile(DEMO_CLIP, settings.out / "demo.wav")  # `edgemate demo --bundle` speaks it
    if build(recipe, dataset, settings.out, settings.work / "train") != 0:
        raise RuntimeError("ncnn differs from torch beyond the export's limit (see the sidecars)")
    report.seconds["train"] = time.monotonic() - started
    report.bundle = settings.out
    if report.speech is not None:  # the footage's mouth at rest: eval_avatar --truth measures with it
        (settings.out / "speech.json").write_text(json.dumps(report.speech, indent=1) + "\n")
    return settings.out
