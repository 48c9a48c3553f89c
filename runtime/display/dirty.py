"""What a window must redraw of a frame: changed template tiles grouped into a few boxes,
and the boxes a scaled screen can rescale alone and get the pixels a whole-frame scale gives.

From one loop frame to the next about a tenth of the default avatar's tiles change, but they
lie on the drawn outline of the head and body, so one box per changed row would cover half the
frame. Tiles are grouped instead into 3 x 3 groups (48 px), a changed group's horizontal runs
taken per group row, and runs with the same columns in consecutive group rows merged: about 28
boxes covering a third of the frame (groups of 2: 56 boxes, 27%; of 4: 20 boxes, 40%; all three
cost the same within noise, measured in the window sink at 1080x1920).

Scaling a box alone gives the whole frame's pixels only if it samples the source where the
whole frame does. pygame's smoothscale, expanding a w-pixel source to W pixels, samples
destination pixel X at source X (w - 1) / W. A frame padded by one column and row (copies of
its last ones) and scaled from w + 1 to W samples X w / W; a box of b source pixels at a
multiple of the scale's block (the frame's width over the greatest common divisor of the
two widths) plus one pixel of overlap, scaled to b W / w, samples the same points. Every
destination pixel reads two source pixels, so a box also redraws one block to its left and
above (their last destination pixels read its first source pixel). Checked pixel for pixel
against the whole-frame scale (tests/test_display_dirty.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import gcd

import numpy as np

from .sink import Box

#: Tiles per side of a group (a changed tile redraws its whole group).
GROUP = 3
#: Blocks wider than this (a scale like 720 -> 1366) make boxes too coarse: scale the whole frame.
MAX_BLOCK = 64
#: Redraw the whole frame when the boxes would cover more than this share of it.
WHOLE_SHARE = 0.6


@dataclass(frozen=True)
class ScaleBlocks:
    """A frame (src_w, src_h) scaled up to (dst_w, dst_h): `block` source pixels make `to`
    destination pixels, per axis."""

    src: tuple[int, int]
    dst: tuple[int, int]
    block: tuple[int, int]
    to: tuple[int, int]

    def region(self, box: Box) -> tuple[Box, Box]:
        """(source box with its overlap, destination box) that rescale `box` (frame pixels)."""
        (x0, x1), (dx0, dx1) = self._axis(box[0], box[0] + box[2], 0)
        (y0, y1), (dy0, dy1) = self._axis(box[1], box[1] + box[3], 1)
        return (x0, y0, x1 - x0 + 1, y1 - y0 + 1), (dx0, dy0, dx1 - dx0, dy1 - dy0)

    def _axis(self, lo: int, hi: int, axis: int) -> tuple[tuple[int, int], tuple[int, int]]:
        block, to, size = self.block[axis], self.to[axis], self.src[axis]
        lo = max(0, (lo // block - 1) * block)  # one block before: it reads our first pixel
        hi = min(size, -(-hi // block) * block)
        if hi - lo < 2 * block:  # one block alone can be as large scaled as with its overlap,
            hi = min(size, lo + 2 * block)  # and smoothscale then copies instead of scaling
            lo = max(0, hi - 2 * block)
        return (lo, hi), (lo // block * to, hi // block * to)


def scale_blocks(frame_size: tuple[int, int], dst_size: tuple[int, int]) -> ScaleBlocks | None:
    """The blocks for scaling frame_size up to dst_size, or None where boxes cannot be
    rescaled alone (shrinking, or blocks over MAX_BLOCK pixels)."""
    (w, h), (dw, dh) = frame_size, dst_size
    if dw <= w or dh <= h:
        return None
    gx, gy = gcd(w, dw), gcd(h, dh)
    block = (w // gx, h // gy)
    if max(block) > MAX_BLOCK or 2 * block[0] > w or 2 * block[1] > h:
        return None
    return ScaleBlocks((w, h), (dw, dh), block, (dw // gx, dh // gy))


def tile_boxes(changed: np.ndarray, grid: tuple[int, int, int, int],
               frame_size: tuple[int, int]) -> list[Box]:
    """Boxes (frame pixels, clipped to the frame) covering the changed tiles (flat indices
    into `grid` = (rows, columns, tile width, tile height)), GROUP x GROUP tiles at a time."""
    if changed.size == 0:
        return []
    # A loop shows the same steps over and over: each step's boxes are worked out once.
    changed = np.ascontiguousarray(changed, np.int64)
    return list(_tile_boxes(changed.tobytes(), tuple(grid), tuple(frame_size)))


@lru_cache(maxsize=512)
def _tile_boxes(changed_bytes: bytes, grid: tuple[int, int, int, int],
                frame_size: tuple[int, int]) -> tuple[Box, ...]:
    changed = np.frombuffer(changed_bytes, np.int64)
    rows, cols, tw, th = grid
    group_rows, group_cols = -(-rows // GROUP), -(-cols // GROUP)
    dirty = np.zeros((group_rows, group_cols), bool)
    dirty[changed // cols // GROUP, changed % cols // GROUP] = True
    # Runs of dirty groups along each group row: where a row's edges go up and down.
    edges = np.diff(np.pad(dirty, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    starts_r, starts_c = np.nonzero(edges == 1)
    _, ends_c = np.nonzero(edges == -1)  # same order: row by row, left to right
    runs_by_row: dict[int, list[tuple[int, int]]] = {}
    for r, c0, c1 in zip(starts_r.tolist(), starts_c.tolist(), ends_c.tolist()):
        runs_by_row.setdefault(r, []).append((c0, c1))
    open_runs: dict[tuple[int, int], int] = {}  # (first, end column) -> first group row
    done: list[tuple[int, int, int, int]] = []  # (first, end column, first, last group row)
    for r in range(group_rows + 1):
        runs = runs_by_row.get(r, ())
        for run in [run for run in open_runs if run not in runs]:
            done.append((*run, open_runs.pop(run), r - 1))
        for run in runs:
            open_runs.setdefault(run, r)
    width, height = frame_size
    gw, gh = GROUP * tw, GROUP * th
    boxes = []
    for c0, c1, r0, r1 in done:
        x0, y0 = c0 * gw, r0 * gh
        x1, y1 = min(width, c1 * gw), min(height, (r1 + 1) * gh)
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1 - x0, y1 - y0))
    return tuple(boxes)


def merge_overlapping(a: Box, b: Box) -> tuple[Box, ...]:
    """The old and new patch boxes: one box around both where that is less to draw than two."""
    boxes = tuple(box for box in (a, b) if box[2] > 0 and box[3] > 0)
    if len(boxes) < 2 or a == b:
        return boxes[:1]
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    union = (x0, y0, x1 - x0, y1 - y0)
    return (union,) if union[2] * union[3] <= a[2] * a[3] + b[2] * b[3] else boxes


@dataclass(frozen=True)
class Redraw:
    """What a screen path draws anew for a frame: the whole frame, or the template's changed
    tiles (flat indices into `grid`) and `boxes` (frame pixels: the old and new patch boxes).
    Nothing at all when not whole and both are empty."""

    frame_size: tuple[int, int]
    whole: bool = True
    tiles: np.ndarray | None = None
    grid: tuple[int, int, int, int] | None = None
    boxes: tuple[Box, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.whole and not self.boxes and (self.tiles is None or self.tiles.size == 0)

    def tile_boxes(self) -> list[Box]:
        if self.whole or self.tiles is None or self.grid is None:
            return []
        return tile_boxes(self.tiles, self.grid, self.frame_size)

    def partial_boxes(self) -> list[Box] | None:
        """The boxes to draw (changed tiles' and patches'), or None: draw the whole frame
        (asked to, or the boxes would cover more than WHOLE_SHARE of it)."""
        if self.whole:
            return None
        boxes = [*self.tile_boxes(), *self.boxes]
        return boxes if covered_share(boxes, self.frame_size) <= WHOLE_SHARE else None

    def bounds(self) -> Box:
        """One box around everything to draw (the whole frame when whole)."""
        if self.whole:
            return (0, 0, *self.frame_size)
        boxes = [*self.boxes, *self.tile_boxes()]
        if not boxes:
            return (0, 0, 0, 0)
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1 = max(b[0] + b[2] for b in boxes)
        y1 = max(b[1] + b[3] for b in boxes)
        return x0, y0, x1 - x0, y1 - y0


def covered_share(boxes: list[Box], frame_size: tuple[int, int]) -> float:
    """The share of the frame the boxes cover (overlaps counted twice: an upper bound)."""
    return sum(w * h for _, _, w, h in boxes) / (frame_size[0] * frame_size[1])
