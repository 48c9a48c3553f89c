"""The display sink interface."""
from __future__ import annotations

import abc

import numpy as np


class DisplayError(Exception):
    """The sink cannot be opened or cannot go on; one-line reason."""


class DisplaySink(abc.ABC):
    """open(frame_size); present(frame, index) once per shown frame; close().

    `frame` is a (H, W, 3) uint8 RGB array owned by the caller (copy it if you keep it).
    `index` is the video frame number k (frame k shows audio time k/25 s); indices can jump
    when the scheduler drops frames. `dirty` is the (x, y, w, h) box that changed since the
    previous frame or None for "everything", so a window can update only that region.
    """

    name = "sink"

    @abc.abstractmethod
    def open(self, frame_size: tuple[int, int]) -> None:
        """frame_size is (width, height). Raises DisplayError with a one-line reason."""

    @abc.abstractmethod
    def present(self, frame: np.ndarray, index: int,
                dirty: tuple[int, int, int, int] | None = None) -> None:
        ...

    def poll_quit(self) -> bool:
        """True when the user asked to quit (window closed, Escape). Cheap; called per frame."""
        return False

    def close(self) -> str | None:
        """Finish; returns a line for the user (e.g. where the recording is), or None."""
        return None
