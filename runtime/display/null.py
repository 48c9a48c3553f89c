"""NullSink: frames go nowhere (benchmarks, headless runs that need no output)."""
from __future__ import annotations

import logging

from .sink import DisplaySink, Picture

log = logging.getLogger(__name__)


class NullSink(DisplaySink):
    """Counts frames and shows nothing; takes the same code path as a real sink."""

    name = "null"

    def __init__(self) -> None:
        self.frame_count = 0
        self.frame_size: tuple[int, int] | None = None

    def open(self, frame_size: tuple[int, int]) -> None:
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.frame_count = 0
        log.debug("null sink open, frame size %dx%d", *self.frame_size)

    def present(self, picture: Picture, index: int) -> None:
        self.frame_count += 1

    def close(self) -> str | None:
        log.debug("null sink closed after %d frames", self.frame_count)
        return None
