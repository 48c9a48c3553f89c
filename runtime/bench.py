"""`edgemate bench`: the real pipeline measured per stage, uncapped and held at 25 fps.

Report fields (JSON with --json): stages_ms {stage: {p50, p95, n}}, uncapped_fps {full,
coarse}, steady {seconds, delivered_fps, dropped, max_av_offset_ms, cpu_percent_one_core},
rss_mb (peak), start_to_first_frame_s. Later issues add fields; none is removed.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import FPS, SAMPLE_RATE, __version__
from .demo import demo_clip

log = logging.getLogger(__name__)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-rate voiced bursts with pauses: drives the audio model like speech does."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 40))
    breath = rng.normal(0, 0.3, t.size)  # broadband, like fricatives: fills the upper mel bins
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
    phrases = (np.sin(2 * np.pi * 0.25 * t) > -0.3).astype(np.float32)  # pauses between phrases
    return np.clip(0.3 * (voice + breath) * syllables * phrases, -1, 1).astype(np.float32)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if platform.system() == "Darwin" else peak / 1024, 1)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _uncapped_fps(appliance, level, frames: int) -> float:
    """Render + composite + present as fast as possible with moving, non-rest params."""
    rng = np.random.default_rng(1)
    bundle = appliance.bundle
    params = rng.uniform(0.05, 0.9, (frames, 6)).astype(np.float32)
    start = time.perf_counter()
    for k in range(frames):
        index = k % bundle.frame_count
        crop = appliance.renderer.render(params[k], index, level)
        x, y = bundle.crop_boxes[index]
        image, dirty = appliance.compositor.compose(bundle.frames[index], crop, int(x), int(y), template_key=index)
        appliance.sink.present(image, k, dirty)
    return round(frames / (time.perf_counter() - start), 1)


def run_bench(args: argparse.Namespace, load: Callable) -> int:
    from .cli import _STARTED_AT
    from .pipeline import Appliance
    from .render.renderer import Quality

    probe = load(args)
    clip = args.audio or demo_clip(probe.avatar.bundle)
    tmp = None
    if clip is None:
        from .audio.wav import write_wav
        tmp = tempfile.TemporaryDirectory(prefix="edgemate-bench-")
        clip = Path(tmp.name) / "speech_like.wav"
        write_wav(clip, speech_like(20.0), SAMPLE_RATE)
    config = load(args, [f"audio.files.playlist=[{Path(clip).resolve()}]", "audio.source=files",
                         "audio.files.loop=true", "audio.files.gap_s=0.3",
                         f"run.duration_s={args.seconds}", "audio.playback.enabled=false"]
                  + ([] if any(o.startswith("display.sink=") for o in args.overrides)
                     else ["display.sink=null"]))
    appliance = Appliance(config, started_at=_STARTED_AT)
    try:
        appliance.load()
        appliance.open()
        cpu0, wall0 = _cpu_s(), time.monotonic()
        report = appliance.run()
        cpu_s, wall_s = _cpu_s() - cpu0, time.monotonic() - wall0
        stages = appliance.timer.summary_ms()
        uncapped = {level.label: _uncapped_fps(appliance, level, args.frames)
                    for level in (Quality.FULL, Quality.COARSE)}
    finally:
        appliance.close()
        if tmp is not None:
            tmp.cleanup()
    result = {
        "edgemate": __version__,
        "machine": {"system": platform.system(), "machine": platform.machine(),
                    "python": platform.python_version(), "cpus": _cpu_count()},
        "models": {"audio": str(config.models.audio), "avatar": str(config.avatar.bundle),
                   "fixtures": bool(appliance.bundle.fixture or appliance.analyzer.model.sidecar.fixture),
                   "threads": config.models.threads, "quality": config.render.quality},
        "stages_ms": stages,
        "uncapped_fps": uncapped,
        "steady": {"fps_target": FPS, "seconds": round(wall_s, 2), "shown": report.frames_shown,
                   "delivered_fps": round(report.frames_shown / wall_s, 2) if wall_s else 0.0,
                   "dropped": report.frames_dropped, "max_av_offset_ms": report.max_av_offset_ms,
                   "cpu_percent_one_core": round(100 * cpu_s / wall_s, 1) if wall_s else 0.0},
        "rss_mb": _peak_rss_mb(),
        "start_to_first_frame_s": round(report.start_to_first_frame_s or 0.0, 3),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


def _cpu_count() -> int:
    import os
    return os.cpu_count() or 1


def _print_table(result: dict) -> None:
    out = sys.stdout
    if result["models"]["fixtures"]:
        out.write("NOTE: measured on TEST FIXTURE models, not the product models\n")
    out.write(f"{'stage':<12} {'p50 ms':>8} {'p95 ms':>8} {'n':>7}\n")
    for stage, row in result["stages_ms"].items():
        out.write(f"{stage:<12} {row['p50']:>8.3f} {row['p95']:>8.3f} {row['n']:>7}\n")
    for level, fps in result["uncapped_fps"].items():
        out.write(f"uncapped fps at {level}: {fps}\n")
    steady = result["steady"]
    out.write(f"at 25 fps: delivered {steady['delivered_fps']} fps, dropped {steady['dropped']}, "
              f"max picture-to-sound offset {steady['max_av_offset_ms']} ms, "
              f"CPU {steady['cpu_percent_one_core']}% of one core\n")
    out.write(f"peak RSS {result['rss_mb']} MB; start to first frame "
              f"{result['start_to_first_frame_s']} s\n")
