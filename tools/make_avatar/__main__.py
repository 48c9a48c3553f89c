"""python -m tools.make_avatar --video IDLE.mp4 | --photo FACE.jpg --out DIR

An avatar bundle of a real person from an idle video (mouth closed, 5-30 s) or one photo:
the face tracked on every frame (mediapipe, tools/faces/track.py), the loop that joins most
seamlessly chosen (loop.py), the mouth posed for any parameters by the explicit mouth model
(mouth_model.py), the renderer trained on those pairs and exported (tools/renderer), and the
bundle written to DIR. Needs the tools and faces extras in one environment:
pip install -e ".[tools,faces]". Resumable: run the same command again after an interruption.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from tools.avatar.dataset import DatasetError

from .build import (SPEECH_STEPS, BuildReport, BuildSettings, choose_template, train_bundle,
                    write_dataset)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.make_avatar", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--video", type=Path, help="idle video of the person, mouth closed")
    given.add_argument("--photo", type=Path, help="one frontal photo of the person")
    p.add_argument("--speech-video", type=Path, help="the same person talking (5 s or more): "
                   "real mouths for the renderer to learn, besides the mouth model's")
    p.add_argument("--speech-share", type=float, default=BuildSettings.speech_share,
                   help="share of the training pairs from the talking footage")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--work", type=Path, help="tracking, dataset and checkpoints "
                   "(default ~/.cache/edgemate/make_avatar/NAME)")
    p.add_argument("--steps", type=int, help=f"training steps (default {BuildSettings.steps}, "
                   f"with --speech-video {SPEECH_STEPS})")
    p.add_argument("--pairs", type=int, default=BuildSettings.pairs, help="training pairs")
    p.add_argument("--threads", type=int, default=BuildSettings.threads)
    p.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    source = args.video or args.photo
    work = args.work or Path.home() / ".cache" / "edgemate" / "make_avatar" / args.out.name
    steps = args.steps or (SPEECH_STEPS if args.speech_video else BuildSettings.steps)
    settings = BuildSettings(source=source, out=args.out, work=work, steps=steps,
                             pairs=args.pairs, threads=args.threads, speech_video=args.speech_video,
                             speech_share=args.speech_share)
    report = BuildReport(str(source))
    try:
        from tools.faces.track import TrackError
        from tools.avatar.make_default import _Progress
    except ImportError as err:
        print(f"make_avatar: needs the tools and faces extras ({err}): "
              'pip install -e ".[tools,faces]"', file=sys.stderr)
        return 1
    try:
        frames, points, choice = choose_template(settings, report)
        bar = _Progress(settings.pairs, "mouth-model pairs")
        dataset = write_dataset(settings, frames, points, choice, report, bar)
        bar.close()
        train_bundle(settings, dataset, report)
    except ImportError as err:
        print(f"make_avatar: needs the tools and faces extras ({err}): "
              'pip install -e ".[tools,faces]"', file=sys.stderr)
        return 1
    except (TrackError, DatasetError, RuntimeError, OSError, ValueError) as err:
        if args.debug:
            raise
        print(f"make_avatar: {err}", file=sys.stderr)
        for line in report.lines():
            print(line, file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
