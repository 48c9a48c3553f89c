"""`edgemate demo`: the default avatar speaking its bundled clip; a window, else a video file."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from runtime.system.paths import data_dir


DEFAULT_BUNDLE = Path("models") / "avatars" / "default"
DEMO_RECORDING = "edgemate-demo.mp4"

NO_DEFAULT_AVATAR = """\
edgemate demo: no default avatar is installed ({missing} is missing).
It ships with EdgeMate (models/avatars/default): reinstall, point --bundle at an avatar
bundle, or rebuild it from a source checkout with: python -m tools.renderer.train --rebuild"""


def demo_clip(bundle_dir: Path) -> Path | None:
    """The bundle's `demo_audio` WAV, if it names one that exists."""
    try:
        doc = yaml.safe_load((bundle_dir / "avatar.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    name = doc.get("demo_audio") if isinstance(doc, dict) else None
    clip = bundle_dir / str(name) if name else None
    return clip if clip is not None and clip.is_file() else None


def demo_overrides(args: argparse.Namespace) -> list[str] | None:
    """Config overrides that make `run` the demo; None (after saying why) if it cannot run."""
    bundle = args.bundle.resolve() if args.bundle else data_dir() / DEFAULT_BUNDLE
    if not (bundle / "avatar.yaml").is_file():
        print(NO_DEFAULT_AVATAR.format(missing=bundle / "avatar.yaml"), file=sys.stderr)
        return None
    clip = demo_clip(bundle)
    if clip is None:
        print(f"edgemate demo: the avatar bundle {bundle} names no demo_audio clip", file=sys.stderr)
        return None
    record = args.record.resolve() if args.record else Path(DEMO_RECORDING).resolve()
    overrides = [f"avatar.bundle={bundle}", "audio.source=files", f"audio.files.playlist=[{clip}]",
                 "audio.files.loop=false", "audio.files.on_end=exit",
                 f"display.record.path={record}", "display.fallback=record"]
    if args.record:
        overrides.append("display.sink=record")
    else:
        # Sound too, where there is a speaker; without one the picture runs on its own clock.
        overrides.append("audio.playback.enabled=true")
    return overrides
