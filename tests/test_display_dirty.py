"""Redrawing only what changed: tile boxes, scale blocks, and the window's pixels against a
whole-frame draw of the same picture (SDL dummy driver)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.display.dirty import GROUP, scale_blocks, tile_boxes
from runtime.display.sink import Picture
from runtime.render.tile_template import TILE_H, tile_template_in_ram

pygame = pytest.importorskip("pygame")

FRAME = (160, 288)  # (width, height): 10 x 18 tiles of 16 px


def test_scale_blocks_only_where_boxes_scale_like_the_whole_frame():
    blocks = scale_blocks((720, 1280), (1080, 1920))  # portrait signage
    assert blocks.block == (2, 2) and blocks.to == (3, 3)
    assert scale_blocks((160, 288), (320, 576)).block == (1, 1)
    assert scale_blocks((720, 1280), (608, 1080)) is None  # shrinking: whole frames
    assert scale_blocks((720, 1280), (720, 1280)) is None  # unscaled: no scaling at all
    assert scale_blocks((720, 1280), (1081, 1921)) is None  # blocks of 720 pixels


@settings(deadline=None)  # no timing in a geometry test
@given(st.integers(0, 700), st.integers(0, 1260), st.integers(1, 300), st.integers(1, 300))
def test_a_region_holds_its_box_one_block_before_it_and_its_overlap(x, y, w, h):
    blocks = scale_blocks((720, 1280), (1080, 1920))
    w, h = min(w, 720 - x), min(h, 1280 - y)
    (sx, sy, sw, sh), (dx, dy, dw, dh) = blocks.region((x, y, w, h))
    assert sx % 2 == 0 and sy % 2 == 0 and sx <= max(0, x - 1) and sy <= max(0, y - 1)
    assert sx + sw - 1 >= x + w and sy + sh - 1 >= y + h  # plus one pixel of overlap
    assert sx + sw <= 721 and sy + sh <= 1281  # the padding column and row at most
    assert (dx, dy) == (sx * 3 // 2, sy * 3 // 2) and (dw, dh) == ((sw - 1) * 3 // 2, (sh - 1) * 3 // 2)
    assert sw - 1 >= 4 and sh - 1 >= 4  # never one block alone (smoothscale would copy it)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 45 * 80 - 1), max_size=300))
def test_tile_boxes_cover_every_changed_tile_and_stay_in_the_frame(changed):
    grid, size = (80, 45, 16, 16), (720, 1280)
    tiles = np.array(sorted(changed), np.int64)
    boxes = tile_boxes(tiles, grid, size)
    for tile in tiles.tolist():
        tx, ty = tile % 45 * 16, tile // 45 * 16
        assert any(x <= tx and tx + 16 <= x + w and y <= ty and ty + 16 <= y + h
                   for x, y, w, h in boxes), tile
    for x, y, w, h in boxes:
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 720 and y + h <= 1280
        assert x % (GROUP * 16) == 0 and y % (GROUP * 16) == 0
    assert not tile_boxes(np.zeros(0, np.int64), grid, size)


def test_runs_of_groups_merge_down_the_rows():
    grid, size = (80, 45, 16, 16), (720, 1280)
    column = np.array([r * 45 + 4 for r in range(9, 42)])  # one tile column, 33 rows
    side = GROUP * 16
    first, last = 9 // GROUP, 41 // GROUP
    assert tile_boxes(column, grid, size) == [(4 // GROUP * side, first * side, side,
                                               (last - first + 1) * side)]


def _frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """A frame that changes a few tiles (and a few pixels of others) from one to the next."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (FRAME[1], FRAME[0], 3), dtype=np.uint8)
    frames = []
    for _ in range(count):
        frame = frame.copy()
        for _ in range(int(rng.integers(0, 5))):
            y, x = int(rng.integers(0, FRAME[1] - 20)), int(rng.integers(0, FRAME[0] - 20))
            frame[y:y + int(rng.integers(1, 20)), x:x + int(rng.integers(1, 20))] = rng.integers(0, 256, 3)
        frames.append(frame)
    return frames


@pytest.mark.parametrize("path", ["surface", "texture"])
@pytest.mark.parametrize("window_size", [(240, 432), (320, 576), (160, 288)],
                         ids=["1.5x", "2x", "unscaled"])
def test_redrawing_changed_tiles_gives_the_pixels_of_a_whole_redraw(window_size, path, monkeypatch):
    from runtime.display.surface_path import SurfacePath
    from runtime.display.window import WindowSink
    tiles = tile_template_in_ram(FRAME, _frames(12), tolerance=0)
    partial_draws = []
    original = SurfacePath._changed

    def spy(self, redraw):
        boxes = original(self, redraw)
        partial_draws.append(boxes is not None)
        return boxes

    monkeypatch.setattr(SurfacePath, "_changed", spy)
    from runtime.display.sdl_rects import WindowRects
    sent, updated = [], []
    update = WindowRects.update

    def sent_rects(self, boxes):
        sent.append(list(boxes))
        updated.append(update(self, boxes))
        return updated[-1]

    monkeypatch.setattr(WindowRects, "update", sent_rects)
    uploads, per_frame = [], []
    if path == "texture":
        from runtime.display.screen_paths import TexturePath
        upload = TexturePath._upload

        def counted(self, box):
            uploads.append(box)
            return upload(self, box)

        monkeypatch.setattr(TexturePath, "_upload", counted)
    sink = WindowSink(driver="dummy", path=path, window_size=window_size)
    whole = WindowSink(driver="dummy", path=path, window_size=window_size)
    sink.open(FRAME)
    whole.open(FRAME)
    try:
        patch = np.full((40, 48, 3), (250, 10, 10), np.uint8)
        order = [0, 1, 2, 3, 5, 4, 11, 0, 0, 7, 8, 9, 10]  # jumps too, as dropped frames make
        for n, key in enumerate(order):
            box = (int(8 + 9 * n) % 100, int(180 + 7 * n) % 240, 48, 40)
            picture = Picture(tiles[key], patch if n % 4 else None, box if n % 4 else (0, 0, 0, 0),
                              template_key=key, template_tiles=tiles)
            before, sent[:], uploaded = sink.screenshot(), [], len(uploads)
            sink.present(picture, n)
            per_frame.append(len(uploads) - uploaded)
            whole.present(Picture(tiles[key], picture.patch, picture.box), n)  # no key: all of it
            after = sink.screenshot()
            assert np.array_equal(after, whole.screenshot()), (window_size, n, key)
            if sent:  # only these boxes went to the screen: every changed pixel is in one
                outside = np.ones(after.shape[:2], bool)
                for x, y, w, h in sent[-1]:
                    outside[y:y + h, x:x + w] = False
                assert np.array_equal(after[outside], before[outside]), (window_size, n, key)
    finally:
        sink.close()
        whole.close()
    if path == "surface":
        assert any(partial_draws)  # the changed boxes were drawn alone, not every frame whole
        assert any(updated)  # and only their boxes were sent to the screen
    else:  # boxes uploaded one by one, not one box around them all
        assert max(per_frame) > 1


def test_tiled_template_says_which_tiles_differ():
    frames = _frames(3, seed=4)
    tiles = tile_template_in_ram(FRAME, frames, tolerance=0)
    rows, cols, tw, th = tiles.tile_grid
    assert (rows, cols, tw, th) == (18, 10, 16, TILE_H)
    for a, b in ((0, 1), (1, 2), (2, 0), (1, 1)):
        differ = np.abs(frames[a].astype(int) - frames[b]).max(axis=2) > 0
        expected = differ.reshape(rows, th, cols, tw).any(axis=(1, 3)).ravel()
        assert np.array_equal(tiles.changed_tiles(a, b), np.flatnonzero(expected))
