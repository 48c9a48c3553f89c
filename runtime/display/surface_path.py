"""The window sink's CPU path: frames drawn into SDL's plain window surface, only what changed.

Unscaled (the letterbox box is the frame's size), the changed template tiles and the old and
new patch boxes are blitted straight in (RGB -> the screen's format on the way). Scaled, the
frame is kept composed in a surface of the screen's pixel format and scaled into the
letterbox box: "smooth" filters (pygame's smoothscale, SIMD), "fast" repeats pixels (a third
cheaper, jagged edges). With the smooth filter scaling up by a ratio of small blocks (720x1280
on 1080x1920: 2 pixels to 3), only boxes around what changed are scaled again, and give the
pixels a whole-frame scale would (runtime/display/dirty.py). Only those boxes go to the
screen (runtime/display/sdl_rects.py).

Per 1080x1920 frame of the default avatar at 25 fps here: converting, scaling and sending the
whole frame cost 5.2 ms (p50); the changed boxes, a third of the frame, about 3 ms
(docs/PERFORMANCE.md).
"""
from __future__ import annotations

import logging
import os

import numpy as np

from .dirty import Redraw, scale_blocks
from .screen_paths import SCALE_FILTERS, blit_picture
from .sdl_rects import WindowRects
from .sink import Box, Picture

log = logging.getLogger(__name__)

_BLACK = (0, 0, 0, 255)


class SurfacePath:
    """The CPU draws into the window's surface; SDL shows it with a framebuffer update."""

    name = "surface"

    def __init__(self, pg, window, frame_size: tuple[int, int], dst: Box,
                 scale_filter: str = "smooth") -> None:
        if scale_filter not in SCALE_FILTERS:
            raise ValueError(f"scale_filter {scale_filter!r}: allowed are {', '.join(SCALE_FILTERS)}")
        self._pg, self._window = pg, window
        self.frame_size, self.scale_filter = frame_size, scale_filter
        hint_before = os.environ.get("SDL_FRAMEBUFFER_ACCELERATION")
        # Read by SDL when it makes the window's framebuffer: "0" = no GL texture behind it.
        os.environ["SDL_FRAMEBUFFER_ACCELERATION"] = "0"
        try:
            self._screen = window.get_surface()
        finally:
            if hint_before is None:
                os.environ.pop("SDL_FRAMEBUFFER_ACCELERATION", None)
            else:
                os.environ["SDL_FRAMEBUFFER_ACCELERATION"] = hint_before
        self._rects = WindowRects(window)
        self._composed = None
        self._set_dst(dst)

    def _set_dst(self, dst: Box) -> None:
        self.dst = dst
        size = (dst[2], dst[3])
        self.scaled = size != self.frame_size
        self._blocks = (scale_blocks(self.frame_size, size)
                        if self.scaled and self.scale_filter == "smooth" else None)
        self._composed = None
        if self.scaled:
            w, h = self.frame_size
            pad = 1 if self._blocks is not None else 0  # a copy of the last column and row
            self._composed = self._pg.Surface((w + pad, h + pad), 0, self._screen)
        self._screen.fill(_BLACK)
        self._blank = True  # nothing of a frame on the surface yet: draw the next one whole

    @property
    def partial(self) -> bool:
        """True where a frame's changes are drawn alone (False: every frame whole)."""
        return not self.scaled or self._blocks is not None

    @property
    def redraw_mode(self) -> str:
        """What a frame redraws, for the bench and the status, and why."""
        if not self.partial:
            why = ("the fast filter" if self.scale_filter == "fast"
                   else "scaling down or by an odd ratio: boxes would not scale like the frame")
            return f"whole frames ({why})"
        sent = "sent as rectangles" if self._rects.available else "the window flipped whole"
        return f"changed boxes ({sent})"

    def resized(self, window, dst: Box) -> None:
        """The window changed size: SDL made a new surface for it."""
        self._screen = window.get_surface()
        self._set_dst(dst)

    def draw(self, picture: Picture, redraw: Redraw) -> None:
        target, (ax, ay) = ((self._composed, (0, 0)) if self.scaled else (self._screen, self.dst[:2]))
        boxes = None if self._blank or not self.partial else self._changed(redraw)
        blit_picture(self._pg, target, picture, self.frame_size, boxes, (ax, ay))
        if self.scaled:
            shown = self._scale_in(boxes)
        else:
            shown = None if boxes is None else [(ax + x, ay + y, w, h) for x, y, w, h in boxes]
        self._blank = False
        self._show(shown)

    def _changed(self, redraw: Redraw) -> list[Box] | None:
        """Boxes around the changed tiles and the patch boxes; None: the whole frame."""
        return redraw.partial_boxes()

    def _scale_in(self, boxes: list[Box] | None) -> list[Box] | None:
        """Scale the composed frame (or the boxes of it) into the letterbox box; the screen
        boxes drawn (None: all of it)."""
        pg, composed, (dx, dy, dw, dh) = self._pg, self._composed, self.dst
        blocks = self._blocks
        if blocks is None:
            into = self._screen.subsurface(self.dst)
            if self.scale_filter == "smooth":
                pg.transform.smoothscale(composed, (dw, dh), into)
            else:
                pg.transform.scale(composed, (dw, dh), into)
            return None
        w, h = self.frame_size
        regions = ([((0, 0, w + 1, h + 1), (0, 0, dw, dh))] if boxes is None
                   else [blocks.region(box) for box in boxes])
        self._pad([source for source, _ in regions])
        shown = []
        for (sx, sy, sw, sh), (bx, by, bw, bh) in regions:
            pg.transform.smoothscale(composed.subsurface((sx, sy, sw, sh)), (bw, bh),
                                     self._screen.subsurface((dx + bx, dy + by, bw, bh)))
            shown.append((dx + bx, dy + by, bw, bh))
        return None if boxes is None else shown

    def _pad(self, sources: list[Box]) -> None:
        """The padding column and row copy the frame's last ones where a box reads them."""
        composed, (w, h) = self._composed, self.frame_size
        for x, y, sw, sh in sources:
            if x + sw > w:  # reaches the padding column: rows y .. y + sh - 1 of it
                rows = min(sh, h - y)
                composed.blit(composed.subsurface((w - 1, y, 1, rows)).copy(), (w, y))
        for x, y, sw, sh in sources:
            if y + sh > h:  # the padding row, after the column (it takes the corner)
                composed.blit(composed.subsurface((x, h - 1, sw, 1)).copy(), (x, h))

    def _show(self, boxes: list[Box] | None) -> None:
        if boxes is None or not self._rects.update(boxes):
            self._window.flip()

    def redraw(self, show: bool = True) -> None:
        if show:
            self._window.flip()

    def reset(self) -> None:
        self._window.flip()

    def screenshot(self) -> np.ndarray:
        return self._pg.surfarray.array3d(self._screen).transpose(1, 0, 2).copy()

    def close(self) -> None:
        self._screen = self._composed = None
