"""Compositor: blends the rendered mouth crop with the template frame under a soft mask.

patch = template * (1 - m) + crop * m, over the mask's active box only, in integer
arithmetic (weights 0..256) into a patch buffer the compositor owns: no float temporaries,
no new arrays per frame, and no full-frame copy. The sink pastes the patch over the template
(runtime/display/sink.py), in the one full-frame pass it makes anyway.
"""
from __future__ import annotations


import numpy as np


from runtime.display.sink import NO_BOX, Box

#: Weight of "all crop": 256 makes (t*(256-w) + c*w) >> 8 exact at both ends.
_ONE = 256


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
    """Blends crops of the mask's size into template frames: blend() -> (patch, box)."""

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
        self._patch = np.empty((self.crop_h, self.crop_w, 3), np.uint8)

    def blend(self, template: np.ndarray, crop: np.ndarray | None, x: int, y: int
              ) -> tuple[np.ndarray | None, Box]:
        """`crop` (h, w, 3) uint8 placed with its top-left at (x, y) over `template` (H, W, 3):
        the blended patch (contiguous, reused by the next call) and the frame box it covers.

        crop None (quality PASS), or a box entirely off the frame: (None, NO_BOX)."""
        if template.ndim != 3 or template.shape[2] != 3 or template.dtype != np.uint8:
            raise ValueError(f"template {template.shape} {template.dtype}: expected (H, W, 3) uint8")
        if crop is None:
            return None, NO_BOX
        if crop.shape != (self.crop_h, self.crop_w, 3) or crop.dtype != np.uint8:
            raise ValueError(f"crop {crop.shape} {crop.dtype}: expected "
                             f"({self.crop_h}, {self.crop_w}, 3) uint8")
        box = self._frame_box(template.shape, x, y)
        if box is None:
            return None, NO_BOX
        bx, by, bw, bh = box
        cx, cy = bx - x, by - y  # the same box in crop coordinates
        # A contiguous (bh, bw, 3) view of the patch buffer: sinks blit it as is.
        patch = self._patch.reshape(-1)[: bh * bw * 3].reshape(bh, bw, 3)
        a = self._scratch_a[:bh, :bw]
        b = self._scratch_b[:bh, :bw]
        np.multiply(template[by:by + bh, bx:bx + bw], self._inverse[cy:cy + bh, cx:cx + bw], out=a)
        np.multiply(crop[cy:cy + bh, cx:cx + bw], self._weight[cy:cy + bh, cx:cx + bw], out=b)
        np.add(a, b, out=a)  # at most 255 * 256: fits uint16
        np.add(a, _ONE // 2, out=a)  # round to nearest
        np.right_shift(a, 8, out=a)
        np.copyto(patch, a, casting="unsafe")
        return patch, box

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
