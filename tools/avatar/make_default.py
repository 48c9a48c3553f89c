"""Generate the default character: template loop, mouth boxes and renderer training pairs.

    python -m tools.avatar.make_default --out DIR [--seed 0] [--pairs N] [--template-only]
        [--preview PNG] [--sheet PNG] [--strip PNG] [--scale S] [--shard-size N]

Writes DIR/frames/%04d.png (the 8 s template loop, 200 frames of 720x1280), DIR/crop_boxes.npy
and the dataset (DIR/dataset.yaml + DIR/shard_XXXX.npz; layout in tools/avatar/dataset.py).
Interrupted runs resume: finished frames and shards are kept. --preview writes template
frame 0, --sheet the mouth contact sheet (each parameter swept alone, then combinations),
--strip frames 0, 50, 100, 150, 199 and a blink; these work without --out too.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from .dataset import FRAME_PATTERN, DatasetError, DatasetSpec, check_identity, write_manifest, write_pairs
from .png import write_png
from .scene import AvatarSettings, DefaultAvatar
from .sheets import loop_strip, mouth_sheet

log = logging.getLogger(__name__)

SOURCE = "procedural default character"


class _Progress:
    """tqdm when installed, else a plain line on stderr every few percent. `total` None (or
    0): not known (a video whose frame count the container does not say): counts only."""

    def __init__(self, total: int | None, desc: str) -> None:
        total = total if total and total > 0 else None
        self.total, self.desc, self.n, self._shown = total, desc, 0, -1
        try:
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)
        except ImportError:
            self._bar = None

    def __call__(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return
        if self.total is None:
            if self.n // 50 != self._shown // 50:
                self._shown = self.n
                print(f"\r{self.desc}: {self.n}", end="", file=sys.stderr, flush=True)
            return
        pct = 100 * self.n // self.total
        if pct // 5 != self._shown // 5 or self.n == self.total:
            self._shown = pct
            print(f"\r{self.desc}: {self.n}/{self.total} ({pct}%)", end="\n" if self.n >= self.total else "",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.total is None and self.n:
            print(f"\r{self.desc}: {self.n}", file=sys.stderr, flush=True)


def write_template(out: Path, avatar: DefaultAvatar) -> float:
    """Frames as PNG (missing ones only) and crop_boxes.npy; returns ms per rendered frame."""
    (out / "frames").mkdir(parents=True, exist_ok=True)
    todo = [k for k in range(avatar.count) if not (out / (FRAME_PATTERN % k)).is_file()]
    bar = _Progress(avatar.count, "template frames")
    bar(avatar.count - len(todo))
    spent = 0.0
    for k in todo:
        start = time.perf_counter()
        frame = avatar.render_frame(k)
        spent += time.perf_counter() - start
        write_png(out / (FRAME_PATTERN % k), frame, level=9)  # atomic: a torn frame is never "done"
        bar()
    bar.close()
    np.save(out / "crop_boxes.npy", avatar.crop_boxes())
    return 1000.0 * spent / len(todo) if todo else float("nan")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.avatar.make_default", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="output directory (template, crop boxes, dataset)")
    p.add_argument("--seed", type=int, default=0, help="character variant and pair sampling (default 0)")
    p.add_argument("--pairs", type=int, default=4096, help="training pairs to write (default 4096)")
    p.add_argument("--shard-size", type=int, default=512, help="pairs per shard (default 512)")
    p.add_argument("--template-only", action="store_true", help="write the template loop and boxes only")
    p.add_argument("--preview", type=Path, help="write template frame 0 as PNG")
    p.add_argument("--sheet", type=Path, help="write the mouth contact sheet as PNG")
    p.add_argument("--strip", type=Path, help="write a strip of template frames as PNG")
    p.add_argument("--scale", type=float, default=1.0, help="resolution factor (1 = 720x1280; tests use 0.25)")
    p.add_argument("--frames", type=int, default=200, help="template loop length at 25 fps (default 200)")
    p.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.out is None and not (args.preview or args.sheet or args.strip):
        _parser().error("--out is required unless only --preview/--sheet/--strip are asked for")
    if args.pairs < 0 or args.shard_size < 1 or args.frames < 2 or not 0.05 <= args.scale <= 2.0:
        _parser().error("need --pairs >= 0, --shard-size >= 1, --frames >= 2, 0.05 <= --scale <= 2")
    settings = AvatarSettings(seed=args.seed, scale=args.scale, frames=args.frames)
    try:
        avatar = DefaultAvatar(settings)
        for path, make in ((args.preview, lambda: avatar.render_frame(0)), (args.sheet, lambda: mouth_sheet(avatar)),
                           (args.strip, lambda: loop_strip(avatar))):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_png(path, make())
                log.info("wrote %s", path)
        if args.out is None:
            return 0
        pairs = 0 if args.template_only else args.pairs
        spec = DatasetSpec(
            source=SOURCE, seed=args.seed, frame_size=settings.frame_size, box_size=settings.box,
            frames=args.frames, pairs=pairs, shard_size=args.shard_size,
            generator={"command": "python -m tools.avatar.make_default " + " ".join(
                           f"--{k} {v}" for k, v in (("seed", args.seed), ("pairs", pairs), ("scale", args.scale),
                                                     ("frames", args.frames), ("shard-size", args.shard_size))),
                       "design_size": [720, 1280], "scale": args.scale})
        args.out.mkdir(parents=True, exist_ok=True)
        check_identity(args.out, spec)
        frame_ms = write_template(args.out, avatar)
        write_manifest(args.out, spec, {})
        if pairs:
            bar = _Progress(pairs, "training pairs")
            start = time.perf_counter()
            write_pairs(args.out, spec, avatar, progress=bar)
            bar.close()
            log.info("pairs: %.1f ms each on average, shard compression included",
                     1000.0 * (time.perf_counter() - start) / pairs)
        if frame_ms == frame_ms:  # not NaN: some frames were rendered this run
            log.info("template: %.0f ms per full frame (render only)", frame_ms)
        log.info("done: %s", args.out)
        return 0
    except (DatasetError, OSError, ValueError) as err:
        if args.debug:
            raise
        print(f"make_default_avatar: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
