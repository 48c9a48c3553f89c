"""Renderer export: pnnx -> ncnn for both stages, their sidecars, the ncnn-vs-torch parity
check through the runtime's own loader, and the avatar bundle directory around them.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import yaml

from runtime.models.ncnn_model import sha256_file

from tools.export.pnnx import export_to_ncnn
from .net import CoarseNet, FineNet, area_down, count_macs, param_count

log = logging.getLogger(__name__)

#: The issue's parity bound: max |ncnn - torch| on a [0, 1] image.
PARITY_LIMIT = 2.0 / 255.0
#: A newly exported renderer runs fp32 everywhere until it is measured on ARM: fp16 arithmetic
#: moved the default avatar's lip edges by up to 16 grey levels (>= 53.8 dB, docs/PLATFORMS.md),
#: another net may move more. After `sudo tools/arm64_check.sh --bundle DIR` holds the goals,
#: its sidecars may allow fp16 as the default avatar's do.
FP32_OPTIONS = {"use_fp16_storage": False, "use_fp16_arithmetic": False, "use_fp16_packed": False}


def _write_sidecar(out_dir: Path, name: str, kind: str, inputs: dict, output_shape: list[int],
                   network: dict, recipe: Mapping[str, Any], header: str) -> Path:
    doc = {
        "schema": 1, "name": name, "kind": kind, "fixture": False,
        "files": {"param": {"path": f"{name}.ncnn.param", "sha256": sha256_file(out_dir / f"{name}.ncnn.param")},
                  "bin": {"path": f"{name}.ncnn.bin", "sha256": sha256_file(out_dir / f"{name}.ncnn.bin")}},
        "inputs": inputs,
        "outputs": {"image": {"blob": "out0", "shape": output_shape,
                              "meaning": "RGB in [0, 1] (clip); the runtime adds its change from the "
                                         "template to the box: box = T + up(image - template_crop)"}},
        "ncnn_options": dict(FP32_OPTIONS),
        "network": network,
        "recipe": dict(recipe),
    }
    path = out_dir / f"{name}.yaml"
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def export_stages(coarse: CoarseNet, fine: FineNet, out_dir: Path, recipe: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write coarse.ncnn.* + coarse.yaml and fine.ncnn.* + fine.yaml into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cs, fs = coarse.size, fine.size
    torch.manual_seed(0)
    t_coarse, t_fine, params = torch.rand(1, 3, cs, cs), torch.rand(1, 3, fs, fs), torch.rand(1, 6)
    coarse, fine = coarse.eval(), fine.eval()
    with torch.no_grad():
        image = coarse(t_coarse, params)
    export_to_ncnn(coarse, (t_coarse, params), out_dir, "coarse")
    export_to_ncnn(fine, (image, t_fine, params), out_dir, "fine")
    header = "# Avatar renderer stage, written by tools/renderer/export.py; rebuild with the recipe's command.\n"
    params_in = {"blob": None, "shape": [6], "meaning": "open, wide, round, press, bite, teeth in [0, 1] "
                                                        "(open already scaled by calibration.open_scale)"}
    coarse_path = _write_sidecar(
        out_dir, "coarse", "coarse",
        {"template_crop": {"blob": "in0", "shape": [3, cs, cs],
                           "meaning": f"template frame's mouth box, area-averaged to {cs} px, RGB [0, 1]"},
         "params": {**params_in, "blob": "in1"}},
        [3, cs, cs],
        {"layers": "3 stride-2 convs, FiLM by the params -> U-Net decoder -> flow, paint, weight; grid_sample warp",
         "size": cs, "macs": count_macs(coarse, t_coarse, params), "parameters": param_count(coarse)},
        recipe, header)
    fine_path = _write_sidecar(
        out_dir, "fine", "fine",
        {"coarse_image": {"blob": "in0", "shape": [3, cs, cs], "meaning": "the coarse stage's image"},
         "template_crop": {"blob": "in1", "shape": [3, fs, fs],
                           "meaning": f"template frame's mouth box, area-averaged to {fs} px, RGB [0, 1]"},
         "params": {**params_in, "blob": "in2"}},
        [3, fs, fs],
        {"layers": "2 stride-2 convs + param code -> 2 convs -> pixel shuffle U-Net -> keep/detail",
         "size": fs, "macs": count_macs(fine, image, t_fine, params), "parameters": param_count(fine)},
        recipe, header)
    log.info("exported %s and %s", coarse_path, fine_path)
    return coarse_path, fine_path


def parity(coarse: CoarseNet, fine: FineNet, coarse_sidecar: Path, fine_sidecar: Path,
           templates: torch.Tensor, params: torch.Tensor) -> dict[str, float]:
    """Max |ncnn - torch| per stage on real rows (box templates in [0, 1], their params), run
    through the runtime's NcnnModel (sha256 check included). Each stage gets the same inputs
    on both sides; `chained` feeds ncnn's coarse image to ncnn's fine stage."""
    from runtime.models.ncnn_model import NcnnModel, load_sidecar

    ncnn_coarse = NcnnModel(load_sidecar(coarse_sidecar, "coarse"))
    ncnn_fine = NcnnModel(load_sidecar(fine_sidecar, "fine"))
    worst = {"coarse": 0.0, "fine": 0.0, "chained": 0.0}
    coarse, fine = coarse.eval(), fine.eval()
    with torch.no_grad():
        for box, p in zip(templates, params):
            tc = area_down(box[None], coarse.size)
            tf = area_down(box[None], fine.size)
            c_ref = coarse(tc, p[None])
            f_ref = fine(c_ref, tf, p[None])
            np_tc, np_tf = tc[0].numpy().copy(), tf[0].numpy().copy()
            np_p, np_c = p.numpy().astype(np.float32).copy(), c_ref[0].numpy().copy()
            c_out = ncnn_coarse.run({"template_crop": np_tc, "params": np_p}, ("image",))["image"]
            f_out = ncnn_fine.run({"coarse_image": np_c, "template_crop": np_tf, "params": np_p}, ("image",))["image"]
            chained = ncnn_fine.run({"coarse_image": np.ascontiguousarray(c_out.reshape(np_c.shape)),
                                     "template_crop": np_tf, "params": np_p}, ("image",))["image"]
            worst["coarse"] = max(worst["coarse"], float(np.abs(c_out.reshape(np_c.shape) - np_c).max()))
            ref = f_ref[0].numpy()
            worst["fine"] = max(worst["fine"], float(np.abs(f_out.reshape(ref.shape) - ref).max()))
            worst["chained"] = max(worst["chained"], float(np.abs(chained.reshape(ref.shape) - ref).max()))
    return worst


def write_bundle(out: Path, dataset: Path, manifest: dict, name: str, coarse_size: int, crop_size: int,
                 feather_px: int, recipe: Mapping[str, Any], demo_audio: str | None) -> Path:
    """avatar.yaml (+ template frames and crop boxes copied from the dataset) around the
    already exported coarse/fine models in `out`."""
    template = manifest["template"]
    pattern = str(template["frames"])
    count = int(template["count"])
    hashes = {}
    for k in range(count):
        rel = pattern % k
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if dataset.resolve() != out.resolve():
            shutil.copyfile(dataset / rel, target)
        hashes[rel] = sha256_file(target)
    boxes = str(template["crop_boxes"])
    if dataset.resolve() != out.resolve():
        shutil.copyfile(dataset / boxes, out / boxes)
    hashes[boxes] = sha256_file(out / boxes)
    generator = manifest.get("generator") or {}
    doc = {
        "schema": 1, "name": name, "fixture": False, "fps": int(manifest.get("fps", 25)),
        "frame_size": list(manifest["frame_size"]),
        "template": {"frames": pattern, "count": count, "crop_boxes": boxes, "sha256": hashes,
                     **({"loop": template["loop"]} if template.get("loop", "forward") != "forward" else {})},
        "box_size": int(manifest["box_size"]), "crop_size": crop_size, "coarse_size": coarse_size,
        "mask": {"feather_px": feather_px},
        "models": {"coarse": "coarse.yaml", "fine": "fine.yaml"},
        "calibration": {"open_scale": 1.0},
        # How the runtime composes the box (the recipe's bundle_composition; an older recipe
        # without one: the training composition).
        "composition": dict(recipe.get("bundle_composition") or recipe.get("composition")
                            or {"mode": "add"}),
        **({"demo_audio": demo_audio} if demo_audio else {}),
        # Where the template and the ground truth come from (tools/eval_renderer rebuilds it).
        "source": {"generator": manifest.get("source"), "seed": int(manifest.get("seed", 0)),
                   "scale": float(generator.get("scale", 1.0)), "frames": count,
                   "command": generator.get("command")},
        "recipe": dict(recipe),
    }
    path = out / "avatar.yaml"
    header = ("# Avatar bundle (runtime/render/bundle.py reads it). Written by tools/train_renderer;\n"
              "# rebuild everything with the recipe's command.\n")
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110))
    return path
