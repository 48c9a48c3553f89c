"""The renderer seam: mouth parameters + template frame index -> mouth crop.

Quality levels (docs/ARCHITECTURE.md): FULL = coarse + fine stage, COARSE = coarse stage only (scaled
to the crop), PASS = no neural render (the template frame is shown as is). The governor
picks the level per frame; any renderer honours all three.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Protocol

import numpy as np

from runtime.models.ncnn_model import NcnnModel, load_sidecar, squeezed_shape
from runtime.quality.levels import Quality
from runtime.schedule.stage_timer import StageTimer
from runtime.display.sink import NO_BOX, Box
from .bundle import AvatarBundle, BundleError
from .patch_painter import PatchPainter, StageInputs
from .resize import shrink_chw
from .upscale import Upscaler


#: Parameters below this everywhere count as "mouth at rest": the template is shown untouched,
#: so silence looks exactly like the template and costs nothing.
REST_EPSILON = 1e-3


def moved_weight(change: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(3, h, w) stage change in [0, 1] units -> (h, w) weight in [0, 1]: 0 where the stage
    changed nothing (below `lo` in every channel), 1 from `hi`, grown by one stage pixel so
    it covers the band in which the template's sharp edges differ from their downscale.
    tools/renderer/net.py:moved_weight is the same in torch (training composes this way)."""
    moved = np.abs(change).max(axis=0)
    moved -= np.float32(lo)
    moved *= np.float32(1.0 / (hi - lo))
    np.clip(moved, 0.0, 1.0, out=moved)
    padded = np.pad(moved, 1, mode="edge")
    h, w = moved.shape
    for dy in range(3):
        for dx in range(3):
            np.maximum(moved, padded[dy:dy + h, dx:dx + w], out=moved)
    return moved


class Renderer(Protocol):
    def render(self, params: np.ndarray, template_index: int, level: Quality,
               blend_from: Quality | None = None, weight: float = 1.0) -> np.ndarray | None:
        """A (box, box, 3) uint8 crop for the template frame's mouth box, or None = as is;
        with `blend_from`, a cross-fade between two levels (`weight` of `level`)."""


class NcnnRenderer:
    """Runs a bundle's coarse and fine ncnn stages on the current template frame's crop."""

    def __init__(self, bundle: AvatarBundle, threads: int = 1, vulkan: bool = False,
                 timer: StageTimer | None = None,
                 ncnn_options: Mapping[str, bool] | None = None):
        """`ncnn_options` replaces both sidecars' options (None: what they ship); only for
        measuring what the shipped ones buy on another CPU (tools/parity)."""
        self.bundle = bundle
        self.timer = timer or StageTimer()
        cs, fs = bundle.coarse_size, bundle.crop_size
        coarse = load_sidecar(bundle.coarse_sidecar, "coarse")
        fine = load_sidecar(bundle.fine_sidecar, "fine")
        # What the frame path feeds and reshapes: a sidecar that disagrees with the bundle
        # fails here, at load (check, start, reload), not at the first utterance.
        why = f"coarse_size {cs}, crop_size {fs} in {bundle.path / 'avatar.yaml'}"
        _expect_shapes(coarse, {"template_crop": (3, cs, cs), "params": (6,)},
                       {"image": (3, cs, cs)}, why)
        _expect_shapes(fine, {"coarse_image": (3, cs, cs), "template_crop": (3, fs, fs),
                              "params": (6,)}, {"image": (3, fs, fs)}, why)
        if ncnn_options is not None:
            coarse = dataclasses.replace(coarse, options=dict(ncnn_options))
            fine = dataclasses.replace(fine, options=dict(ncnn_options))
        self.coarse = NcnnModel(coarse, threads, vulkan)  # each runs once on zeros (probe)
        self.fine = NcnnModel(fine, threads, vulkan)
        # The stages' template inputs, made per frame from the template's mouth box (one
        # small ncnn pass, runtime/render/patch_painter.py): nothing per loop frame is kept.
        self._inputs = StageInputs(bundle.box_size, (bundle.coarse_size, bundle.crop_size), threads)
        self.upscaler = Upscaler(bundle.box_size, threads)
        self._box_sum = np.empty((bundle.box_size, bundle.box_size, 3), np.float32)
        self._scratch = np.empty_like(self._box_sum) if bundle.composition.replaces_moved else None
        # Per stage size, what goes to the upscale: [change (3), stage template (3), moved (1)]
        # (the plain composition uses the first three): allocated once, not per frame.
        self._small = {side: np.empty((7, side, side), np.float32) for side in (cs, fs)}
        # The frame path's one-pass patch (upscale + composition + mask blend in ncnn), per
        # stage size; the numpy path below stays for cross-fades and boxes off the frame.
        composition = bundle.composition
        moved = (composition.moved_from, composition.moved_to) if composition.replaces_moved else None
        self.painters = {side: PatchPainter(bundle.box_size, bundle.mask, moved, threads)
                         for side in (cs, fs)}

    def _template_inputs(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        b = self.bundle
        x, y = (int(v) for v in b.crop_boxes[index])
        made = self._inputs.make(b.template_frame(index), x, y)
        if made is not None:
            return made[b.coarse_size], made[b.crop_size]
        # A box reaching off the frame (edge-padded), or no ncnn: the same means in numpy.
        box = _crop_clamped(b.template_frame(index), x, y, b.box_size).astype(np.float32)
        chw = np.ascontiguousarray(box.transpose(2, 0, 1)) * np.float32(1 / 255)
        return shrink_chw(chw, b.coarse_size), shrink_chw(chw, b.crop_size)

    def _stages(self, params: np.ndarray, template_index: int,
                weights: dict) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Run the stages `weights` asks for: [(stage output, its template input, share)]."""
        params = params.astype(np.float32, copy=True)
        params[0] = min(1.0, params[0] * self.bundle.open_scale)
        coarse_in, fine_in = self._template_inputs(template_index)
        with self.timer.measure("coarse"):
            coarse = self.coarse.run({"template_crop": coarse_in, "params": params}, ("image",))["image"]
        changes = []
        if Quality.COARSE in weights:
            changes.append((coarse.reshape(coarse_in.shape), coarse_in, weights[Quality.COARSE]))
        if Quality.FULL in weights:
            with self.timer.measure("fine"):
                fine = self.fine.run({"coarse_image": coarse, "template_crop": fine_in,
                                      "params": params}, ("image",))["image"]
            changes.append((fine.reshape(fine_in.shape), fine_in, weights[Quality.FULL]))
        return changes

    def stage_images(self, params: np.ndarray, template_index: int) -> dict[Quality, np.ndarray]:
        """Both stages' raw outputs (C, H, W) for one frame: COARSE -> coarse, FULL -> fine."""
        coarse, fine = self._stages(params, template_index, {Quality.COARSE: 1.0, Quality.FULL: 1.0})
        return {Quality.COARSE: coarse[0], Quality.FULL: fine[0]}

    @staticmethod
    def _weights(params: np.ndarray, level: Quality, blend_from: Quality | None,
                 weight: float) -> dict:
        """{level: share} of the levels that draw something; {} for a mouth at rest or PASS."""
        if float(np.max(params)) < REST_EPSILON:
            return {}
        weights = {level: weight} if blend_from is None else {level: weight, blend_from: 1.0 - weight}
        return {lvl: share for lvl, share in weights.items() if lvl != Quality.PASS and share > 0}

    def render_patch(self, params: np.ndarray, template_index: int, level: Quality,
                     blend_from: Quality | None = None, weight: float = 1.0
                     ) -> tuple[np.ndarray | None, Box] | None:
        """The blended mouth patch and its frame box in one pass (the frame path), or None
        where only render() + the compositor can do it: a cross-fade of two levels, a mouth
        box reaching off the frame, ncnn unavailable. (None, NO_BOX): nothing to draw."""
        weights = self._weights(params, level, blend_from, weight)
        if not weights:
            return None, NO_BOX
        if len(weights) != 1 or next(iter(weights.values())) != 1.0:
            return None
        b = self.bundle
        x, y = (int(v) for v in b.crop_boxes[template_index])
        frame = b.template_frame(template_index)
        height, width = frame.shape[:2]
        painter = self.painters[b.crop_size if Quality.FULL in weights else b.coarse_size]
        if not painter.available or x < 0 or y < 0 or x + b.box_size > width or y + b.box_size > height:
            return None
        (image, stage_template, _), = self._stages(params, template_index, weights)
        with self.timer.measure("composite"):
            patch = painter.paint(image, stage_template, frame, x, y)
        if patch is None:
            return None
        return patch, (x, y, b.box_size, b.box_size)

    def render(self, params: np.ndarray, template_index: int, level: Quality,
               blend_from: Quality | None = None, weight: float = 1.0) -> np.ndarray | None:
        """The crop at `level`; with `blend_from`, a cross-fade: `weight` of `level`'s change
        and the rest of `blend_from`'s (PASS changes nothing), for a switch without a pop."""
        weights = self._weights(params, level, blend_from, weight)
        if not weights:
            return None
        changes = self._stages(params, template_index, weights)
        # Only the stage's *change* is upscaled: pixels it leaves alone keep the template's
        # full box resolution, so nothing blurs and no edge shows (tools/renderer/net.py).
        with self.timer.measure("upscale"):
            b = self.bundle
            x, y = (int(v) for v in b.crop_boxes[template_index])
            base = _crop_clamped(b.template_frame(template_index), x, y, b.box_size)
            out = self._box_sum
            composition = b.composition
            for n, (image, stage_template, share) in enumerate(changes):
                small = self._small[stage_template.shape[-1]]
                change = small[0:3]
                np.subtract(image.reshape(stage_template.shape), stage_template, out=change)
                rows = None
                if composition.replaces_moved:
                    moved = moved_weight(change, composition.moved_from, composition.moved_to)
                    rows = _moved_rows(moved, b.box_size)
                if rows is not None:
                    np.multiply(moved, np.float32(share), out=small[6])
                    np.multiply(stage_template, np.float32(255), out=small[3:6])
                change *= np.float32(255 * share)
                # To 0..255 levels and +0.5 for rounding on the small image: bilinear weights
                # sum to 1, so both commute with the upscale and cost a quarter (or 1/16) of
                # the work. The rounding half is added once, with the first change.
                if n == 0:
                    change += np.float32(0.5)
                if rows is not None:
                    out = self.upscaler.add_moved_to(small, base if n == 0 else out, out,
                                                     self._scratch, rows)
                else:
                    out = self.upscaler.add_to(change, base if n == 0 else out, out)
            np.clip(out, 0, 255, out=out)
            return out.astype(np.uint8)


def _expect_shapes(sidecar, inputs: dict, outputs: dict, why: str) -> None:
    for section, wanted in (("inputs", inputs), ("outputs", outputs)):
        declared = getattr(sidecar, section)
        for role, shape in wanted.items():
            if role not in declared:
                raise BundleError(f"{sidecar.path}: {section}: missing role '{role}'")
            if squeezed_shape(declared[role].shape) != squeezed_shape(shape):
                raise BundleError(f"{sidecar.path}: {section}.{role}.shape: "
                                  f"{list(declared[role].shape)} does not fit the bundle "
                                  f"({why}: needs {list(shape)})")


def _moved_rows(moved: np.ndarray, box_size: int) -> tuple[int, int] | None:
    """Box rows [start, end) that a bilinear upscale of `moved` can make non-zero, or None
    when nothing moved (then the plain composition is exact and cheaper)."""
    rows = np.flatnonzero(moved.max(axis=1) > 0)
    if rows.size == 0:
        return None
    factor = box_size / moved.shape[0]
    # A bilinear output row reads the two input rows around its centre: one more each side.
    return max(0, int((rows[0] - 1) * factor)), min(box_size, int((rows[-1] + 2) * factor) + 1)


def _crop_clamped(frame: np.ndarray, x: int, y: int, size: int) -> np.ndarray:
    """The size x size box at (x, y), edge-padded where it leaves the frame."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
    crop = np.asarray(frame[y0:y1, x0:x1])
    if crop.shape[:2] == (size, size):
        return crop
    return np.pad(crop, ((y0 - y, y + size - y1), (x0 - x, x + size - x1), (0, 0)), mode="edge")
