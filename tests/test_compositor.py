"""The compositor: a soft-mask blend over the crop box only, exact at the mask's ends, clipped
to the frame; what a sink shows is the template with the patch pasted at its box."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.display.sink import NO_BOX, Picture
from runtime.render.compositor import Compositor, soft_mask

H, W = 288, 160
CROP = 64


@pytest.fixture()
def rng():
    return np.random.default_rng(7)


def frames(rng, count=1):
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(count)]


def crop_of(rng):
    return rng.integers(0, 256, (CROP, CROP, 3), dtype=np.uint8)


def shown(comp, template, crop, x, y):
    """The frame a sink shows: the template with the blended patch pasted at its box."""
    patch, box = comp.blend(template, crop, x, y)
    return Picture(template, patch, box).composed()


@pytest.mark.parametrize("shape", ["rounded", "ellipse"])
def test_soft_mask_is_zero_on_the_border_and_one_inside(shape):
    mask = soft_mask(CROP, 48, 6, shape)
    assert mask.shape == (CROP, 48) and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert np.all(border == 0.0)
    assert mask[CROP // 2, 24] == pytest.approx(1.0)
    assert np.allclose(mask, mask[::-1]) and np.allclose(mask, mask[:, ::-1])  # symmetric


def test_soft_mask_rejects_bad_arguments():
    with pytest.raises(ValueError):
        soft_mask(10, 10, 0)
    with pytest.raises(ValueError):
        soft_mask(10, 10, 8)
    with pytest.raises(ValueError):
        soft_mask(32, 32, 4, "star")


def test_border_of_box_equals_template_and_nothing_outside_changes(rng):
    (template,) = frames(rng)
    before = template.copy()
    comp = Compositor(soft_mask(CROP, CROP, 8))
    x, y = 40, 100
    out = shown(comp, template, crop_of(rng), x, y)
    assert np.array_equal(template, before)  # the template is never written
    box = out[y:y + CROP, x:x + CROP]
    tbox = template[y:y + CROP, x:x + CROP]
    for edge in (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1]):
        assert np.array_equal(box[edge], tbox[edge])
    outside = np.ones((H, W), bool)
    outside[y:y + CROP, x:x + CROP] = False
    assert np.array_equal(out[outside], template[outside])
    assert not np.array_equal(box, tbox)  # the crop did go in


def test_crop_equal_to_template_box_gives_the_template_back(rng):
    (template,) = frames(rng)
    comp = Compositor(soft_mask(CROP, CROP, 12))
    x, y = 50, 20
    out = shown(comp, template, template[y:y + CROP, x:x + CROP].copy(), x, y)
    diff = np.abs(out.astype(np.int16) - template.astype(np.int16))
    assert diff.max() <= 1


def test_matches_the_float_formula(rng):
    (template,) = frames(rng)
    crop = crop_of(rng)
    mask = rng.random((CROP, CROP)).astype(np.float32)
    out = shown(Compositor(mask), template, crop, 10, 30)
    m = mask[:, :, None]
    expected = template[30:30 + CROP, 10:10 + CROP] * (1 - m) + crop * m
    assert np.abs(out[30:30 + CROP, 10:10 + CROP] - expected).max() <= 1.0


def test_mask_one_pastes_the_crop_exactly(rng):
    (template,) = frames(rng)
    crop = crop_of(rng)
    patch, box = Compositor(np.ones((CROP, CROP), np.float32)).blend(template, crop, 0, 0)
    assert box == (0, 0, CROP, CROP) and np.array_equal(patch, crop)


@pytest.mark.parametrize("x, y", [(-20, -10), (W - 30, H - 40), (-10, H - 20), (W - 5, 5)])
def test_boxes_partly_outside_are_clipped(rng, x, y):
    (template,) = frames(rng)
    crop = crop_of(rng)
    out = shown(Compositor(np.ones((CROP, CROP), np.float32)), template, crop, x, y)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(W, x + CROP), min(H, y + CROP)
    assert np.array_equal(out[y0:y1, x0:x1], crop[y0 - y:y1 - y, x0 - x:x1 - x])
    outside = np.ones((H, W), bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], template[outside])


def test_box_entirely_outside_gives_no_patch(rng):
    (template,) = frames(rng)
    assert Compositor(soft_mask(CROP, CROP, 8)).blend(template, crop_of(rng), W + 10, 0) == (None, NO_BOX)


def test_pass_gives_no_patch_and_the_template_alone(rng):
    (template,) = frames(rng)
    patch, box = Compositor(soft_mask(CROP, CROP, 8)).blend(template, None, 0, 0)
    assert patch is None and box == NO_BOX
    assert np.array_equal(Picture(template, patch, box).composed(), template)


def test_the_patch_covers_only_the_mask_s_active_box(rng):
    (template,) = frames(rng)
    mask = np.zeros((CROP, CROP), np.float32)
    mask[10:20, 5:40] = 1.0
    patch, box = Compositor(mask).blend(template, crop_of(rng), 30, 50)
    assert box == (35, 60, 35, 10) and patch.shape == (10, 35, 3)


def test_the_patch_is_contiguous_and_its_buffer_reused(rng):
    (template,) = frames(rng)
    comp = Compositor(soft_mask(CROP, CROP, 8))
    first, _ = comp.blend(template, crop_of(rng), 0, 0)
    second, _ = comp.blend(template, crop_of(rng), -5, -5)  # clipped: a smaller patch
    assert first.flags.c_contiguous and second.flags.c_contiguous
    assert np.shares_memory(first, second)  # no new array per frame


def test_rejects_bad_inputs(rng):
    with pytest.raises(ValueError):
        Compositor(np.full((8, 8), 1.5, np.float32))
    with pytest.raises(ValueError):
        Compositor(np.ones((8, 8, 3), np.float32))
    comp = Compositor(np.ones((CROP, CROP), np.float32))
    with pytest.raises(ValueError):
        comp.blend(frames(rng)[0], np.zeros((CROP, CROP + 1, 3), np.uint8), 0, 0)
