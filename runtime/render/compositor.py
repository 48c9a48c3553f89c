"""Compositor: pastes the rendered mouth crop into the template frame with a soft mask.

out = template * (1 - m) + crop * m, over the crop box only, in integer arithmetic
(weights 0..256) into a frame buffer the compositor owns: no float temporaries and no
new arrays per frame.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # (x, y, w, h) in frame pixels
#: Weight of "all crop": 256 makes (t*(256-w) + c*w) >> 8 exact at both ends.
_ONE = 256
_EMPTY_BOX: Box = (0, 0, 0, 0)


def soft_mask(h: int, w: int, feather_px: int, shape: str = "rounded") -> np.ndarray:
    """(h, w) float32 mask in [0, 1]: 1 inside, easing to exactly 0 on the outermost pixels.

    shape "rounded": a rounded rectangle whose edge ramps over feather_px pixels;
    "ellipse": an ellipse touching the box, ramping over feather_px pixels. The border ring
    is always 0, so the box edge never shows in the composite.
    """
    if feather_px < 1:
        raise ValueError(f"feather_px {feather_px}: must be >= 1")
    if min(h, w) < 2 * feather_px + 3:
        raise ValueError(f"mask {w}x{h} too small for feather_px {feather_px}")
    xs = np.arange(w, dtype=np.float32) + 0.5  # pixel centres
    ys = np.arange(h, dtype=np.float32) + 0.5
    if shape == "rounded":
        # Distance outside an inner rectangle inset by feather + 1 px: round corners for free,
        # and the outermost pixel (centre 0.5 px from the edge) is beyond the ramp.
        inset = feather_px + 1.0
        dx = np.maximum(np.maximum(inset - xs, xs - (w - inset)), 0.0)
        dy = np.maximum(np.maximum(inset - ys, ys - (h - inset)), 0.0)
        dist = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
        t = np.clip(1.0 - dist / feather_px, 0.0, 1.0)
    elif shape == "ellipse":
        a, b = w / 2.0 - 1.0, h / 2.0 - 1.0  # semi-axes of the zero contour, 1 px inside
        r = np.sqrt(((xs[None, :] - w / 2.0) / a) ** 2 + ((ys[:, None] - h / 2.0) / b) ** 2)
        t = np.clip((1.0 - r) * min(a, b) / feather_px, 0.0, 1.0)
    else:
        raise ValueError(f"mask shape {shape!r}: allowed are rounded, ellipse")
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)  # smoothstep: no visible ramp edge


class Compositor:
    """Blends crops of the mask's size into template frames.

    compose() returns (frame, dirty): dirty is the box that changed since the frame it
    returned before, or None for "everything" (the DisplaySink contract). That is only
    known when the caller names the template frame with `template_key` (e.g. its index in
    the template loop): same key as last time -> the old and new paste boxes; a different
    key or no key -> None.
    """

    def __init__(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask)
        if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.floating):
            raise ValueError(f"mask must be a (h, w) float array, got {mask.shape} {mask.dtype}")
        if mask.size == 0 or float(mask.min()) < 0.0 or float(mask.max()) > 1.0:
            raise ValueError("mask values must lie in [0, 1]")
        self.crop_h, self.crop_w = mask.shape
        weights = np.rint(mask * _ONE).astype(np.uint16)
        # Channel-expanded once, so the per-frame multiplies need no broadcasting.
        self._weight = np.repeat(weights[:, :, None], 3, axis=2)
        self._inverse = (_ONE - self._weight).astype(np.uint16)
        rows = np.flatnonzero(weights.any(axis=1))
        cols = np.flatnonzero(weights.any(axis=0))
        # Only where the mask is above 0 can the composite differ from the template.
        self._active = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1) \
            if rows.size else None
        self._scratch_a = np.empty((self.crop_h, self.crop_w, 3), np.uint16)
        self._scratch_b = np.empty_like(self._scratch_a)
        self._out: np.ndarray | None = None
        self._out_key: object = None   # template in the buffer (None: unknown)
        self._out_box: Box | None = None  # box blended into the buffer
        self._shown_key: object = None  # what the last returned frame showed
        self._shown_box: Box | None = None

    def compose(self, template: np.ndarray, crop: np.ndarray | None, x: int, y: int,
                template_key: object = None) -> tuple[np.ndarray, Box | None]:
        """Paste `crop` (h, w, 3) uint8 with its top-left at (x, y) into `template` (H, W, 3).

        crop None (quality PASS) returns the template itself, uncopied. The returned buffer is
        reused by the next call: a sink that keeps it must copy it.
        """
        if crop is not None and (crop.shape != (self.crop_h, self.crop_w, 3)
                                 or crop.dtype != np.uint8):
            raise ValueError(f"crop {crop.shape} {crop.dtype}: expected "
                             f"({self.crop_h}, {self.crop_w}, 3) uint8")
        box = None if crop is None else self._frame_box(template.shape, x, y)
        if box is None:
            dirty = self._dirty(template_key, None)
            self._shown_key, self._shown_box = template_key, None
            return template, dirty
        out = self._buffer(template)
        if template_key is not None and template_key == self._out_key:
            if self._out_box is not None:  # undo last frame's paste; the rest is this template
                bx, by, bw, bh = self._out_box
                out[by:by + bh, bx:bx + bw] = template[by:by + bh, bx:bx + bw]
        else:
            np.copyto(out, template)
        self._blend(out, crop, x, y, box)
        self._out_key, self._out_box = template_key, box
        dirty = self._dirty(template_key, box)
        self._shown_key, self._shown_box = template_key, box
        return out, dirty

    def _buffer(self, template: np.ndarray) -> np.ndarray:
        if self._out is None or self._out.shape != template.shape:
            if template.ndim != 3 or template.shape[2] != 3 or template.dtype != np.uint8:
                raise ValueError(f"template {template.shape} {template.dtype}: "
                                 "expected (H, W, 3) uint8")
            self._out = np.empty_like(template)
            self._out_key, self._out_box = None, None
        return self._out

    def _frame_box(self, frame_shape: tuple[int, ...], x: int, y: int) -> Box | None:
        """The mask's active box placed at (x, y), clipped to the frame; None if nothing is left."""
        if self._active is None:
            return None
        ax0, ay0, ax1, ay1 = self._active
        x0, y0 = max(0, x + ax0), max(0, y + ay0)
        x1, y1 = min(frame_shape[1], x + ax1), min(frame_shape[0], y + ay1)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1 - x0, y1 - y0

    def _blend(self, out: np.ndarray, crop: np.ndarray, x: int, y: int, box: Box) -> None:
        bx, by, bw, bh = box
        cx, cy = bx - x, by - y  # the same box in crop coordinates
        dst = out[by:by + bh, bx:bx + bw]  # holds the template here
        a = self._scratch_a[:bh, :bw]
        b = self._scratch_b[:bh, :bw]
        np.multiply(dst, self._inverse[cy:cy + bh, cx:cx + bw], out=a)
        np.multiply(crop[cy:cy + bh, cx:cx + bw], self._weight[cy:cy + bh, cx:cx + bw], out=b)
        np.add(a, b, out=a)  # at most 255 * 256: fits uint16
        np.add(a, _ONE // 2, out=a)  # round to nearest
        np.right_shift(a, 8, out=a)
        np.copyto(dst, a, casting="unsafe")

    def _dirty(self, key: object, box: Box | None) -> Box | None:
        if key is None or key != self._shown_key:
            return None
        boxes = [b for b in (self._shown_box, box) if b is not None]
        if not boxes:
            return _EMPTY_BOX
        x0 = min(b[0] for b in boxes)
        y0 = min(b[1] for b in boxes)
        x1 = max(b[0] + b[2] for b in boxes)
        y1 = max(b[1] + b[3] for b in boxes)
        return x0, y0, x1 - x0, y1 - y0
