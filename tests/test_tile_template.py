"""The template loop as tiles (runtime/render/tile_template.py): every frame, in any order,
within the tolerance of the decoded one (exact at tolerance 0); a still loop costs little; the
frame path's canvases stay valid for the frame in use and are never writable."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.render.tile_template import (TILE_H, TileTemplate, grid_shape, tile_template_in_ram,
                                          tile_width)


def _loop(rng, count: int, size: tuple[int, int], noise: int) -> np.ndarray:
    """A still background with a moving blob and `noise` levels of per-frame noise."""
    width, height = size
    base = rng.integers(0, 256, (height, width, 3)).astype(np.int16)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for k in range(count):
        cy, cx = height / 2 + 0.3 * height * np.sin(k / 3), width / 2 + 0.2 * width * np.cos(k / 5)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < (min(size) / 5) ** 2
        frame = base + rng.integers(-noise, noise + 1, base.shape) if noise else base.copy()
        frame[blob] = (40 * k) % 256
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames)


@pytest.mark.parametrize("size", [(96, 160), (90, 37), (37, 20), (64, 16)])
@pytest.mark.parametrize("tolerance", [0, 1, 3])
def test_every_frame_in_any_order_is_within_the_tolerance(size, tolerance):
    rng = np.random.default_rng(sum(size) + tolerance)
    frames = _loop(rng, 12, size, noise=tolerance // 2)
    tiles = tile_template_in_ram(size, frames, tolerance)
    assert tiles.shape == frames.shape and len(tiles) == 12 and tiles.ndim == 4
    order = [*range(12), *rng.integers(0, 12, 40), 11, 0, 11, 5, 5]
    for k in order:
        got = tiles.frame(int(k))
        assert got.shape == frames[k].shape and got.dtype == np.uint8 and got.flags.c_contiguous
        err = np.abs(got.astype(np.int16) - frames[k]).max()
        assert err <= tolerance, f"frame {k}: {err} levels"
    assert np.array_equal(np.asarray(tiles)[3], tiles[3]) and np.array_equal(tiles[-1], tiles[11])
    if tolerance == 0:
        assert np.array_equal(np.asarray(tiles), frames)


def test_a_still_loop_keeps_little_and_noise_under_the_tolerance_costs_nothing():
    rng = np.random.default_rng(3)
    size = (128, 128)
    still = np.repeat(rng.integers(0, 256, (1, 128, 128, 3)).astype(np.uint8), 50, axis=0)
    one_level = still.astype(np.int16) + rng.integers(0, 2, still.shape)  # dither-like noise
    one_level = np.clip(one_level, 0, 255).astype(np.uint8)
    whole = still[0].nbytes
    assert tile_template_in_ram(size, still, 0).tiles.nbytes == whole  # one version per tile
    assert tile_template_in_ram(size, one_level, 1).tiles.nbytes == whole
    assert tile_template_in_ram(size, one_level, 0).tiles.nbytes > 20 * whole
    moving = tile_template_in_ram(size, _loop(rng, 50, size, 0), 0)
    assert whole < moving.tiles.nbytes < 0.5 * 50 * whole


def test_the_frame_path_canvas_is_read_only_and_copies_never_disturb_it():
    rng = np.random.default_rng(5)
    frames = _loop(rng, 6, (64, 48), 0)
    tiles = tile_template_in_ram((64, 48), frames, 0)
    shown = tiles.frame(1)
    assert np.array_equal(shown, frames[1])
    assert tiles.frame(1) is not None and np.array_equal(shown, frames[1])  # asked again: no repaint
    with pytest.raises(ValueError):
        shown[0, 0, 0] = 1
    kept = tiles[4]  # a tool reads another frame while frame 1 is on its way to the screen
    assert np.array_equal(shown, frames[1]) and np.array_equal(kept, frames[4])
    kept[:] = 0  # a copy: nothing the template holds changes
    assert np.array_equal(tiles[4], frames[4]) and np.array_equal(np.asarray(tiles), frames)
    assert np.array_equal(shown, frames[1])
    assert np.array_equal(tiles.frame(2), frames[2])  # the next frame repaints the same canvas
    with pytest.raises(IndexError):
        tiles[6]
    with pytest.raises(TypeError):
        tiles[1:3]


def test_a_failed_paint_repaints_the_whole_canvas_next_time(monkeypatch):
    rng = np.random.default_rng(7)
    frames = _loop(rng, 5, (48, 48), 0)
    tiles = tile_template_in_ram((48, 48), frames, 0)
    tiles.frame(0), tiles.frame(1)
    good = tiles.tiles
    tiles.tiles = None  # the copy fails half-way (here: before it starts)
    with pytest.raises(TypeError):
        tiles.frame(2)
    tiles.tiles = good
    for k in (2, 3, 0, 1):
        assert np.array_equal(tiles.frame(k), frames[k])


def test_tile_widths_divide_the_frame_and_the_grid_covers_it():
    for width in (720, 1080, 1366, 37, 1):
        tw = tile_width(width)
        assert width % tw == 0 and 1 <= tw <= 16
    rows, cols, tw = grid_shape((720, 1080))
    assert (rows, cols, tw) == (-(-1080 // TILE_H), 45, 16)
    with pytest.raises(ValueError, match="do not fit"):
        TileTemplate((64, 48), np.zeros((2, 5), np.int32), np.zeros((1, TILE_H, 16, 3), np.uint8), 0)
