"""Train the streaming audio model on the synthesized corpus and export it to models/audio/.

    python -m tools.audio_model.train --rebuild        # the shipped model, from its sidecar's recipe
    python -m tools.audio_model.train --epochs 2 ...   # another recipe (see --help)

One command does everything, each stage resumable: synthesize the corpus (tools.audio_model.synth_corpus,
skips what exists), compute augmented training features (tools.audio_model.dataset, cached shards),
train on the CPU (checkpoint per epoch; an interrupted run continues from the last one),
export with pnnx to ncnn and write the sidecar with the recipe, then check ncnn against torch.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml

from .augment import AugmentSettings
from .calibrate import write_curve
from .dataset import Example, build_cache, load_shards, load_utterance, make_example, step_pairs
from .net import LOOKAHEAD_STEPS, MouthNet, export_ncnn, ncnn_parity, record_in_sidecar
from .synth_corpus import (ESPEAK_ACCENTS, FESTIVAL_VOICES, NATURAL_VOICES, TEST_VARIANTS,
                           TRAIN_VARIANTS, load_corpus, plan, synthesize)
from .visemes import targets_recipe

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "audio" / "audio.yaml"
#: The recipe of the shipped model (what --rebuild reads back from the sidecar).
DEFAULT_RECIPE: dict[str, Any] = {
    "command": "python -m tools.audio_model.train --rebuild",
    "corpus_seed": 0, "train_utterances": 5000, "test_utterances": 400,
    # Voices built from recordings of people (synth_corpus.NATURAL_VOICES): issue 14.
    "natural_train_utterances": 2400, "natural_test_utterances": 150,
    # 3 variants of 7400 utterances: about as many examples (and minutes) as 4 of 5000 were.
    "variants_per_utterance": 3, "augment_seed": 0, "augment": asdict(AugmentSettings()),
    "seed": 0, "epochs": 16, "batch": 32, "lr": 3e-3, "weight_decay": 1e-4,
    "loss_weights": [2.0, 1.0, 1.0, 1.0, 1.0, 1.0], "silence_weight": 5.0,
    "targets": targets_recipe(),
    "proj": 128, "hidden": 256, "head": 64,
    "train_voices": {"espeak_accents": ESPEAK_ACCENTS, "espeak_variants": list(TRAIN_VARIANTS),
                     "festival": list(FESTIVAL_VOICES["train"]),
                     "natural": [":".join(v) for v in NATURAL_VOICES["train"]]},
    "test_voices": {"espeak_variants": list(TEST_VARIANTS), "festival": list(FESTIVAL_VOICES["test"]),
                    "natural": [":".join(v) for v in NATURAL_VOICES["test"]]},
}


def _normaliser(examples: Sequence[Example], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-input mean and std over a sample of training steps."""
    picks = rng.choice(len(examples), size=min(2000, len(examples)), replace=False)
    stacked = np.concatenate([step_pairs(examples[i], LOOKAHEAD_STEPS)[0] for i in picks])
    return stacked.mean(axis=0), np.maximum(stacked.std(axis=0), 1e-3)


def _batches(lengths: np.ndarray, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (little padding), in random order."""
    order = rng.permutation(len(lengths))
    groups = []
    pool = batch * 50
    for first in range(0, len(order), pool):
        chunk = order[first:first + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        groups += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    return [groups[i] for i in rng.permutation(len(groups))]


def _collate(pairs, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    longest = max(len(pairs[i][0]) for i in idx)
    x = np.zeros((len(idx), longest, pairs[idx[0]][0].shape[1]), np.float32)
    y = np.zeros((len(idx), longest, 6), np.float32)
    mask = np.zeros((len(idx), longest, 1), np.float32)
    for row, i in enumerate(idx):
        n = len(pairs[i][0])
        x[row, :n], y[row, :n], mask[row, :n] = pairs[i][0], pairs[i][1], 1.0
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)


def train(examples: Sequence[Example], recipe: dict, checkpoint: Path | None = None,
          monitor: Sequence[Example] = (), max_batches: int | None = None,
          progress: bool = True) -> tuple[MouthNet, dict]:
    """Train a MouthNet; resumes from `checkpoint` (saved after every epoch) if it exists."""
    from tqdm import tqdm

    torch.manual_seed(recipe["seed"])
    rng = np.random.default_rng(recipe["seed"])
    pairs = [step_pairs(e, LOOKAHEAD_STEPS) for e in examples]
    pairs = [(x.astype(np.float16), y) for x, y in pairs if len(x) > 1]
    lengths = np.array([len(x) for x, _ in pairs])
    net = MouthNet(proj=recipe["proj"], hidden=recipe["hidden"], head=recipe["head"])
    mean, std = _normaliser(examples, rng)
    net.mean.copy_(torch.from_numpy(mean))
    net.std.copy_(torch.from_numpy(std))
    per_epoch = len(_batches(lengths, recipe["batch"], np.random.default_rng(0)))
    total = per_epoch * recipe["epochs"] if max_batches is None else max_batches
    opt = torch.optim.AdamW(net.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    warmup = max(1, total // 20)

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine down to 2% of the peak
        if step < warmup:
            return (step + 1) / warmup
        return 0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    weights = torch.tensor(recipe["loss_weights"], dtype=torch.float32)
    history: dict = {"epochs": [], "seconds": 0.0}
    start_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state["recipe"] == recipe:
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            start_epoch, history = state["epoch"], state["history"]
            log.info("resuming after epoch %d", start_epoch)
    done = start_epoch * per_epoch
    for epoch in range(start_epoch, recipe["epochs"]):
        began = time.monotonic()
        net.train()
        batches = _batches(lengths, recipe["batch"], np.random.default_rng([recipe["seed"], epoch]))
        losses = []
        for idx in tqdm(batches, disable=not progress, desc=f"epoch {epoch + 1}/{recipe['epochs']}",
                        mininterval=10):
            if done >= total:
                break
            x, y, mask = _collate(pairs, idx)
            pred, _ = net(x)
            # Closed-mouth frames count `silence_weight` times: a mouth that drifts open in a
            # pause is the most visible error an avatar makes.
            frame_w = mask * torch.where(y.abs().sum(dim=2, keepdim=True) == 0,
                                         recipe["silence_weight"], 1.0)
            loss = (((pred - y) ** 2) * weights * frame_w).sum() / (frame_w.sum() * weights.sum())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            done += 1
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                 "seconds": round(time.monotonic() - began, 1)}
        if monitor:
            entry["monitor_r_open"] = monitor_r_open(net, monitor)
        history["epochs"].append(entry)
        history["seconds"] = round(history["seconds"] + entry["seconds"], 1)
        log.info("epoch %s", entry)
        if checkpoint is not None:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "epoch": epoch + 1, "history": history, "recipe": recipe}, checkpoint)
        if done >= total:
            break
    return net.eval(), history


def monitor_r_open(net: MouthNet, examples: Sequence[Example]) -> float:
    """Pearson r of `open` on held-out examples (a progress signal, not model selection)."""
    preds, targets = [], []
    with torch.no_grad():
        for ex in examples:
            x, y = step_pairs(ex, LOOKAHEAD_STEPS)
            pred, _ = net(torch.from_numpy(x)[None])
            preds.append(np.clip(pred[0, :, 0].numpy(), 0, 1))
            targets.append(y[:, 0])
    return round(float(np.corrcoef(np.concatenate(preds), np.concatenate(targets))[0, 1]), 4)


def recipe_from_sidecar(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    return {**DEFAULT_RECIPE, **doc["recipe"]}


def build(recipe: dict, corpus: Path, cache: Path, out: Path, name: str = "audio",
          workers: int = 2, progress: bool = True) -> Path:
    """Corpus -> features -> training -> ncnn export + sidecar. Returns the sidecar path."""
    # Plain JSON types: the recipe goes into YAML and is compared with the checkpoint's.
    recipe = json.loads(json.dumps(recipe))
    if recipe.get("targets", targets_recipe()) != json.loads(json.dumps(targets_recipe())):
        raise SystemExit("the recipe's targets differ from tools/audio_model/visemes.py: check out the "
                         "tools that made this model, or train a new recipe")
    synthesize(corpus, plan(recipe["corpus_seed"], recipe["train_utterances"],
                            recipe["test_utterances"], recipe.get("natural_train_utterances", 0),
                            recipe.get("natural_test_utterances", 0)), workers, progress)
    metas = load_corpus(corpus, "train")
    augment = AugmentSettings(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in recipe["augment"].items()})
    shards = build_cache(corpus, cache / "features", metas, recipe["variants_per_utterance"],
                         recipe["augment_seed"], augment, workers, progress)
    examples = load_shards(shards)
    monitor = [make_example(*load_utterance(corpus, m), m["table"])
               for m in load_corpus(corpus, "test")[:60]]
    log.info("training on %d examples (%d utterances x %d variants)", len(examples), len(metas),
             recipe["variants_per_utterance"])
    net, history = train(examples, recipe, cache / "checkpoint.pt", monitor, progress=progress)
    training = {"examples": len(examples), "audio_hours": round(
        sum(len(e.features) for e in examples) / 100 / 3600, 2), "train_seconds": history["seconds"],
        "epochs": history["epochs"],
        "device": "cpu", "torch": str(torch.__version__)}
    path = export_ncnn(net, out, name, recipe, extra={"training": training})
    # The ncnn model must compute what torch computes (held-out utterance, state carried).
    probe = monitor[0].features
    diff, state_diff = ncnn_parity(net, path, probe)
    record_in_sidecar(path, "parity", {
        "max_abs_diff_params": float(f"{diff:.3g}"), "max_abs_diff_hidden_state": float(f"{state_diff:.3g}"),
        "steps": len(probe) // 4, "limit_params": 1e-3,
        "note": "ncnn vs torch on one held-out utterance, each carrying its own state"})
    if diff > 1e-3:
        raise SystemExit(f"ncnn differs from torch by {diff:.2g} (> 1e-3): not shipping {path}")
    log.info("ncnn vs torch: params max abs diff %.2g, state %.2g over %d steps", diff, state_diff,
             len(probe) // 4)
    if recipe.get("open_curve"):  # measured on a real clip by tools.audio_model.calibrate
        write_curve(path, recipe["open_curve"])
    torch.save(net.state_dict(), cache / f"{name}.torch.pt")
    (cache / f"{name}.history.json").write_text(json.dumps(history, indent=1))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.audio_model.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rebuild", action="store_true",
                        help=f"use the recipe in {SHIPPED.relative_to(REPO)} (the shipped model)")
    parser.add_argument("--recipe-from", type=Path, help="use the recipe of another sidecar")
    parser.add_argument("--out", type=Path, default=SHIPPED.parent, help="where the model goes")
    parser.add_argument("--name", default="audio")
    parser.add_argument("--corpus", type=Path, default=Path("/work/cache/corpus"))
    parser.add_argument("--cache", type=Path, default=Path("/work/cache/train-audio"))
    parser.add_argument("--workers", type=int, default=2)
    for key in ("epochs", "batch", "hidden", "train_utterances", "variants_per_utterance", "seed"):
        parser.add_argument("--" + key.replace("_", "-"), type=int)
    parser.add_argument("--lr", type=float)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    source = args.recipe_from or (SHIPPED if args.rebuild else None)
    recipe = recipe_from_sidecar(source) if source else dict(DEFAULT_RECIPE)
    for key in ("epochs", "batch", "hidden", "train_utterances", "variants_per_utterance", "seed", "lr"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    torch.set_num_threads(max(1, args.workers))
    path = build(recipe, args.corpus, args.cache, args.out, args.name, args.workers)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
