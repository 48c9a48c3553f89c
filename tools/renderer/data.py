"""Renderer training data in memory: a dataset directory (tools/avatar/dataset.py layout) as
uint8 tensors, with deterministic batches that do not depend on where a run resumed.

Only the target crops are kept per row; template crops are kept once per template frame
(every row of a frame shares it), which halves the memory of a 16k-pair dataset (~3 GB).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

log = logging.getLogger(__name__)


class RendererDataError(RuntimeError):
    """The dataset cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class PairSet:
    """Rows of (template frame index, params, target box); templates per frame index."""

    index: torch.Tensor      # (N,) int64
    params: torch.Tensor     # (N, 6) float32
    target: torch.Tensor     # (N, 3, box, box) uint8
    templates: torch.Tensor  # (frames, 3, box, box) uint8
    #: Rows r whose row r + 1 is the next video frame of the same speech-like run.
    pair_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(template box, params, target box) as float32 in [0, 1] for the given rows."""
        rows_t = torch.from_numpy(np.asarray(rows, np.int64))
        index = self.index[rows_t]
        scale = 1.0 / 255.0
        return (self.templates[index].float() * scale, self.params[rows_t],
                self.target[rows_t].float() * scale)


def read_manifest(dataset: Path) -> dict:
    path = dataset / "dataset.yaml"
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RendererDataError(f"{path}: not found (make one with python -m tools.avatar.make_default "
                                f"--out {dataset})") from None
    except (OSError, yaml.YAMLError) as err:
        raise RendererDataError(f"{path}: cannot read: {str(err).splitlines()[0]}") from None
    if not isinstance(doc, dict) or doc.get("schema") != 1:
        raise RendererDataError(f"{path}: schema: must be 1")
    if not doc.get("complete"):
        raise RendererDataError(f"{path}: the dataset is incomplete (some shards missing); "
                                f"re-run its generator command: {doc.get('generator', {}).get('command')}")
    return doc


def load_pairs(dataset: Path, shards: list[str] | None = None) -> PairSet:
    """All rows of the named shards (default: every shard in dataset.yaml)."""
    doc = read_manifest(dataset)
    names = shards if shards is not None else [s["file"] for s in doc["shards"]]
    box = int(doc["box_size"])
    frames = int(doc["template"]["count"])
    templates = torch.zeros((frames, 3, box, box), dtype=torch.uint8)
    have = np.zeros(frames, bool)
    index, params, targets, starts = [], [], [], []
    rows_so_far = 0
    for name in names:
        path = dataset / name
        try:
            with np.load(path) as data:
                k = data["template_index"].astype(np.int64)
                p = data["params"].astype(np.float32)
                tmpl = data["template_crop"]
                target = data["target_crop"]
                sequence = data["sequence"].astype(np.int64)
        except (OSError, ValueError, KeyError, EOFError) as err:
            raise RendererDataError(f"{path}: cannot read shard: {err}") from None
        if target.shape[1:] != (box, box, 3) or len(k) != len(p) or k.max(initial=0) >= frames:
            raise RendererDataError(f"{path}: shapes do not match dataset.yaml (box {box}, {frames} frames)")
        for row in np.flatnonzero(~have[k]):
            templates[k[row]] = torch.from_numpy(np.ascontiguousarray(tmpl[row].transpose(2, 0, 1)))
            have[k[row]] = True
        same_run = (sequence[:-1] >= 0) & (sequence[:-1] == sequence[1:])
        starts.append(np.flatnonzero(same_run) + rows_so_far)
        rows_so_far += len(k)
        index.append(torch.from_numpy(k))
        params.append(torch.from_numpy(p))
        targets.append(torch.from_numpy(np.ascontiguousarray(target.transpose(0, 3, 1, 2))))
        log.debug("loaded %s (%d rows)", name, len(k))
    if not index:
        raise RendererDataError(f"{dataset}: no shards to load")
    return PairSet(torch.cat(index), torch.cat(params), torch.cat(targets), templates,
                   np.concatenate(starts).astype(np.int64))


def split_shards(doc: dict, val_shards: int) -> tuple[list[str], list[str]]:
    """Training and validation shard names: the last `val_shards` shards are held out."""
    names = [s["file"] for s in doc["shards"]]
    if len(names) <= val_shards:
        raise RendererDataError(f"dataset has {len(names)} shards; need more than the {val_shards} held out "
                                f"for validation")
    return names[:len(names) - val_shards], names[len(names) - val_shards:]


def batch_rows(seed: int, step: int, pairs: PairSet, batch: int, temporal_pairs: int) -> np.ndarray:
    """The rows of training step `step`: first `temporal_pairs` (r, r + 1) pairs of
    consecutive frames of a run (rows 0,1 / 2,3 / ...), then random rows. A function of
    (seed, step) only, so a resumed run draws exactly the batches an uninterrupted one would."""
    rng = np.random.default_rng([seed, step])
    pairs_n = min(temporal_pairs, batch // 2) if len(pairs.pair_starts) else 0
    starts = rng.choice(pairs.pair_starts, size=pairs_n) if pairs_n else np.zeros(0, np.int64)
    consecutive = np.stack((starts, starts + 1), axis=1).reshape(-1)
    return np.concatenate((consecutive, rng.integers(0, len(pairs), size=batch - 2 * pairs_n)))
