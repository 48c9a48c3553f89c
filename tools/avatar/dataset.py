"""The renderer's training data: template loop + crop boxes + sharded (template crop, params,
target crop) pairs. Source-independent: any avatar source (this procedural character, or a
later "avatar from your own video" tool) writes the same layout:

    OUT/dataset.yaml          schema, source, seed, sizes, params distribution, shard list
    OUT/frames/%04d.png       the template loop (what the bundle's template.frames will use)
    OUT/crop_boxes.npy        (frames, 2) int32: top-left x, y of the mouth box per frame
    OUT/shard_XXXX.npz        template_index (N,) int32, params (N, 6) float32,
                              template_crop (N, box, box, 3) uint8, target_crop (same),
                              sequence (N,) int32 (-1 = independent, else run id: rows of a
                              run are consecutive template frames with smooth params)

Shard i depends only on (seed, i, its size), so an interrupted run resumes by skipping the
shards already on disk (each written atomically) and gives the same bytes as a clean run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import yaml

from runtime.models.ncnn_model import sha256_file

from .mouth import PARAM_NAMES
from .params import ParamMix, sample_pairs

log = logging.getLogger(__name__)

DATASET_SCHEMA = 1
FRAME_PATTERN = "frames/%04d.png"


class PairSource(Protocol):
    """What a dataset writer needs from an avatar source (procedural or, later, video)."""

    count: int

    def crop_boxes(self) -> np.ndarray: ...
    def render_box(self, k: int, params=None) -> np.ndarray: ...
    # Optional: sample_rows(rng, count, frames, mix) -> (index, params, sequence,
    # {row: target crop}) for a source whose rows come with their own targets.


@dataclass(frozen=True)
class DatasetSpec:
    source: str                      # e.g. "procedural default character"
    seed: int
    frame_size: tuple[int, int]      # (width, height) pixels
    box_size: int
    frames: int                      # template loop length
    fps: int = 25
    pairs: int = 0
    shard_size: int = 512
    mix: ParamMix = field(default_factory=ParamMix)
    generator: dict = field(default_factory=dict)  # the command and settings that made it
    loop: str = "forward"            # how the bundle plays the template (runtime/render/bundle.py)

    @property
    def shard_counts(self) -> list[int]:
        full, rest = divmod(self.pairs, self.shard_size)
        return [self.shard_size] * full + ([rest] if rest else [])

    def identity(self) -> dict:
        """What must match for an existing directory to be resumed."""
        return {"source": self.source, "seed": self.seed, "frame_size": list(self.frame_size),
                "box_size": self.box_size, "frames": self.frames, "shard_size": self.shard_size,
                "params_distribution": self.mix.describe()}


class _Dumper(yaml.SafeDumper):
    """Block style, except short lists of scalars ([720, 1280]) stay on one line."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flow = all(isinstance(v, (int, float, str)) and len(str(v)) < 24 for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


class DatasetError(RuntimeError):
    """The output directory holds a different dataset or a broken file; the message says which."""


def shard_name(i: int) -> str:
    return f"shard_{i:04d}.npz"


def shard_complete(path: Path, count: int) -> bool:
    """True when the shard exists, opens, and holds `count` rows (reads only the small arrays)."""
    if not path.is_file():
        return False
    try:
        with np.load(path) as data:
            return data["params"].shape == (count, 6) and data["template_index"].shape == (count,)
    except (OSError, ValueError, KeyError, EOFError) as err:
        log.warning("%s: unreadable (%s); writing it again", path, err)
        return False


def write_shard(path: Path, template_index: np.ndarray, params: np.ndarray, template_crop: np.ndarray,
                target_crop: np.ndarray, sequence: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".part.npz")  # np.savez appends .npz to other names
    np.savez_compressed(tmp, template_index=template_index, params=params, template_crop=template_crop,
                        target_crop=target_crop, sequence=sequence)
    tmp.replace(path)


def read_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def check_identity(out: Path, spec: DatasetSpec) -> None:
    doc_path = out / "dataset.yaml"
    if not doc_path.is_file():
        return
    doc = yaml.safe_load(doc_path.read_text()) or {}
    have = {k: doc.get(k) for k in spec.identity()}
    want = spec.identity()
    if have != want:
        diff = sorted(k for k in want if have.get(k) != want[k])
        raise DatasetError(f"{doc_path}: holds a different dataset (not the same: {', '.join(diff)}); "
                           f"use a new --out directory")


def write_manifest(out: Path, spec: DatasetSpec, done: dict[int, str]) -> None:
    """dataset.yaml; `done` maps finished shard indices to their sha256."""
    doc = {
        "schema": DATASET_SCHEMA,
        **spec.identity(),
        "fps": spec.fps,
        "count": spec.pairs,
        "params": list(PARAM_NAMES),
        "template": {"frames": FRAME_PATTERN, "count": spec.frames, "crop_boxes": "crop_boxes.npy",
                     "rest_params": [0.0] * 6, **({"loop": spec.loop} if spec.loop != "forward" else {})},
        "arrays": {
            "template_index": "(N,) int32: template frame the pair belongs to",
            "params": "(N, 6) float32 in [0, 1], order as in params",
            "template_crop": "(N, box, box, 3) uint8 RGB: the template frame's mouth box",
            "target_crop": "(N, box, box, 3) uint8 RGB: the same box, mouth drawn with params",
            "sequence": "(N,) int32: -1 independent; else run id, rows consecutive in time",
        },
        "shards": [{"file": shard_name(i), "count": c, "sha256": done.get(i)}
                   for i, c in enumerate(spec.shard_counts)],
        "complete": len(done) == len(spec.shard_counts),
        "generator": spec.generator,
    }
    tmp = out / "dataset.yaml.part"
    tmp.write_text(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=110, default_flow_style=False))
    tmp.replace(out / "dataset.yaml")


def write_pairs(out: Path, spec: DatasetSpec, source: PairSource,
                progress: Callable[[int], None] | None = None) -> dict[int, str]:
    """Write every missing shard; returns {shard index: sha256}. `progress(n)` after n pairs."""
    out.mkdir(parents=True, exist_ok=True)
    check_identity(out, spec)
    counts = spec.shard_counts
    done: dict[int, str] = {}
    todo = []
    for i, count in enumerate(counts):
        if shard_complete(out / shard_name(i), count):
            done[i] = sha256_file(out / shard_name(i))
            if progress:
                progress(count)
        else:
            todo.append(i)
    if todo:
        log.info("%d of %d shards to write (%d already done)", len(todo), len(counts), len(done))
    write_manifest(out, spec, done)
    template_crops: dict[int, np.ndarray] = {}
    for i in todo:
        count = counts[i]
        rng = np.random.default_rng([spec.seed, i, count])  # a shard's rows depend on nothing else
        # A source with rows of its own (real talking frames, tools/make_avatar/speech.py)
        # samples them with their targets; the others are drawn by render_box.
        sampler = getattr(source, "sample_rows", None)
        if sampler is not None:
            index, params, sequence, given = sampler(rng, count, spec.frames, spec.mix)
        else:
            (index, params, sequence), given = sample_pairs(rng, count, spec.frames, spec.mix), {}
        box = spec.box_size
        tmpl = np.empty((count, box, box, 3), np.uint8)
        target = np.empty_like(tmpl)
        for row, (k, p) in enumerate(zip(index, params)):
            k = int(k)
            if k not in template_crops:
                template_crops[k] = source.render_box(k, None)
            tmpl[row] = template_crops[k]
            # Rest rows are the template itself (exactly); skip drawing them again.
            if row in given:
                target[row] = given[row]
            else:
                target[row] = template_crops[k] if not p.any() else source.render_box(k, p)
            if progress:
                progress(1)
        write_shard(out / shard_name(i), index, params, tmpl, target, sequence)
        done[i] = sha256_file(out / shard_name(i))
        write_manifest(out, spec, done)
    return done
