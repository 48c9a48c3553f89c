"""Train an avatar's coarse and fine renderer stages and write its runtime bundle.

    python -m tools.renderer.train --rebuild                  # the shipped default avatar
    python -m tools.renderer.train --dataset DIR --out models/avatars/NAME [--steps N ...]

One command, each stage resumable: (--rebuild only) generate the dataset with the recipe's
generator command (finished shards are kept), train both stages together on the CPU
(checkpoint every --checkpoint-every steps in --work; an interrupted run continues from the
last one and draws the same batches), save the training curves as PNG, export both stages
with pnnx, check ncnn against torch (max abs diff <= 2/255), and write avatar.yaml with
sha256 of every file and the recipe. The dataset layout is tools/avatar/dataset.py's: the
trainer does not care which avatar source wrote it.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from tools.audio_model.net import record_in_sidecar
from .data import PairSet, RendererDataError, batch_rows, load_pairs, read_manifest, split_shards
from .export import PARITY_LIMIT, export_stages, parity, write_bundle
from .net import CoarseNet, FineNet, area_down, compose_box

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "avatars" / "default"
#: The recipe of the shipped default avatar (what --rebuild reads back from avatar.yaml).
DEFAULT_RECIPE: dict[str, Any] = {
    "command": "python -m tools.renderer.train --rebuild",
    "dataset_command": "python -m tools.avatar.make_default --seed 0 --pairs 16384",
    "name": "default", "seed": 0, "steps": 8000, "batch": 32, "lr": 2e-3, "weight_decay": 1e-4,
    "warmup": 300, "coarse_weight": 1.0, "temporal_pairs": 8, "temporal_weight": 1.0, "val_shards": 1, "coarse_size": 64, "crop_size": 128,
    "feather_px": 24, "threads": 2, "demo_audio": "demo.wav",
    # How the box is composed in training (add: box + upscaled change) ...
    "composition": {"mode": "add"},
    # ... and at run time (written into avatar.yaml): where a stage moved something, its
    # picture replaces the template's fine detail, so the old chin leaves no ghost line at
    # FULL and no doubled chin at COARSE (runtime/render/bundle.py). On the default avatar
    # it raised every EVAL figure of nets trained with add; training with replace_moved (and
    # an extra L1 on the mouth region, 6000 steps) gave a ghost-free FULL but a lower
    # speech-set mean, and COARSE still without the dark inside of an open mouth.
    "bundle_composition": {"mode": "replace_moved", "moved_from": 0.015, "moved_to": 0.05},
    # The COARSE box's loss. With L1 (the median) a stage that cannot place the dark inside
    # of an open mouth to the pixel hedges with "not dark" everywhere: COARSE showed a pink
    # shape. Squared error (the mean) paints it where it is likely: 1500 coarse-only steps
    # took the dark region's luminance from 0.49 to 0.26 (truth 0.13, template 0.56) and the
    # held-out COARSE PSNR from 29.7 to 33.3 dB. Recipes without the key trained with l1.
    "coarse_loss": "mse",
}

#: Squared error is ~1/100 of L1 on these boxes; x10 keeps the coarse term at L1's order of
#: magnitude beside the flicker term (the fine stage never sees the coarse gradient).
_MSE_SCALE = 10.0


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up, then cosine down to 2% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def losses(coarse: CoarseNet, fine: FineNet, box: torch.Tensor, params: torch.Tensor, target: torch.Tensor,
           temporal_pairs: int = 0, composition: dict | None = None, coarse_loss: str = "l1"
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The error of the box the runtime would show (composed as `composition` says), at box
    resolution: for COARSE `coarse_loss` (l1, or mse: squared error x _MSE_SCALE), for FULL
    L1; and a flicker term: on the first `temporal_pairs` (frame, next frame) row pairs, the
    L1 of the change between the two shown boxes against the truth's change.

    The fine stage gets the coarse image detached: the coarse stage is trained for its own
    picture (the governor shows it alone), not as a feature map for the fine stage."""
    tc, tf = area_down(box, coarse.size), area_down(box, fine.size)
    c_img = coarse(tc, params)
    f_img = fine(c_img.detach(), tf, params)
    shown_c = compose_box(box, tc, c_img, composition)
    shown_f = compose_box(box, tf, f_img, composition)
    flicker = box.new_zeros(())
    n = 2 * temporal_pairs
    if n:
        truth_step = target[1:n:2] - target[0:n:2]
        for shown in (shown_c, shown_f):
            flicker = flicker + ((shown[1:n:2] - shown[0:n:2]) - truth_step).abs().mean()
    if coarse_loss == "mse":
        loss_c = ((shown_c - target) ** 2).mean() * _MSE_SCALE
    elif coarse_loss == "l1":
        loss_c = (shown_c - target).abs().mean()
    else:
        raise ValueError(f"coarse_loss {coarse_loss!r}: allowed are l1, mse")
    return loss_c, (shown_f - target).abs().mean(), flicker


def validate(coarse: CoarseNet, fine: FineNet, pairs: PairSet, rows: int = 256,
             composition: dict | None = None) -> dict[str, float]:
    """PSNR (dB) of COARSE and FULL boxes against the targets, on held-out rows."""
    coarse.eval()
    fine.eval()
    se = {"coarse": 0.0, "full": 0.0}
    count = min(rows, len(pairs))
    with torch.no_grad():
        for first in range(0, count, 32):
            box, params, target = pairs.batch(np.arange(first, min(count, first + 32)))
            tc, tf = area_down(box, coarse.size), area_down(box, fine.size)
            c_img = coarse(tc, params)
            f_img = fine(c_img, tf, params)
            for key, image in (("coarse", compose_box(box, tc, c_img, composition)),
                               ("full", compose_box(box, tf, f_img, composition))):
                se[key] += float(((image.clamp(0, 1) - target) ** 2).mean(dim=(1, 2, 3)).sum())
    coarse.train()
    fine.train()
    return {k: 10 * math.log10(1.0 / max(v / count, 1e-12)) for k, v in se.items()}


def _progress(total: int, initial: int):
    try:
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc="training", unit="step", dynamic_ncols=True)
    except ImportError:
        return None


#: Recipe keys a resumed run may change: they set speed and bookkeeping, not what is learnt
#: (thread count changes float rounding only).
_RESUMABLE = ("threads", "checkpoint_every", "command", "demo_audio", "bundle_composition")


def _identity(recipe: dict) -> dict:
    return {k: v for k, v in recipe.items() if k not in _RESUMABLE}


def train(train_set: PairSet, val_set: PairSet, recipe: dict, work: Path) -> tuple[CoarseNet, FineNet, list]:
    """Train (resuming from work/checkpoint.pt if present); returns the nets and the log."""
    torch.manual_seed(recipe["seed"])
    coarse = CoarseNet(recipe["coarse_size"])
    fine = FineNet(recipe["crop_size"], recipe["coarse_size"])
    opt = torch.optim.AdamW(list(coarse.parameters()) + list(fine.parameters()), lr=recipe["lr"],
                            weight_decay=recipe["weight_decay"])
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / "checkpoint.pt"
    history: list[dict] = []
    start = 0
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, weights_only=False)
        if _identity(state["recipe"]) != _identity(recipe):
            raise RendererDataError(f"{ckpt_path}: a checkpoint of another recipe; use another --work")
        coarse.load_state_dict(state["coarse"])
        fine.load_state_dict(state["fine"])
        opt.load_state_dict(state["opt"])
        start, history = state["step"], state["history"]
        log.info("resuming from %s at step %d", ckpt_path, start)
    steps, every = recipe["steps"], recipe["checkpoint_every"]
    bar = _progress(steps, start)
    running = []
    began = time.perf_counter()
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = recipe["lr"] * lr_factor(step, steps, recipe["warmup"])
        rows = batch_rows(recipe["seed"], step, train_set, recipe["batch"], recipe["temporal_pairs"])
        box, params, target = train_set.batch(rows)
        loss_c, loss_f, flicker = losses(coarse, fine, box, params, target, recipe["temporal_pairs"],
                                         recipe.get("composition"), recipe.get("coarse_loss", "l1"))
        loss = recipe["coarse_weight"] * loss_c + loss_f + recipe["temporal_weight"] * flicker
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append((float(loss_c), float(loss_f), float(flicker)))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(coarse=f"{loss_c.item():.4f}", full=f"{loss_f.item():.4f}")
        done = step + 1
        if done % every == 0 or done == steps:
            psnr = validate(coarse, fine, val_set, composition=recipe.get("composition"))
            mean = np.mean(running, axis=0)
            history.append({"step": done, "l1_coarse": float(mean[0]), "l1_full": float(mean[1]),
                            "flicker": float(mean[2]),
                            "val_psnr_coarse": psnr["coarse"], "val_psnr_full": psnr["full"],
                            "seconds": time.perf_counter() - began + (history[-1]["seconds"] if history else 0)})
            began = time.perf_counter()
            running = []
            log.info("step %d: L1 coarse %.4f full %.4f; held-out PSNR coarse %.2f dB full %.2f dB",
                     done, mean[0], mean[1], psnr["coarse"], psnr["full"])
            tmp = ckpt_path.with_suffix(".part")
            torch.save({"recipe": recipe, "step": done, "coarse": coarse.state_dict(), "fine": fine.state_dict(),
                        "opt": opt.state_dict(), "history": history}, tmp)
            tmp.replace(ckpt_path)
    if bar is not None:
        bar.close()
    return coarse.eval(), fine.eval(), history


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    ax0.plot(steps, [h["l1_coarse"] for h in history], label="COARSE")
    ax0.plot(steps, [h["l1_full"] for h in history], label="FULL")
    ax0.set(xlabel="step", ylabel="training loss of the shown box", yscale="log",
            title="training loss (FULL: L1; COARSE: the recipe's coarse_loss)")
    ax1.plot(steps, [h["val_psnr_coarse"] for h in history], label="COARSE")
    ax1.plot(steps, [h["val_psnr_full"] for h in history], label="FULL")
    ax1.set(xlabel="step", ylabel="PSNR (dB)", title="held-out shard: box PSNR")
    for ax in (ax0, ax1):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def build(recipe: dict, dataset: Path, out: Path, work: Path) -> int:
    torch.set_num_threads(int(recipe["threads"]))
    manifest = read_manifest(dataset)
    train_names, val_names = split_shards(manifest, recipe["val_shards"])
    log.info("loading %d training and %d held-out shards from %s", len(train_names), len(val_names), dataset)
    train_set, val_set = load_pairs(dataset, train_names), load_pairs(dataset, val_names)
    coarse, fine, history = train(train_set, val_set, recipe, work)
    out.mkdir(parents=True, exist_ok=True)
    (out / "training_log.json").write_text(json.dumps(history, indent=1) + "\n")
    plot_curves(history, out / "training_curves.png")
    coarse_yaml, fine_yaml = export_stages(coarse, fine, out, recipe)
    rows = np.arange(min(16, len(val_set)))
    box, params, _ = val_set.batch(rows)
    worst = parity(coarse, fine, coarse_yaml, fine_yaml, box, params)
    for sidecar in (coarse_yaml, fine_yaml):
        record_in_sidecar(sidecar, "parity", {"max_abs_diff": {k: round(v, 6) for k, v in worst.items()},
                                   "limit": round(PARITY_LIMIT, 6), "rows": len(rows)})
        record_in_sidecar(sidecar, "training", {"final": history[-1] if history else None})
    demo = recipe.get("demo_audio")
    demo = demo if demo and (out / demo).is_file() else None
    if recipe.get("demo_audio") and demo is None:
        log.warning("%s: no demo clip; make it with python -m tools.audio_model.make_demo_speech --out %s",
                    out / str(recipe["demo_audio"]), out / str(recipe["demo_audio"]))
    bundle = write_bundle(out, dataset, manifest, recipe["name"], recipe["coarse_size"], recipe["crop_size"],
                          recipe["feather_px"], recipe, demo)
    log.info("parity ncnn vs torch: %s (limit %.4f)", {k: f"{v:.2e}" for k, v in worst.items()}, PARITY_LIMIT)
    log.info("wrote %s", bundle)
    if max(worst.values()) > PARITY_LIMIT:
        print(f"train_renderer: ncnn differs from torch by {max(worst.values()):.4f} > {PARITY_LIMIT:.4f} "
              f"(see {coarse_yaml} parity)", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.renderer.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--rebuild", action="store_true", help="rebuild the shipped default avatar from its recipe")
    p.add_argument("--dataset", type=Path, help="dataset directory (dataset.yaml + shards)")
    p.add_argument("--out", type=Path, help="bundle directory to write (e.g. models/avatars/NAME)")
    p.add_argument("--work", type=Path, help="checkpoints (default: ~/.cache/edgemate/train_renderer/NAME)")
    p.add_argument("--name", help="avatar name (default: the --out folder name)")
    for key in ("steps", "batch", "seed", "warmup", "val_shards", "coarse_size", "crop_size", "feather_px",
                "threads", "checkpoint_every", "temporal_pairs"):
        p.add_argument("--" + key.replace("_", "-"), type=int)
    for key in ("lr", "weight_decay", "coarse_weight", "temporal_weight"):
        p.add_argument("--" + key.replace("_", "-"), type=float)
    p.add_argument("--demo-audio", help="demo clip file name inside --out (default demo.wav)")
    p.add_argument("--composition", choices=("add", "replace_moved"),
                   help="how training composes the mouth box (default add; the bundle always "
                   "gets the recipe's bundle_composition, replace_moved)")
    p.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = dict(DEFAULT_RECIPE)
    recipe["checkpoint_every"] = 500
    if args.rebuild:
        out = args.out or SHIPPED
        recipe.update(recipe_from_bundle(out))
        dataset = args.dataset or Path.home() / ".cache" / "edgemate" / "datasets" / "default"
    else:
        if args.dataset is None or args.out is None:
            _parser().error("--dataset and --out are required (or --rebuild)")
        out, dataset = args.out, args.dataset
        recipe["command"] = "python -m tools.renderer.train " + " ".join(str(a) for a in (argv or sys.argv[1:]))
        recipe["dataset_command"] = None
        recipe["name"] = args.name or out.name
    for key in ("steps", "batch", "seed", "warmup", "val_shards", "coarse_size", "crop_size", "feather_px",
                "threads", "checkpoint_every", "temporal_pairs", "lr", "weight_decay", "coarse_weight",
                "temporal_weight", "demo_audio"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    if args.composition is not None:
        recipe["composition"] = ({"mode": "add"} if args.composition == "add"
                                 else dict(DEFAULT_RECIPE["bundle_composition"]))
    work = args.work or Path.home() / ".cache" / "edgemate" / "train_renderer" / str(recipe["name"])
    try:
        if args.rebuild and not (dataset / "dataset.yaml").is_file() or args.rebuild and not read_manifest_ok(dataset):
            command = recipe["dataset_command"].split()[1:] + ["--out", str(dataset)]
            log.info("generating the dataset: python %s", " ".join(command))
            if subprocess.call([sys.executable, *command], cwd=REPO) != 0:
                print("train_renderer: the dataset generator failed", file=sys.stderr)
                return 1
        return build(recipe, dataset, out, work)
    except (RendererDataError, OSError, KeyError, ValueError) as err:
        if args.debug:
            raise
        print(f"train_renderer: {err}", file=sys.stderr)
        return 1


def recipe_from_bundle(bundle: Path) -> dict:
    """The recipe a bundle was built with (empty when there is no bundle yet)."""
    import yaml

    path = bundle / "avatar.yaml"
    if not path.is_file():
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    return dict(doc.get("recipe") or {})


def read_manifest_ok(dataset: Path) -> bool:
    try:
        read_manifest(dataset)
        return True
    except RendererDataError:
        return False


if __name__ == "__main__":
    sys.exit(main())
