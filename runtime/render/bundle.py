"""Avatar bundles: avatar.yaml + template loop + crop placement + blend mask + stage models.

avatar.yaml (schema 1):
    name, fixture (true only for test fixtures), fps (25), frame_size [W, H]
    template.frames   (N, H, W, 3) uint8 .npy (memory-mapped), or an image pattern
                      like "frames/%04d.png" decoded once into a cache of tiles that is
                      memory-mapped too (template_cache.py, tile_template.py; RAM if the
                      cache is not writable)
    template.count    N, the loop length in frames (the loop must be seamless)
    template.loop     forward (0..N-1, 0..; the default) or pingpong (0..N-1, N-2..1, 0..):
                      a stretch that does not join itself plays forward and back, with no
                      frame stored twice (tools/make_avatar/loop.py chooses)
    template.crop_boxes  (N, 2) int .npy: top-left x, y of the mouth box in each frame
    template.sha256   {file: hex} for the template files (verified at load)
    box_size          side of the mouth box in frame pixels
    crop_size         fine-stage resolution; coarse_size: coarse-stage resolution
    mask              {feather_px: n} (a feathered rounded box) or {file: mask.npy} (h, w) in [0, 1]
    models            {coarse: coarse.yaml, fine: fine.yaml} (model sidecars, sha256 inside)
    calibration       {open_scale: 1.0}: how far "open = 1" opens this face
    composition       how a stage's output becomes the mouth box (what it was trained with):
                      {mode: add} (the default: box + upscaled change) or
                      {mode: replace_moved, moved_from: 0.015, moved_to: 0.05}: where the stage
                      moved something, its own picture replaces the template's fine detail
                      (no ghost of the old chin); see renderer.moved_weight
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from runtime.models.ncnn_model import ModelError, load_sidecar, sha256_file
from .compositor import soft_mask
from .template_cache import TemplateError, image_frame_names, load_image_frames
from .tile_template import TOLERANCE, TileTemplate


BUNDLE_SCHEMA = 1
LOOP_MODES = ("forward", "pingpong")


class BundleError(ModelError):
    """The bundle cannot be used; the message names the file and the problem."""


COMPOSITION_MODES = ("add", "replace_moved")


@dataclass(frozen=True)
class Composition:
    mode: str = "add"
    moved_from: float = 0.015  # stage change (0..1 units) below which the template detail stays
    moved_to: float = 0.05  # ... from which the stage's picture replaces it

    @property
    def replaces_moved(self) -> bool:
        return self.mode == "replace_moved"

    def as_yaml(self) -> dict:
        if not self.replaces_moved:
            return {"mode": self.mode}
        return {"mode": self.mode, "moved_from": self.moved_from, "moved_to": self.moved_to}


def _composition(doc: dict, where: Path) -> Composition:
    spec = doc.get("composition")
    if spec is None:
        return Composition()
    if not isinstance(spec, dict) or spec.get("mode") not in COMPOSITION_MODES:
        raise BundleError(f"{where}: composition.mode: must be one of "
                          f"{', '.join(COMPOSITION_MODES)} (got {spec!r})")
    unknown = set(spec) - {"mode", "moved_from", "moved_to"}
    if unknown:
        raise BundleError(f"{where}: composition: unknown key {sorted(unknown)[0]!r}")
    low, high = spec.get("moved_from", 0.015), spec.get("moved_to", 0.05)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for v in (low, high))
    if not numbers or not 0.0 <= low < high <= 1.0:
        raise BundleError(f"{where}: composition: moved_from and moved_to must be numbers with "
                          f"0 <= moved_from < moved_to <= 1 (got {low!r}, {high!r})")
    return Composition(spec["mode"], float(low), float(high))


@dataclass(frozen=True)
class AvatarBundle:
    path: Path
    name: str
    fixture: bool
    frame_size: tuple[int, int]  # (width, height)
    frames: np.ndarray | TileTemplate  # (N, H, W, 3) uint8: a .npy map, or tiles (image frames)
    crop_boxes: np.ndarray  # (N, 2) int: top-left x, y of the mouth box
    box_size: int
    crop_size: int
    coarse_size: int
    mask: np.ndarray  # (box_size, box_size) float32 in [0, 1]
    coarse_sidecar: Path
    fine_sidecar: Path
    open_scale: float
    composition: Composition = Composition()
    loop: str = "forward"

    @property
    def frame_count(self) -> int:
        return int(self.frames.shape[0])

    def template_frame(self, index: int) -> np.ndarray:
        """Template frame `index` (H, W, 3), read-only, for the frame path: from tiles it is a
        canvas updated in place (valid until the frame path asks for another frame)."""
        frames = self.frames
        return frames.frame(index) if isinstance(frames, TileTemplate) else frames[index]

    def loop_index(self, number: int) -> int:
        """The template frame shown at video frame `number`."""
        return loop_position(number, self.frame_count, self.loop)


def loop_position(number: int, count: int, loop: str) -> int:
    """The template frame a loop of `count` frames played `loop` shows at video frame `number`
    (the one rule; the avatar builder lays talking runs on the template by it too)."""
    if loop != "pingpong" or count < 3:
        return number % count
    period = 2 * count - 2
    step = number % period
    return step if step < count else period - step


def _get(doc: Any, dotted: str, where: Path, kinds: type | tuple[type, ...]) -> Any:
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise BundleError(f"{where}: {dotted}: missing")
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, kinds):  # no bundle key is a bool
        raise BundleError(f"{where}: {dotted}: wrong type (got {node!r})")
    return node


def _load_frames(bundle_dir: Path, spec: str, count: int, size: tuple[int, int],
                 listed: dict, where: Path, exact: bool) -> np.ndarray | TileTemplate:
    path = bundle_dir / spec
    if spec.endswith(".npy"):
        try:
            frames = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise BundleError(f"{path}: cannot read template frames: {err}") from None
    else:
        try:
            image_frame_names(spec, count)
        except TemplateError as err:
            raise BundleError(f"{where}: {err}") from None
        try:
            # Decoded once into a cached .npy and memory-mapped (see template_cache).
            frames = load_image_frames(bundle_dir, spec, count, size, listed,
                                       tolerance=0 if exact else TOLERANCE)
        except TemplateError as err:
            raise BundleError(str(err)) from None
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or len(frames) != count:
        raise BundleError(f"{where}: template.frames: must be {count} frames of HxWx3 uint8 "
                          f"(got shape {frames.shape}, {frames.dtype})")
    return frames


def _load_array(path: Path, key: str, where: Path) -> np.ndarray:
    """A plain .npy array (never a pickle: a bundle is data, not code)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise BundleError(f"{where}: {key}: cannot read {path.name}: "
                          f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


#: avatar.yaml is a few kB; anything this large is not one (and is not parsed).
MAX_AVATAR_YAML_BYTES = 1 << 20
#: The decoded template loop, checked before anything is allocated or decoded: 4 GiB is
#: 2 minutes of 1080p; a kiosk box has less memory than that to spare.
MAX_TEMPLATE_BYTES = 4 << 30


def _number(doc: Any, dotted: str, where: Path, lo: float, hi: float, kind: type = int,
            default: Any = None) -> Any:
    """A bounded int (or finite float) at `dotted`, or `default` when it is missing;
    BundleError naming the key and the range otherwise."""
    node: Any = doc
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None and default is not None:
        return kind(default)
    number = isinstance(node, int) or (kind is float and isinstance(node, float))
    if isinstance(node, bool) or not number or not math.isfinite(node) or not lo <= node <= hi:
        what = "an integer" if kind is int else "a number"
        raise BundleError(f"{where}: {dotted}: must be {what} from {lo:g} to {hi:g} (got {node!r})")
    return kind(node)


def _inside(bundle_dir: Path, name: Any, key: str, where: Path) -> Path:
    """A file the bundle names: a relative name that stays inside the bundle directory (no
    absolute path, no way up with ..). Symbolic links the bundle's owner put in it are theirs
    to make: the name is what a hostile avatar.yaml controls."""
    text = str(name)
    normal = os.path.normpath(text)
    if not text or os.path.isabs(text) or normal == ".." or normal.startswith(".." + os.sep):
        raise BundleError(f"{where}: {key}: {text!r} must be a path inside the bundle directory")
    return bundle_dir / text


def load_bundle(bundle_dir: Path, exact_template: bool = False) -> AvatarBundle:
    """`exact_template`: template frames exactly as decoded (tile tolerance 0), for tools that
    compare with a generator's own pixels; the runtime keeps the default (tile_template.py)."""
    bundle_dir = Path(bundle_dir)
    where = bundle_dir / "avatar.yaml"
    if not where.is_file():
        raise BundleError(f"{where}: avatar bundle not found")
    try:
        if where.stat().st_size > MAX_AVATAR_YAML_BYTES:
            raise BundleError(f"{where}: {where.stat().st_size} bytes: not an avatar.yaml "
                              f"(at most {MAX_AVATAR_YAML_BYTES} bytes)")
        doc = yaml.safe_load(where.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise BundleError(f"{where}: cannot read: {str(err).splitlines()[0]}") from None
    if not isinstance(doc, dict) or doc.get("schema") != BUNDLE_SCHEMA:
        raise BundleError(f"{where}: schema: must be {BUNDLE_SCHEMA}")
    if _get(doc, "fps", where, int) != 25:
        raise BundleError(f"{where}: fps: must be 25")
    # Every number first, then the files: nothing large is read or allocated before the
    # bundle is known to be sane (a 100000x100000 frame size is a message, not a MemoryError).
    size = _get(doc, "frame_size", where, list)
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096
                                 for v in size):
        raise BundleError(f"{where}: frame_size: must be [width, height], each 16 to 4096 "
                          f"(got {size!r})")
    width, height = size
    count = _number(doc, "template.count", where, 1, 3000)
    if count * width * height * 3 > MAX_TEMPLATE_BYTES:
        raise BundleError(f"{where}: template: {count} frames of {width}x{height} would take "
                          f"{count * width * height * 3 / 2**30:.1f} GiB decoded "
                          f"(at most {MAX_TEMPLATE_BYTES / 2**30:g} GiB)")
    box = _number(doc, "box_size", where, 16, min(width, height))
    crop_size = _number(doc, "crop_size", where, 8, 512)
    coarse_size = _number(doc, "coarse_size", where, 8, crop_size)
    # The renderer keeps every loop frame's stage inputs as float32 (renderer.py).
    inputs = count * 3 * (crop_size ** 2 + coarse_size ** 2) * 4
    if inputs > MAX_TEMPLATE_BYTES // 4:
        raise BundleError(f"{where}: crop_size {crop_size} and coarse_size {coarse_size} for "
                          f"{count} frames need {inputs / 2**30:.1f} GiB of renderer inputs "
                          f"(at most {MAX_TEMPLATE_BYTES / 4 / 2**30:g} GiB)")
    open_scale = _number(doc, "calibration.open_scale", where, 0.1, 10.0, float, default=1.0)
    listed = _get(doc, "template.sha256", where, dict)
    for name in listed:
        _inside(bundle_dir, name, "template.sha256", where)
    frames_spec = _get(doc, "template.frames", where, str)
    _inside(bundle_dir, frames_spec, "template.frames", where)
    boxes_path = _inside(bundle_dir, _get(doc, "template.crop_boxes", where, str),
                         "template.crop_boxes", where)
    mask_spec = _get(doc, "mask", where, dict)
    models = _get(doc, "models", where, dict)
    coarse, fine = (_inside(bundle_dir, models.get(k, ""), f"models.{k}", where)
                    for k in ("coarse", "fine"))
    composition = _composition(doc, where)
    loop = doc["template"].get("loop", "forward")
    if loop not in LOOP_MODES:
        raise BundleError(f"{where}: template.loop: must be one of {', '.join(LOOP_MODES)} "
                          f"(got {loop!r})")
    for name, digest in listed.items():
        path = bundle_dir / name
        actual = sha256_file(path) if path.is_file() else "missing file"
        if actual != str(digest):
            raise BundleError(f"{path}: sha256 mismatch: expected {digest}, got {actual}")
    boxes = _load_array(boxes_path, "template.crop_boxes", where)
    if boxes.shape != (count, 2) or not np.issubdtype(boxes.dtype, np.integer):
        raise BundleError(f"{where}: template.crop_boxes: must be ({count}, 2) integers "
                          f"(got {boxes.shape} {boxes.dtype})")
    boxes = boxes.astype(np.int64)
    if ((boxes[:, 0] <= -box) | (boxes[:, 0] >= width) | (boxes[:, 1] <= -box)
            | (boxes[:, 1] >= height)).any():
        raise BundleError(f"{where}: template.crop_boxes: every {box} px box must overlap the "
                          f"{width}x{height} frame")
    if "file" in mask_spec:
        mask_path = _inside(bundle_dir, mask_spec["file"], "mask.file", where)
        mask = _load_array(mask_path, "mask.file", where)
        if not np.issubdtype(mask.dtype, np.floating):
            raise BundleError(f"{where}: mask.file: must hold floats in [0, 1] (got {mask.dtype})")
        mask = mask.astype(np.float32)
        if mask.size and not (np.isfinite(mask).all() and mask.min() >= 0 and mask.max() <= 1):
            raise BundleError(f"{where}: mask.file: values must be finite and in [0, 1]")
    else:
        feather = mask_spec.get("feather_px", max(2, box // 8))
        if not isinstance(feather, int) or isinstance(feather, bool):
            raise BundleError(f"{where}: mask.feather_px: must be an integer (got {feather!r})")
        try:
            mask = soft_mask(box, box, feather)
        except ValueError as err:
            raise BundleError(f"{where}: mask: {err}") from None
    if mask.shape != (box, box):
        raise BundleError(f"{where}: mask: must be {box}x{box} (got {mask.shape})")
    for sidecar, kind in ((coarse, "coarse"), (fine, "fine")):
        load_sidecar(sidecar, kind=kind)  # fail early with the sidecar's own message
    frames = _load_frames(bundle_dir, frames_spec, count, (width, height), listed, where,
                          exact_template)
    if frames.shape[1:3] != (height, width):
        raise BundleError(f"{where}: frame_size: {width}x{height} but frames are "
                          f"{frames.shape[2]}x{frames.shape[1]}")
    return AvatarBundle(
        path=bundle_dir, name=str(doc.get("name", bundle_dir.name)), fixture=bool(doc.get("fixture")),
        frame_size=(int(width), int(height)), frames=frames, crop_boxes=boxes, box_size=box,
        crop_size=crop_size, coarse_size=coarse_size, mask=mask, coarse_sidecar=coarse,
        fine_sidecar=fine, open_scale=open_scale, composition=composition, loop=loop)
