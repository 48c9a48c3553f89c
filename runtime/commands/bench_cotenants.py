"""`edgemate bench --stress PROFILE[,PROFILE]`: the appliance beside a co-tenant, per profile.

Each profile (runtime/commands/cotenants.py) runs the whole clip once through a fresh appliance, as a
box that just booted would, with the co-tenant started a second before the first frame.
Per profile: delivered fps, drops (own cost vs pre-empted), time at each level, switches,
max picture-to-sound offset, and whether lip sync was kept (runtime/commands/lipsync_meter.py).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

from runtime.audio.wav import read_wav
from .cotenants import CoTenant
from .lipsync_meter import LipSyncMeter
from .load_workers import allowed_cores, cpu_seconds

log = logging.getLogger(__name__)

#: The co-tenant's head start before the first frame: its load is there from the start.
_HEAD_START_S = 1.0


def _second_appliance_argv(args: argparse.Namespace, config, clip: Path,
                           seconds: float) -> list[str]:
    """`edgemate run` on the same models: files source, null sink, no sockets, no speaker."""
    argv = ["run"]
    if getattr(args, "config", None):
        argv += ["-c", str(args.config)]
    argv += ["--bundle", str(config.avatar.bundle), "--audio-model", str(config.models.audio)]
    for override in [*args.overrides, "audio.source=files", f"audio.files.playlist=[{clip}]",
                     "audio.files.loop=true", "audio.files.gap_s=0.3", "display.sink=null",
                     "audio.playback.enabled=false", "control.enabled=false",
                     f"run.duration_s={seconds + 30}"]:
        argv += ["--set", override]
    return argv


def run_profiles(args: argparse.Namespace, load: Callable, profiles: Sequence[str],
                 clip: Path, extra: Sequence[str], started_at: float) -> list[dict]:
    from runtime.pipeline.appliance import Appliance
    samples, rate = read_wav(clip)
    seconds = round(len(samples) / rate, 2)
    del samples
    rows = []
    for profile in profiles:
        config = load(args, [*extra, f"run.duration_s={seconds}"])
        tenant = CoTenant(profile, allowed_cores(),
                          _second_appliance_argv(args, config, Path(clip).resolve(), seconds))
        meter = LipSyncMeter()
        appliance = None
        children0, tenant0 = cpu_seconds(children=True), time.monotonic()
        try:
            tenant.start()
            if tenant.procs:
                time.sleep(_HEAD_START_S)
            appliance = Appliance(config, started_at=started_at, on_frame=meter)
            appliance.load()
            meter.attach(appliance.bundle)
            appliance.open()
            cpu0, wall0 = cpu_seconds(), time.monotonic()
            report = appliance.run()
            cpu_s, wall_s = cpu_seconds() - cpu0, time.monotonic() - wall0
        finally:
            tenant.stop()
            if appliance is not None:
                appliance.close()
        # Waited-for children only: the co-tenant's processes (and theirs), not ours.
        share = (cpu_seconds(children=True) - children0) / (time.monotonic() - tenant0) / tenant.cores
        rows.append({**_row(profile, tenant, appliance, report, meter, wall_s, cpu_s),
                     "cotenant_cpu_percent_all_cores": round(100 * share, 1)})
        log.info("co-tenant %s: %s", profile, rows[-1])
    return rows


def _row(profile, tenant, appliance, report, meter, wall_s: float, cpu_s: float) -> dict:
    snapshot = getattr(appliance.quality, "snapshot", None)
    state = snapshot(last=None) if snapshot is not None else None
    if state is not None:
        spent = state["time_at_level_s"]
        switches = state["switches"]
    else:
        level = appliance.quality.level().label
        spent = {name: round(wall_s, 2) if name == level else 0.0
                 for name in ("full", "coarse", "pass")}
        switches = []
    return {"profile": profile, "note": tenant.note, "seconds": round(wall_s, 2),
            "shown": report.frames_shown,
            "delivered_fps": round(report.frames_shown / wall_s, 2) if wall_s else 0.0,
            "dropped": report.frames_dropped,
            "dropped_own_cost": report.frames_dropped - report.frames_preempted,
            "dropped_preempted": report.frames_preempted,
            "max_av_offset_ms": report.max_av_offset_ms,
            "cpu_percent_one_core": round(100 * cpu_s / wall_s, 1) if wall_s else 0.0,
            "time_at_level_s": spent, "switches": switches,
            "deferred_switch_frames": appliance.loop.transition.deferred_frames
            if appliance.loop is not None else 0,
            **meter.summary()}


def print_profiles(rows: list[dict], out) -> None:
    out.write("co-tenant  its CPU   fps    drops (own/pre-empted)  max offset  "
              "at full/coarse/pass s  speech >= coarse  lip-sync r  switches\n")
    for row in rows:
        spent = row["time_at_level_s"]
        r = "n/a" if row["lip_sync_r"] is None else f"{row['lip_sync_r']:.3f}"
        kept = row["speech_at_coarse_or_better"]
        out.write(f"{row['profile']:<10} {row['cotenant_cpu_percent_all_cores']:>5.1f} %  "
                  f"{row['delivered_fps']:>6.2f}  "
                  f"{row['dropped']:>5} ({row['dropped_own_cost']}/{row['dropped_preempted']})"
                  f"{'':<12}{row['max_av_offset_ms']:>6.1f} ms  "
                  f"{spent['full']:>5.1f}/{spent['coarse']:.1f}/{spent['pass']:.1f}"
                  f"{'':<10}{'n/a' if kept is None else f'{100 * kept:.1f} %':>8}  "
                  f"{r:>10}  {len(row['switches'])}\n")
        for switch in row["switches"]:
            out.write(f"    {switch['t']:8.2f} s  {switch['from']:>6} -> {switch['to']:<6} "
                      f"{switch['reason']}\n")
        if row["note"]:
            out.write(f"    note: {row['note']}\n")
