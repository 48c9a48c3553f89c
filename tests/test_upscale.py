"""The renderer's upscale in ncnn: the same pixels as the numpy resampler, at every size the
stages produce, and a renderer whose crops match the numpy path to the level."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.quality.levels import Quality
from runtime.render import upscale as upscale_module
from runtime.render.bundle import load_bundle
from runtime.render.renderer import NcnnRenderer
from runtime.render.resize import resize_chw


def upscaled(up, chw):
    """(c, side, side) through add_to, the renderer's per-frame step (base 0)."""
    side = up.side
    out = np.empty((side, side, chw.shape[0]), np.float32)
    return up.add_to(chw, np.zeros_like(out), out).transpose(2, 0, 1)


@pytest.mark.parametrize("src,side", [(128, 256), (64, 256), (16, 32), (100, 256), (48, 48)])
def test_ncnn_upscale_matches_the_numpy_resampler(src, side):
    rng = np.random.default_rng(src)
    chw = (rng.standard_normal((3, src, src)) * 40).astype(np.float32)
    up = upscale_module.Upscaler(side)
    assert up._net is not None  # the pinned wheel has Interp
    out = upscaled(up, chw)
    assert out.shape == (3, side, side) and out.dtype == np.float32
    np.testing.assert_allclose(out, resize_chw(chw, side, side), atol=2e-4)
    assert chw.flags.writeable and np.isfinite(chw).all()  # the input is left alone


def test_a_non_contiguous_input_is_upscaled_as_its_values():
    rng = np.random.default_rng(1)
    hwc = rng.random((64, 64, 3), dtype=np.float32)
    view = hwc.transpose(2, 0, 1)  # what an HWC image looks like as CHW: a strided view
    np.testing.assert_allclose(upscaled(upscale_module.Upscaler(128), view),
                               resize_chw(np.ascontiguousarray(view), 128, 128), atol=1e-6)


def test_without_ncnn_it_falls_back_to_numpy():
    up = upscale_module.Upscaler(64)
    up._net = None
    chw = np.ones((3, 32, 32), np.float32)
    np.testing.assert_array_equal(upscaled(up, chw), resize_chw(chw, 64, 64))


def test_renderer_crops_match_the_numpy_path(model_fixtures):
    bundle = load_bundle(model_fixtures[1])
    renderer = NcnnRenderer(bundle)
    params = np.array([0.9, 0.3, 0.1, 0.0, 0.2, 0.6], np.float32)
    for level in (Quality.FULL, Quality.COARSE):
        for index in (0, 7):
            crop = renderer.render(params, index, level)
            # The same composition with numpy's resampler: box + 255 * up(out - in), rounded.
            numpy_renderer = NcnnRenderer(bundle)
            numpy_renderer.upscaler._net = None
            reference = numpy_renderer.render(params, index, level)
            assert crop.shape == reference.shape == (bundle.box_size, bundle.box_size, 3)
            assert np.abs(crop.astype(int) - reference.astype(int)).max() <= 1
            assert (crop != reference).mean() < 0.01
    assert renderer.render(np.zeros(6, np.float32), 0, Quality.FULL) is None  # rest: as is


def test_a_blend_cross_fades_the_two_levels_changes(model_fixtures):
    """A level switch renders `weight` of one level's change and the rest of the other's
    (runtime/quality/transition.py); the ends are the plain renders, PASS changes nothing."""
    bundle = load_bundle(model_fixtures[1])
    renderer = NcnnRenderer(bundle)
    params = np.array([0.9, 0.3, 0.1, 0.0, 0.2, 0.6], np.float32)
    x, y = (int(v) for v in bundle.crop_boxes[3])
    box = bundle.frames[3][y:y + bundle.box_size, x:x + bundle.box_size].astype(np.float32)
    full = renderer.render(params, 3, Quality.FULL).astype(np.float32)
    coarse = renderer.render(params, 3, Quality.COARSE).astype(np.float32)
    for weight in (0.25, 0.5, 0.75):
        mixed = renderer.render(params, 3, Quality.FULL, Quality.COARSE, weight).astype(np.float32)
        expected = weight * full + (1 - weight) * coarse
        # Exact up to the uint8 rounding of each end and the clip at 0 and 255.
        assert np.abs(mixed - expected).max() <= 1.5
        faded = renderer.render(params, 3, Quality.PASS, Quality.FULL, weight).astype(np.float32)
        assert np.abs(faded - (box + (1 - weight) * (full - box))).max() <= 1.5
    same = renderer.render(params, 3, Quality.FULL, Quality.COARSE, 1.0)
    np.testing.assert_array_equal(same, full.astype(np.uint8))
    assert renderer.render(params, 3, Quality.PASS, Quality.PASS, 0.5) is None
