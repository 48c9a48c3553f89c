"""`edgemate bench`: the real pipeline measured per stage, uncapped and held at 25 fps.

Report fields (JSON with --json): stages_ms {stage: {p50, p95, n}}, uncapped_fps {full,
coarse}, steady {seconds, delivered_fps, dropped, max_av_offset_ms, cpu_percent_one_core},
rss_mb (peak), start_to_first_frame_s, governor {enabled, switches [{t, from, to, reason}],
time_at_level_s, switch_count}, stress (with --stress / --thermal-ramp: workers, phases
[{name, delivered_fps, dropped, max_av_offset_ms, ...}], thermal_ramp), cotenants (with
--stress PROFILES: [{profile, delivered_fps, dropped, dropped_own_cost, dropped_preempted,
time_at_level_s, switches, max_av_offset_ms, lip_sync_r, speech_at_coarse_or_better, ...}]).
Later issues add
fields; none is removed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from runtime import FPS, SAMPLE_RATE, __version__
from .cpu_meter import OtherProcessesCpu
from .demo import demo_clip
from .load_workers import cpu_seconds


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


def _uncapped_fps(appliance, level, frames: int) -> float:
    """The appliance's own frame body (render, composite, present) as fast as it goes, with
    moving, non-rest params at a fixed level."""
    from runtime.pipeline.frame_body import FrameBody
    from runtime.quality.transition import RenderPlan
    rng = np.random.default_rng(1)
    body = FrameBody(appliance.bundle, appliance.renderer, appliance.compositor, appliance.timer)
    sink, plan = appliance.sink, RenderPlan(level)
    params = rng.uniform(0.05, 0.9, (frames, 6)).astype(np.float32)
    start = time.perf_counter()
    for k in range(frames):
        body.show(body.prepare(k, params[k], plan), sink)
    return round(frames / (time.perf_counter() - start), 1)


def run_bench(args: argparse.Namespace, load: Callable, started_at: float) -> int:
    """`started_at`: the process's start (monotonic), for the startup figures."""
    from runtime.pipeline.appliance import Appliance
    from runtime.quality.levels import Quality
    from .stress import StressPlan, StressRun

    probe = load(args)
    # Recovery must see both step-ups, after heat too (thermal_dwell_s is the longer wait).
    plan = StressPlan.from_args(args, max(probe.governor.dwell_s, probe.governor.thermal_dwell_s))
    seconds = plan.total_s if plan is not None else (args.seconds or 10.0)
    with contextlib.ExitStack() as cleanup:
        stress = None
        if plan is not None:
            stress = StressRun(plan)  # writes the ramp's first temperature
            cleanup.callback(stress.cleanup)
        clip = args.audio or demo_clip(probe.avatar.bundle)
        if clip is None:
            from runtime.audio.wav import write_wav
            tmp = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="edgemate-bench-"))
            clip = Path(tmp) / "speech_like.wav"
            write_wav(clip, speech_like(20.0), SAMPLE_RATE)
        extra = [f"audio.files.playlist=[{Path(clip).resolve()}]", "audio.source=files",
                 "audio.files.loop=true", "audio.files.gap_s=0.3",
                 f"run.duration_s={seconds}", "audio.playback.enabled=false"]
        if not any(o.startswith("display.sink=") for o in args.overrides):
            extra.append("display.sink=null")
        if plan is not None and plan.ramp_file is not None:
            extra.append(f"governor.sensors.temperature_file={plan.ramp_file}")
        config = load(args, extra)
        appliance = Appliance(config, started_at=started_at,
                              tick=stress.tick if stress is not None else None)
        cleanup.callback(appliance.close)
        appliance.load()
        appliance.open()
        others = OtherProcessesCpu()
        others.start()
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        with stress.running(appliance) if stress is not None else contextlib.nullcontext():
            report = appliance.run()
        cpu_s, wall_s = cpu_seconds() - cpu0, time.monotonic() - wall0
        others.stop()  # before close: the encoder is still a live child
        sink_info = _sink_report(appliance)
        governor = _governor_report(appliance, wall_s)
        stages = appliance.timer.summary_ms()
        uncapped = {level.label: _uncapped_fps(appliance, level, args.frames)
                    for level in (Quality.FULL, Quality.COARSE)}
        appliance.close()
        cotenants = None
        if isinstance(args.stress, tuple):
            from .bench_cotenants import run_profiles
            once = [o for o in extra if not o.startswith("run.duration_s=")]
            cotenants = run_profiles(args, load, args.stress, Path(clip), once, started_at)
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
                   "cpu_percent_one_core": round(100 * cpu_s / wall_s, 1) if wall_s else 0.0,
                   "cpu_percent_children": _percent(others.children_s, wall_s),
                   # The display server works for the window sink only.
                   "cpu_percent_display_server": (_percent(others.display_server_s, wall_s)
                                                  if sink_info["kind"] == "window" else None)},
        "sink": sink_info,
        "frame_ms": _frame_ms(stages),
        "rss_mb": _peak_rss_mb(),
        "start_to_first_frame_s": round(report.start_to_first_frame_s or 0.0, 3),
        "governor": governor,
        "stress": plan.as_dict() if plan is not None else None,
        "cotenants": cotenants,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


def _governor_report(appliance, wall_s: float) -> dict:
    """Every switch and the time at each level; a fixed level spends the whole run there."""
    snapshot = getattr(appliance.quality, "snapshot", None)
    if snapshot is not None:
        state = snapshot(last=None)
        return {"enabled": True, "switches": state["switches"],
                "switch_count": state["switch_count"],
                "time_at_level_s": state["time_at_level_s"],
                "settings": {key: getattr(appliance.config.governor, key) for key in
                             ("hot_c", "critical_c", "cool_c", "dwell_s", "refractory_s")}}
    level = appliance.quality.level().label
    return {"enabled": False, "switches": [], "switch_count": 0,
            "time_at_level_s": {name: round(wall_s, 2) if name == level else 0.0
                                for name in ("full", "coarse", "pass")}}


def _percent(seconds: float | None, wall_s: float) -> float | None:
    return None if seconds is None or not wall_s else round(100 * seconds / wall_s, 1)


def _sink_report(appliance) -> dict:
    """Which sink ran, at what size, and (window) which screen path and why."""
    sink = appliance.sink
    info: dict = {"kind": sink.name}
    window = getattr(sink, "_window", None)
    if window is not None:
        info.update(screen=list(window.size), shown_at=list(sink.shown_at),
                    path=sink.screen_path, path_reason=sink.screen_path_reason,
                    scale_filter=sink.scale_filter if sink.screen_path == "surface" else None,
                    redraw=sink.redraw_mode)
    return info


def _frame_ms(stages: dict) -> dict | None:
    """The whole frame: the frame thread's busy time, plus the audio work one frame needs
    (features and the audio model run in the ingest thread, once per 40 ms step)."""
    frame = stages.get("frame")
    if frame is None:
        return None
    audio = {}
    for key in ("p50", "p95"):
        per_step = 0.0
        steps = max(1, stages.get("audio_model", {}).get("n", 1))
        for stage in ("features", "audio_model"):
            row = stages.get(stage)
            if row:
                per_step += row[key] * row["n"] / steps
        audio[key] = per_step
    return {"p50": round(frame["p50"] + audio["p50"], 3), "p95": round(frame["p95"] + audio["p95"], 3),
            "frame_thread_p50": frame["p50"], "audio_per_frame_p50": round(audio["p50"], 3)}


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
    frame = result["frame_ms"]
    if frame:
        out.write(f"whole frame (frame thread + audio per frame): p50 {frame['p50']:.3f} ms, "
                  f"p95 {frame['p95']:.3f} ms\n")
    for level, fps in result["uncapped_fps"].items():
        out.write(f"uncapped fps at {level}: {fps}\n")
    sink = result["sink"]
    line = f"sink: {sink['kind']}"
    if sink.get("path"):
        line += (f", screen {sink['screen'][0]}x{sink['screen'][1]}, path {sink['path']}"
                 f" ({sink['path_reason']}), redraws {sink['redraw']}")
    out.write(line + "\n")
    steady = result["steady"]

    def seen(value):
        return "not seen" if value is None else f"{value}%"
    out.write(f"at 25 fps: delivered {steady['delivered_fps']} fps, dropped {steady['dropped']}, "
              f"max picture-to-sound offset {steady['max_av_offset_ms']} ms, "
              f"CPU {steady['cpu_percent_one_core']}% of one core, + child processes "
              f"{seen(steady['cpu_percent_children'])}, + display server "
              f"{seen(steady['cpu_percent_display_server'])}\n")
    out.write(f"peak RSS {result['rss_mb']} MB; start to first frame "
              f"{result['start_to_first_frame_s']} s\n")
    governor = result["governor"]
    out.write(f"governor: {'on' if governor['enabled'] else 'off (fixed level)'}, "
              f"{governor['switch_count']} switches; time at level "
              + ", ".join(f"{level} {seconds} s" for level, seconds
                          in governor["time_at_level_s"].items()) + "\n")
    for switch in governor["switches"]:
        out.write(f"  {switch['t']:8.2f} s  {switch['from']:>6} -> {switch['to']:<6} "
                  f"{switch['reason']}\n")
    if result["cotenants"]:
        from .bench_cotenants import print_profiles
        print_profiles(result["cotenants"], out)
    stress = result["stress"]
    if stress:
        out.write(f"stress: {stress['workers']} load workers\n")
        for phase in stress["phases"]:
            out.write(f"  {phase['name']:<8} {phase['start_s']:6.1f}-{phase['end_s']:6.1f} s: "
                      f"delivered {phase['delivered_fps']} fps, dropped {phase['dropped']}, "
                      f"max offset {phase['max_av_offset_ms']} ms\n")
