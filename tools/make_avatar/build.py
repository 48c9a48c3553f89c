"""The avatar build, step by step: track, choose the loop, write the dataset, train, bundle.

Each step is resumable: tracking is quick and simply runs again; the dataset's finished
shards are kept (tools/avatar/dataset.py); training continues from its last checkpoint
(tools/renderer/train.py). Everything but the bundle lives in the work directory.
"""
from __future__ import annotations

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
    pairs: int = 6144
    steps: int = 1500
    threads: int = 2
    seed: int = 0
    shard_size: int = 512


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

    def lines(self) -> list[str]:
        out = [f"input     {self.source}: {self.frames} frames at 25 fps, {self.usable} usable"]
        if self.rejected:
            out.append("rejected  " + ", ".join(f"{n} {why} ({ADVICE[why].split(':')[0]})"
                                                 for why, n in sorted(self.rejected.items())))
        if self.loop is not None:
            c = self.loop
            out.append(f"template  frames {c.start}..{c.start + c.length - 1} ({c.length / 25:.1f} s), "
                       f"{c.mode}, seam {c.seam_ratio:.2f} of a frame change, mouth box {self.box_size} px")
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
    dataset = settings.work / "dataset"
    (dataset / "frames").mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        target = dataset / "frames" / f"{k:04d}.png"
        if not target.is_file():
            write_png(target, frame)
    np.save(dataset / "crop_boxes.npy", source.crop_boxes())
    height, width = frames[0].shape[:2]
    spec = DatasetSpec(
        source=f"real video {settings.source.name} (tools/make_avatar, mouth model)",
        seed=settings.seed, frame_size=(width, height), box_size=source.box_size,
        frames=len(frames), pairs=settings.pairs, shard_size=settings.shard_size,
        generator={"command": f"python -m tools.make_avatar --video {settings.source}",
                   "loop": {"start": choice.start, "length": choice.length, "mode": choice.mode,
                            "seam_ratio": choice.seam_ratio}},
        loop=choice.mode)
    write_pairs(dataset, spec, source, progress)
    report.seconds["dataset"] = time.monotonic() - started
    return dataset


def train_bundle(settings: BuildSettings, dataset: Path, report: BuildReport) -> Path:
    from tools.renderer.train import DEFAULT_RECIPE, build

    started = time.monotonic()
    recipe = dict(DEFAULT_RECIPE)
    feather = max(4, int(round(report.box_size * 24 / 256)))  # the default avatar's share
    recipe.update(name=settings.out.name, steps=settings.steps, threads=settings.threads,
                  seed=settings.seed, checkpoint_every=250, feather_px=feather,
                  command=f"python -m tools.make_avatar --video {settings.source} --out {settings.out} "
                          f"--steps {settings.steps} --pairs {settings.pairs}",
                  dataset_command=None, demo_audio="demo.wav")
    settings.out.mkdir(parents=True, exist_ok=True)
    if DEMO_CLIP.is_file() and not (settings.out / "demo.wav").is_file():
        shutil.copyfile(DEMO_CLIP, settings.out / "demo.wav")  # `edgemate demo --bundle` speaks it
    if build(recipe, dataset, settings.out, settings.work / "train") != 0:
        raise RuntimeError("ncnn differs from torch beyond the export's limit (see the sidecars)")
    report.seconds["train"] = time.monotonic() - started
    report.bundle = settings.out
    return settings.out
