"""The one-pass mouth patch (ncnn): the pixels of the numpy path (renderer upscale +
compositor) to one grey level, the template exactly outside the mask, and the frame body
taking it wherever it applies and the numpy path elsewhere."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.display.sink import NO_BOX
from runtime.pipeline.frame_body import FrameBody
from runtime.quality.levels import Quality
from runtime.quality.transition import RenderPlan
from runtime.render.bundle import load_bundle
from runtime.render.compositor import Compositor, soft_mask
from runtime.render.patch_painter import PatchPainter
from runtime.render.renderer import NcnnRenderer, moved_weight
from runtime.render.resize import resize_chw
from runtime.schedule.stage_timer import StageTimer


def reference(image, stage, frame, x, y, mask, moved):
    """The composition written out in float64 numpy, rounded once."""
    box = mask.shape[0]
    base = frame[y:y + box, x:x + box].astype(np.float64)
    change = (image - stage).astype(np.float32)
    out = base + resize_chw(change * 255, box, box).transpose(1, 2, 0)
    if moved is not None:
        weight = moved_weight(change.copy(), *moved)
        up_weight = resize_chw(weight[None], box, box)[0][:, :, None]
        up_stage = resize_chw(stage * 255, box, box).transpose(1, 2, 0)
        out = out + up_weight * (up_stage - base)
    return np.clip(np.floor(base + mask[:, :, None] * (out - base) + 0.5), 0, 255)


@pytest.mark.parametrize("side", [128, 64])
@pytest.mark.parametrize("moved", [(0.015, 0.05), None])
def test_matches_the_float_formula_to_one_level(side, moved):
    rng = np.random.default_rng(side)
    box = 96
    mask = soft_mask(box, box, 8)
    frame = rng.integers(0, 256, (200, 160, 3), dtype=np.uint8)
    stage = rng.uniform(0, 1, (3, side, side)).astype(np.float32)
    image = np.clip(stage + rng.normal(0, 0.08, stage.shape), 0, 1).astype(np.float32)
    painter = PatchPainter(box, mask, moved)
    assert painter.available
    patch = painter.paint(image, stage, frame, 30, 70)
    assert patch.shape == (box, box, 3) and patch.dtype == np.uint8
    diff = np.abs(patch.astype(np.float64) - reference(image, stage, frame, 30, 70, mask, moved))
    assert diff.max() <= 1.0
    assert (diff == 0).mean() > 0.97


def test_outside_the_mask_is_the_template_exactly_and_inputs_are_untouched():
    rng = np.random.default_rng(3)
    box = 64
    mask = soft_mask(box, box, 6)
    frame = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    frame_before = frame.copy()
    stage = rng.uniform(0, 1, (3, 32, 32)).astype(np.float32)
    image = rng.uniform(0, 1, (3, 32, 32)).astype(np.float32)
    kept = (image.copy(), stage.copy())
    patch = PatchPainter(box, mask, (0.015, 0.05)).paint(image, stage, frame, 10, 20)
    outside = mask == 0
    np.testing.assert_array_equal(patch[outside], frame[20:20 + box, 10:10 + box][outside])
    np.testing.assert_array_equal(frame, frame_before)
    np.testing.assert_array_equal(image, kept[0])
    np.testing.assert_array_equal(stage, kept[1])


def test_the_same_stage_and_template_give_the_template_back():
    rng = np.random.default_rng(4)
    box = 64
    frame = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    # The stage template is the box itself scaled down: no change anywhere.
    stage = resize_chw(frame[8:8 + box, 8:8 + box].transpose(2, 0, 1).astype(np.float32) / 255, 32, 32)
    patch = PatchPainter(box, soft_mask(box, box, 6), (0.015, 0.05)).paint(stage, stage, frame, 8, 8)
    np.testing.assert_array_equal(patch, frame[8:8 + box, 8:8 + box])


def test_a_wrong_mask_is_refused():
    with pytest.raises(ValueError, match="mask"):
        PatchPainter(64, np.ones((32, 32), np.float32), None)


def body_for(bundle):
    renderer = NcnnRenderer(bundle)
    return FrameBody(bundle, renderer, Compositor(bundle.mask), StageTimer()), renderer


def test_frame_body_patch_equals_the_crop_and_compositor_path(model_fixtures):
    bundle = load_bundle(model_fixtures[1])
    body, renderer = body_for(bundle)
    params = np.array([0.9, 0.3, 0.1, 0.0, 0.2, 0.6], np.float32)
    for level in (Quality.FULL, Quality.COARSE):
        for number in (0, 7):
            fused = body.prepare(number, params, RenderPlan(level)).picture
            index = number % bundle.frame_count
            crop = renderer.render(params, index, level)
            x, y = (int(v) for v in bundle.crop_boxes[index])
            patch, box = Compositor(bundle.mask).blend(bundle.frames[index], crop, x, y)
            old, new = np.empty_like(fused.template), fused.composed()
            from runtime.display.sink import Picture
            Picture(bundle.frames[index], patch, box).paint_into(old)
            diff = np.abs(new.astype(int) - old.astype(int))
            assert diff.max() <= 1, (level, number)


def test_cross_fades_and_rest_take_the_crop_path(model_fixtures):
    bundle = load_bundle(model_fixtures[1])
    body, renderer = body_for(bundle)
    params = np.full(6, 0.5, np.float32)
    assert renderer.render_patch(params, 0, Quality.FULL, Quality.COARSE, 0.5) is None
    assert renderer.render_patch(np.zeros(6, np.float32), 0, Quality.FULL) == (None, NO_BOX)
    assert renderer.render_patch(params, 0, Quality.PASS) == (None, NO_BOX)
    frame = body.prepare(0, params, RenderPlan(Quality.FULL, Quality.COARSE, 0.5))
    assert frame.picture.patch is not None  # drawn by render() + the compositor


def test_a_box_off_the_frame_takes_the_crop_path(model_fixtures):
    bundle = load_bundle(model_fixtures[1])
    renderer = NcnnRenderer(bundle)
    bundle.crop_boxes[0] = (-5, 3)
    params = np.full(6, 0.5, np.float32)
    assert renderer.render_patch(params, 0, Quality.FULL) is None
    body = FrameBody(bundle, renderer, Compositor(bundle.mask), StageTimer())
    assert body.prepare(0, params, RenderPlan(Quality.FULL)).picture.box[0] == 0


def test_stage_inputs_are_the_area_means_of_the_box():
    from runtime.render.patch_painter import StageInputs
    from runtime.render.resize import shrink_chw
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    made = StageInputs(128, (64, 32)).make(frame, 40, 100)
    chw = frame[100:228, 40:168].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    for size in (64, 32):
        assert made[size].shape == (3, size, size)
        np.testing.assert_allclose(made[size], shrink_chw(np.ascontiguousarray(chw), size), atol=1e-6)
    assert StageInputs(128, (64,)).make(frame, -1, 0) is None  # off the frame: numpy pads
    assert StageInputs(128, (48,)).make(frame, 0, 0) is None  # not a divisor: numpy resizes


def test_renderer_inputs_match_the_numpy_path_on_and_off_the_frame(model_fixtures):
    bundle = load_bundle(model_fixtures[1])
    renderer = NcnnRenderer(bundle)
    numpy_renderer = NcnnRenderer(bundle)
    numpy_renderer._inputs._net = None
    for index in (0, 3):
        for got, want in zip(renderer._template_inputs(index), numpy_renderer._template_inputs(index)):
            np.testing.assert_allclose(got, want, atol=1e-6)
