"""The display sink interface: what one shown frame is, and what a sink must do with it.

A frame is a `Picture`: the template frame (read-only, owned by the template cache) and the
mouth patch the compositor blended for it, with the box it covers. A sink makes one
full-frame pass of its own from these (the window blits the template, then the patch; the
recorder copies the template into its buffer, then the patch): nobody pays for a composed
full frame that is only copied again.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from runtime import SAMPLE_RATE

Box = tuple[int, int, int, int]  # (x, y, w, h) in frame pixels
NO_BOX: Box = (0, 0, 0, 0)


class TemplateTiles(Protocol):
    """What a sink needs of a tiled template to redraw only the tiles that changed."""

    @property
    def tile_grid(self) -> tuple[int, int, int, int]:
        """(tile rows, tile columns, tile width, tile height)."""

    def changed_tiles(self, before: int, after: int) -> np.ndarray:
        """Flat indices (row * columns + column) of the tiles that differ."""


class DisplayError(Exception):
    """The sink cannot be opened or cannot go on; one-line reason."""


@dataclass(frozen=True)
class Picture:
    """One video frame as a sink receives it. Neither array may be kept or written: copy.

    `template` (H, W, 3) uint8 RGB; `patch` (h, w, 3) uint8 to paste at `box` (x, y, w, h),
    or None (quality PASS: the template alone). `template_key` names the template frame
    (its index in the loop): the same key means the same template pixels, so a sink may
    redraw only the old and new patch boxes. `template_tiles`, where the template is held as
    tiles (runtime/render/tile_template.py), says which tiles differ between two keys
    (`tile_grid`, `changed_tiles(key_before, key_after)`): a sink may redraw only those."""

    template: np.ndarray
    patch: np.ndarray | None = None
    box: Box = NO_BOX
    template_key: object = None
    template_tiles: TemplateTiles | None = None

    def paint_into(self, out: np.ndarray) -> None:
        """The composed frame into `out` (H, W, 3): the template, then the patch."""
        np.copyto(out, self.template)
        if self.patch is not None:
            x, y, w, h = self.box
            out[y:y + h, x:x + w] = self.patch

    def composed(self) -> np.ndarray:
        """The composed frame as a new array (tests, screenshots; not on the frame path)."""
        out = np.empty_like(self.template)
        self.paint_into(out)
        return out


class DisplaySink(abc.ABC):
    """open(frame_size); present(picture, index) once per shown frame; close().

    `index` is the video frame number k (frame k shows audio time k/25 s); indices jump
    when the scheduler drops frames. The attributes below have null defaults; a sink that
    has more to say overrides them."""

    name = "sink"
    #: True: the frame loop hands it the audio of each frame through feed_audio (recorder).
    wants_audio = False
    #: Why it stopped showing frames while the appliance goes on (disk full), else None.
    failure: str | None = None
    #: The last problem it survived (an encoder that died and was replaced), else None.
    incident: str | None = None
    #: The file it writes, if any.
    path: Path | None = None

    @abc.abstractmethod
    def open(self, frame_size: tuple[int, int]) -> None:
        """frame_size is (width, height). Raises DisplayError with a one-line reason."""

    @abc.abstractmethod
    def present(self, picture: Picture, index: int) -> None:
        ...

    def feed_audio(self, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
        """The frame's audio (float32 mono); only called when `wants_audio`."""

    def poll_quit(self) -> bool:
        """True when the user asked to quit (window closed, Escape). Cheap; called per frame."""
        return False

    def close(self) -> str | None:
        """Finish; returns a line for the user (e.g. where the recording is), or None."""
        return None
