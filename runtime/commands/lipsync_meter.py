"""Is lip sync kept? The audio model's `open` against what the screen shows, frame by frame.

For `edgemate bench --stress PROFILE`: the appliance calls the meter after every shown frame
(`Appliance(on_frame=...)`). The rendered mouth change of a frame is the mean absolute
difference between the crop it pasted and the template's own box (on a 4-pixel grid: 1/16
of the pixels, microseconds per frame). A mouth that follows the speech gives a change that
rises and falls with `open` (r near 1); a mouth that stays shut at PASS gives none (r 0).
"""
from __future__ import annotations

import math

import numpy as np

from runtime.quality.levels import Quality

#: A frame is a speech frame when some mouth parameter reaches this: the model moves the mouth.
SPEECH_MIN = 0.02
_GRID = 4


def pearson(x, y) -> float | None:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return None if x.size < 3 else 0.0
    return float(np.corrcoef(x, y)[0, 1])


class LipSyncMeter:
    def __init__(self):
        self.bundle = None  # attach() it once the appliance has loaded it
        self.opens: list[float] = []
        self.changes: list[float] = []
        self.levels: list[int] = []

    def attach(self, bundle) -> None:
        self.bundle = bundle

    def __call__(self, frame: int, index: int, params, plan, crop) -> None:
        if float(np.max(params)) < SPEECH_MIN:
            return
        change = 0.0
        if crop is not None:
            b = self.bundle
            x, y = (int(v) for v in b.crop_boxes[index])
            frame = b.template_frame(index)  # the frame just painted: no new tile copies
            h, w = frame.shape[:2]
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + b.box_size, w), min(y + b.box_size, h)
            template = np.asarray(frame[y0:y1:_GRID, x0:x1:_GRID], np.int16)
            shown = crop[y0 - y:y1 - y:_GRID, x0 - x:x1 - x:_GRID].astype(np.int16)
            change = float(np.abs(shown - template).mean())
        self.opens.append(float(params[0]))
        self.changes.append(change)
        level = plan.level if plan.blend_from is None else min(plan.level, plan.blend_from)
        self.levels.append(int(level))

    def summary(self) -> dict:
        """r(open, rendered change) over speech frames and the share rendered at COARSE+."""
        frames = len(self.opens)
        r = pearson(self.opens, self.changes)
        kept = sum(level >= Quality.COARSE for level in self.levels)
        return {"speech_frames": frames,
                "lip_sync_r": None if r is None or math.isnan(r) else round(r, 3),
                "speech_at_coarse_or_better": round(kept / frames, 4) if frames else None}
