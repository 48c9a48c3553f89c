"""Run the shipped models on fixed inputs and save every output, once per set of ncnn options.

The inputs are fixed and need nothing outside the repository: the bundle's demo clip through
the audio model (the runtime's own streaming path, `edgemate mouth`), and a fixed set of
mouth parameters on four template frames through both renderer stages and the frame path's
patch (what the viewer sees). The renderer inputs do not come from the audio model, so a
difference in one does not hide in the other.

Option sets (each model's sidecar ships its own; the others say what it buys):
    shipped        the sidecar's ncnn_options (what the runtime applies)
    ncnn_defaults  no options set: ncnn's own choice for this CPU (on ARMv8.2+ that is fp16
                   storage and arithmetic, the fastest)
    fp16_storage   fp16 storage but fp32 arithmetic (half the memory traffic)
"""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VARIANTS: dict[str, dict[str, bool] | None] = {
    "shipped": None,
    "ncnn_defaults": {},
    "fp16_storage": {"use_fp16_storage": True, "use_fp16_packed": True,
                     "use_fp16_arithmetic": False},
}


def renderer_params() -> np.ndarray:
    """(K, 6) parameter vectors: each parameter alone, open halfway, and seeded mixtures."""
    single = np.eye(6, dtype=np.float32)
    half_open = np.array([[0.5, 0, 0, 0, 0, 0]], np.float32)
    mixtures = np.random.default_rng(0).uniform(0, 1, (8, 6)).astype(np.float32)
    mixtures[:, 3] *= 0.3  # press closes the lips: mostly small in speech, as in real use
    return np.concatenate([single, half_open, mixtures])


def template_indices(count: int) -> list[int]:
    return sorted({0, count // 4, count // 2, (3 * count) // 4})


def machine_facts() -> dict:
    import ncnn

    facts = {"machine": platform.machine(), "python": platform.python_version(),
             "ncnn": getattr(ncnn, "__version__", "?"), "qemu_cpu": os.environ.get("QEMU_CPU", ""),
             "platform": sys.platform}
    for name in ("cpu_support_arm_asimdhp", "cpu_support_arm_neon", "cpu_support_x86_avx2"):
        probe = getattr(ncnn, name, None)
        facts[name] = bool(probe()) if probe else None
    return facts


def dump_audio(audio_sidecar: Path, wav: Path, options: dict | None) -> np.ndarray:
    from runtime.commands.mouth import analyze_file
    from runtime.speech.audio_model import AudioModel

    return analyze_file(wav, AudioModel(audio_sidecar, ncnn_options=options)).astype(np.float32)


def dump_renderer(bundle, params: np.ndarray, indices: list[int],
                  options: dict | None) -> dict[str, np.ndarray]:
    from runtime.quality.levels import Quality
    from runtime.quality.transition import RenderPlan
    from runtime.render.renderer import NcnnRenderer
    from tools.eval_avatar import frame_body

    renderer = NcnnRenderer(bundle, ncnn_options=options)
    body = frame_body(bundle, renderer)  # the patch exactly as the appliance makes it
    out: dict[str, list] = {"coarse": [], "fine": [], "patch_full": [], "patch_coarse": []}
    for index in indices:
        for vector in params:
            stages = renderer.stage_images(vector, index)
            out["coarse"].append(stages[Quality.COARSE])
            out["fine"].append(stages[Quality.FULL])
            for level, key in ((Quality.FULL, "patch_full"), (Quality.COARSE, "patch_coarse")):
                out[key].append(body.prepare(index, vector, RenderPlan(level)).picture.patch.copy())
    return {key: np.stack(value) for key, value in out.items()}


def dump(out_path: Path, bundle_dir: Path, audio_sidecar: Path, wav: Path | None,
         variants: list[str]) -> dict:
    from runtime.render.bundle import load_bundle
    from runtime.commands.demo import demo_clip

    started = time.monotonic()
    bundle = load_bundle(bundle_dir)
    wav = wav or demo_clip(bundle_dir)
    if wav is None:
        raise SystemExit(f"parity: {bundle_dir} names no demo_audio clip: pass --wav FILE")
    params = renderer_params()
    indices = template_indices(bundle.frame_count)
    arrays: dict[str, np.ndarray] = {
        "inputs/params": params, "inputs/template_indices": np.array(indices, np.int32)}
    seconds = {}
    for name in variants:
        options = VARIANTS[name]
        t0 = time.monotonic()
        arrays[f"{name}/audio_params"] = dump_audio(audio_sidecar, wav, options)
        for key, value in dump_renderer(bundle, params, indices, options).items():
            arrays[f"{name}/{key}"] = value
        seconds[name] = round(time.monotonic() - t0, 1)
        log.info("%s: %.1f s", name, seconds[name])
    meta = {**machine_facts(), "bundle": str(bundle_dir), "bundle_name": bundle.name,
            "audio_model": str(audio_sidecar), "wav": str(wav), "variants": variants,
            "seconds": seconds, "total_seconds": round(time.monotonic() - started, 1)}
    arrays["meta"] = np.array(json.dumps(meta))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out_path)
    return meta
