"""The template of a real person, as the renderer's dataset writer wants it (a PairSource of
tools/avatar/dataset.py): the chosen loop frames, one mouth box per frame, and the mouth
model posing each frame's mouth for any parameters.

The box has one size for the whole loop (the bundle's box_size): at least 2.2 mouth widths of
the loop's median mouth, so the chin has room to drop, in whole multiples of the fine stage. Its position follows the smoothed mesh,
rounded to whole pixels (the bundle stores integers); the mouth model draws each target at
the mesh's exact sub-pixel position inside the box, so the drawn mouth follows the face, not
the box.
"""
from __future__ import annotations

import numpy as np

from .mouth_model import MouthModel

BOX_WIDTHS = 2.2
#: The fine stage's size (tools/renderer: crop_size 128, coarse 64).
BOX_MULTIPLE = 128


def box_size_for(points: np.ndarray, frame_size: tuple[int, int], scale: float = BOX_WIDTHS,
                 multiple: int = BOX_MULTIPLE) -> int:
    """One box side for every frame: the smallest multiple of `multiple` (the renderer's fine
    stage size: its inputs are exact area means of the box) of at least `scale` median mouth
    widths, and no larger than the frame."""
    widths = np.linalg.norm(points[:, 291] - points[:, 61], axis=1)
    wanted = scale * float(np.nanmedian(widths))
    size = multiple * max(1, int(np.ceil(wanted / multiple)))
    largest = min(frame_size) // multiple * multiple
    if largest < multiple:
        raise ValueError(f"the frame {frame_size[0]}x{frame_size[1]} is smaller than one "
                         f"{multiple} px mouth box")
    return min(size, largest)


def crop_boxes(points: np.ndarray, size: int, frame_size: tuple[int, int]) -> np.ndarray:
    """(N, 2) int32 top-left corners: centred on the mouth corners' midpoint horizontally
    and 0.3 mouth widths below the lips, clamped into the frame."""
    width, height = frame_size
    mouth_w = np.linalg.norm(points[:, 291] - points[:, 61], axis=1)
    cx = (points[:, 61, 0] + points[:, 291, 0]) / 2
    cy = (points[:, 13, 1] + points[:, 14, 1]) / 2 + 0.3 * mouth_w
    x = np.clip(np.round(cx - size / 2), 0, width - size)
    y = np.clip(np.round(cy - size / 2), 0, height - size)
    return np.stack([x, y], axis=1).astype(np.int32)


def mouth_box(points: np.ndarray, frame_size: tuple[int, int]) -> tuple[int, int, int]:
    """(x, y, size) of one frame's mouth box by the same rule as a whole loop's."""
    size = box_size_for(points[None], frame_size)
    x, y = (int(v) for v in crop_boxes(points[None], size, frame_size)[0])
    return x, y, size


class VideoMouthSource:
    """Loop frames + their meshes -> template crops and mouth-model targets."""

    def __init__(self, frames: list[np.ndarray], points: np.ndarray, size: int | None = None,
                 boxes: np.ndarray | None = None):
        """`size` and `boxes`: a bundle's own (eval_avatar --truth), else chosen here."""
        self.frames = frames
        self.points = points.astype(np.float64)
        height, width = frames[0].shape[:2]
        self.frame_size = (width, height)
        self.box_size = size or box_size_for(self.points, self.frame_size)
        self._boxes = (np.asarray(boxes, np.int32) if boxes is not None
                       else crop_boxes(self.points, self.box_size, self.frame_size))
        self._models: dict[int, MouthModel] = {}

    @property
    def count(self) -> int:
        return len(self.frames)

    def crop_boxes(self) -> np.ndarray:
        return self._boxes

    def model(self, k: int) -> MouthModel:
        if k not in self._models:
            x, y = (int(v) for v in self._boxes[k])
            self._models[k] = MouthModel(self.frames[k], self.points[k], (x, y, self.box_size))
        return self._models[k]

    def render_box(self, k: int, params=None) -> np.ndarray:
        x, y = (int(v) for v in self._boxes[k])
        if params is None or not np.any(params):
            return np.ascontiguousarray(self.frames[k][y:y + self.box_size, x:x + self.box_size])
        return self.model(k).render(np.asarray(params, np.float64))
