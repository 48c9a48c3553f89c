"""The ground truth: the bundle's `source` block rebuilds the generator that drew its template.

avatar.yaml carries
    source: {generator: "procedural default character", seed: 0, scale: 1.0, frames: 200}
and `DefaultAvatar(AvatarSettings(seed, scale, frames))` then draws any mouth on any template
frame exactly. Before trusting it, `check_bundle` compares the generator's rest frames and
mouth boxes with the bundle's own template: a source block that names the wrong seed or
scale would otherwise score a good renderer as bad.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from runtime.render.bundle import AvatarBundle

from tools.avatar.scene import AvatarSettings, DefaultAvatar

log = logging.getLogger(__name__)

#: tools/avatar/make_default.py SOURCE: the only generator this evaluation can rebuild.
PROCEDURAL = "procedural default character"


class EvalError(Exception):
    """The evaluation cannot run; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class SourceSpec:
    generator: str
    seed: int
    scale: float
    frames: int

    def as_dict(self) -> dict:
        return {"generator": self.generator, "seed": self.seed, "scale": self.scale,
                "frames": self.frames}


def read_source(bundle_dir: Path) -> SourceSpec:
    """Parse avatar.yaml's `source` block (the runtime's bundle loader ignores it)."""
    where = Path(bundle_dir) / "avatar.yaml"
    try:
        doc = yaml.safe_load(where.read_text())
    except FileNotFoundError:
        raise EvalError(f"{where}: avatar bundle not found") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise EvalError(f"{where}: cannot read: {str(err).splitlines()[0]}") from None
    source = doc.get("source") if isinstance(doc, dict) else None
    if source is None:
        raise EvalError(f"{where}: source: missing; eval_renderer needs a bundle made from "
                        "the procedural generator")
    if not isinstance(source, dict):
        raise EvalError(f"{where}: source: must be a mapping {{generator, seed, scale, frames}}")
    if source.get("generator") != PROCEDURAL:
        raise EvalError(f"{where}: source.generator: {source.get('generator')!r} cannot be "
                        f"rebuilt; eval_renderer knows only {PROCEDURAL!r}")
    checks = (("seed", int), ("scale", (int, float)), ("frames", int))
    for key, kinds in checks:
        value = source.get(key)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise EvalError(f"{where}: source.{key}: missing or wrong type (got {value!r})")
    if source["frames"] < 2 or not 0.05 <= source["scale"] <= 2.0:
        raise EvalError(f"{where}: source: need frames >= 2 and 0.05 <= scale <= 2 "
                        f"(got frames {source['frames']}, scale {source['scale']})")
    return SourceSpec(PROCEDURAL, int(source["seed"]), float(source["scale"]), int(source["frames"]))


class GroundTruth:
    """Exact mouth boxes and frames from the generator, with the bundle's open calibration.

    The runtime scales `open` by the bundle's calibration.open_scale before the models see
    it, so the truth is drawn with the same scaled value (1.0 for a procedural bundle).
    """

    def __init__(self, spec: SourceSpec, open_scale: float = 1.0) -> None:
        self.spec = spec
        self.open_scale = open_scale
        self.avatar = DefaultAvatar(AvatarSettings(seed=spec.seed, scale=spec.scale,
                                                   frames=spec.frames))
        self._templates: dict[int, np.ndarray] = {}

    @property
    def box_size(self) -> int:
        return self.avatar.settings.box

    def drawn_params(self, params: np.ndarray) -> list[float]:
        p = [float(v) for v in params]
        p[0] = min(1.0, p[0] * self.open_scale)
        return p

    def box(self, k: int, params: np.ndarray) -> np.ndarray:
        """(box, box, 3) uint8 mouth box of template frame k with the mouth drawn with params."""
        k = k % self.spec.frames
        if not np.any(params):  # all zeros is the template exactly (tools/avatar contract)
            return self.template_box(k)
        return self.avatar.render_box(k, self.drawn_params(params))

    def template_box(self, k: int) -> np.ndarray:
        k = k % self.spec.frames
        cached = self._templates.get(k)
        if cached is None:
            cached = self._templates[k] = self.avatar.render_box(k, None)
        return cached

    def frame(self, k: int, params: np.ndarray) -> np.ndarray:
        return self.avatar.render_frame(k % self.spec.frames, self.drawn_params(params))


def check_bundle(truth: GroundTruth, bundle: AvatarBundle, where: Path, probe_frames: int = 4) -> dict:
    """Raise EvalError unless the generator rebuilds the bundle's template; returns the facts."""
    spec = truth.spec
    if bundle.frame_count != spec.frames:
        raise EvalError(f"{where}: source.frames {spec.frames} but the template has "
                        f"{bundle.frame_count} frames")
    if tuple(bundle.frame_size) != tuple(truth.avatar.settings.frame_size):
        raise EvalError(f"{where}: source.scale {spec.scale} draws "
                        f"{truth.avatar.settings.frame_size} frames but the bundle's are {bundle.frame_size}")
    if bundle.box_size != truth.box_size:
        raise EvalError(f"{where}: box_size {bundle.box_size} but the generator's box at scale "
                        f"{spec.scale} is {truth.box_size}")
    boxes = truth.avatar.crop_boxes()
    if not np.array_equal(boxes, bundle.crop_boxes):
        bad = int(np.flatnonzero(np.any(boxes != bundle.crop_boxes, axis=1))[0])
        raise EvalError(f"{where}: template.crop_boxes differ from the generator's "
                        f"(first at frame {bad}); the source block does not describe this bundle")
    probes = sorted({int(k) for k in np.linspace(0, spec.frames - 1, probe_frames)})
    worst = 0
    b = bundle.box_size
    for k in probes:
        x, y = (int(v) for v in bundle.crop_boxes[k])
        have = np.asarray(bundle.frames[k][y:y + b, x:x + b]).astype(np.int16)
        worst = max(worst, int(np.abs(have - truth.template_box(k)).max()))
    if worst:
        raise EvalError(f"{where}: the template's mouth boxes differ from the generator's by up "
                        f"to {worst} levels; the source block does not describe this bundle")
    return {"frames_checked": probes, "template_box_max_abs_diff": worst, "crop_boxes_match": True}
