"""Cost per stage: multiply-adds from the model sidecars, milliseconds from `edgemate bench`.

The sidecars of trained stages carry `network: {macs, parameters, layers}` (written by the
exporter); fixtures and older bundles do not, and the report says "not recorded" instead of
guessing. Timings come from the runtime's own benchmark, run as a subprocess with one ncnn
thread, so they are the appliance's numbers and not this tool's.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from runtime.models.ncnn_model import load_sidecar
from runtime.render.bundle import AvatarBundle

log = logging.getLogger(__name__)

BENCH_THREADS = 1
REPO = Path(__file__).resolve().parents[3]


def model_facts(bundle: AvatarBundle) -> dict:
    """Per stage: sidecar, sha256 of both files, fixture flag, network {macs, parameters, layers}."""
    out = {}
    for stage, path in (("coarse", bundle.coarse_sidecar), ("fine", bundle.fine_sidecar)):
        sidecar = load_sidecar(path, stage)
        network = sidecar.extra.get("network")
        facts = {"sidecar": path.name, "param_sha256": sidecar.param_sha256,
                 "bin_sha256": sidecar.bin_sha256, "fixture": sidecar.fixture, "network": None}
        if isinstance(network, dict):
            facts["network"] = {key: network.get(key) for key in ("macs", "parameters", "layers")}
        out[stage] = facts
    macs = [out[s]["network"]["macs"] if out[s]["network"] else None for s in ("coarse", "fine")]
    out["macs_per_level"] = {
        "coarse": macs[0],
        "full": macs[0] + macs[1] if all(isinstance(m, int) for m in macs) else None}
    return out


def bench_command(bundle_dir: Path, seconds: float, audio_model: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "runtime", "bench", "--bundle", str(bundle_dir.resolve()), "--json",
           "--seconds", f"{seconds:g}", "--set", f"models.threads={BENCH_THREADS}"]
    if audio_model is not None:
        cmd += ["--audio-model", str(audio_model.resolve())]
    return cmd


def run_bench(bundle_dir: Path, seconds: float, audio_model: Path | None, timeout_s: float = 600.0) -> dict:
    """{status: ok, stages_ms, uncapped_fps, ...} or {status: failed, error}; never raises."""
    cmd = bench_command(bundle_dir, seconds, audio_model)
    shown = "edgemate " + " ".join(cmd[3:])
    log.info("running %s", shown)
    try:
        # From the repository root, so `-m runtime` is this checkout's runtime even when the
        # package is not installed.
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"status": "failed", "command": shown, "error": str(err).splitlines()[0]}
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return {"status": "failed", "command": shown,
                "error": f"exit {done.returncode}: {lines[-1] if lines else 'no message'}"}
    try:
        report = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        return {"status": "failed", "command": shown, "error": "bench printed no JSON report"}
    return {"status": "ok", "command": shown, "threads": report.get("models", {}).get("threads"),
            "fixtures": report.get("models", {}).get("fixtures"),
            "stages_ms": report.get("stages_ms", {}), "uncapped_fps": report.get("uncapped_fps", {}),
            "machine": report.get("machine", {})}
