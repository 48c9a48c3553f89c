"""Runs parameter sets through the runtime's renderer and compositor and scores them.

Everything the appliance would show goes through the same objects it uses: NcnnRenderer
(FULL = coarse + fine, COARSE = coarse only) and Compositor with the bundle's mask. Scores:
- crop: the renderer's box against the generator's box (PSNR, SSIM on luma), and PSNR over
  the pixels where the truth differs from the template (the mouth itself: the box is mostly
  unchanged skin, which flatters the whole-box figure);
- frame: the composited frame against the generator's full frame. The truth differs from the
  template only inside the mouth box (checked by `check_full_frames` on real full frames), and
  the compositor changes only that box, so the frame's squared error is the box's, spread over
  the frame's pixels: exact, at the cost of a box instead of a frame render;
- temporal: for rows that form sequences, the mean absolute change between consecutive
  frames, in frame coordinates over the union of the sequence's mouth boxes (what a viewer
  sees flicker in), for the output and for the truth.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from runtime.display.sink import Picture
from runtime.quality.levels import Quality
from runtime.render.bundle import AvatarBundle
from runtime.render.compositor import Compositor
from runtime.render.renderer import NcnnRenderer

from .metrics import PSNR_CAP_DB, mse, psnr, psnr_from_mse, ssim, summarize
from .sets import ParamSet
from .truth import GroundTruth

log = logging.getLogger(__name__)

LEVELS = (Quality.FULL, Quality.COARSE)
STABLE_RATIO_TOLERANCE = 0.10  # the issue: frame-to-frame change within 10% of the truth's


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True, disable=None, leave=False)


@dataclass(frozen=True)
class SetResult:
    summary: dict                  # the JSON section for this set
    crop_psnr: dict                # level label -> (n,) per-row crop PSNR (nan for rest rows)
    changes: dict                  # "truth"/level label -> (steps,) frame-to-frame change


class Evaluator:
    def __init__(self, bundle: AvatarBundle, truth: GroundTruth, threads: int = 1) -> None:
        self.bundle = bundle
        self.truth = truth
        self.threads = threads
        self.renderer = NcnnRenderer(bundle, threads=threads)
        self.compositor = Compositor(bundle.mask)
        self._frame: np.ndarray | None = None  # composite()'s output, reused
        width, height = bundle.frame_size
        self.frame_pixels = width * height
        #: Set when check_full_frames finds the truth changing outside the box: then every
        #: frame score is taken on real full frames (slow but still exact).
        self.full_frames_exact = False

    # -- pieces ---------------------------------------------------------------------------
    def _box_xy(self, k: int) -> tuple[int, int]:
        x, y = self.bundle.crop_boxes[k]
        return int(x), int(y)

    def template_box(self, k: int) -> np.ndarray:
        x, y = self._box_xy(k)
        b = self.bundle.box_size
        return np.asarray(self.bundle.frames[k][y:y + b, x:x + b])

    def render(self, params: np.ndarray, k: int, level: Quality) -> tuple[np.ndarray, bool]:
        """(crop, ran): the crop the appliance would paste; ran False = rest (template shown)."""
        crop = self.renderer.render(params, k, level)
        return (self.template_box(k), False) if crop is None else (crop, True)

    def composite(self, crop: np.ndarray | None, k: int) -> np.ndarray:
        x, y = self._box_xy(k)
        template = self.bundle.frames[k]
        patch, box = self.compositor.blend(template, crop, x, y)
        if self._frame is None or self._frame.shape != template.shape:
            self._frame = np.empty_like(template)
        # What a sink shows: the template, then the patch (runtime/display/sink.py).
        Picture(template, patch, box).paint_into(self._frame)
        return self._frame  # reused: valid until the next composite

    # -- checks ---------------------------------------------------------------------------
    def check_full_frames(self, rows: ParamSet, count: int) -> dict:
        """Render `count` real truth frames and compare them with template + truth box."""
        picks = np.argsort(-rows.params.max(axis=1) - rows.params[:, 0])[:count]  # widest mouths
        worst_outside, worst_gap = 0, 0.0
        b = self.bundle.box_size
        for i in picks:
            k, p = int(rows.frames[i]), rows.params[i]
            full = self.truth.frame(k, p)
            x, y = self._box_xy(k)
            outside = np.abs(full.astype(np.int16) - self.bundle.frames[k]).max(axis=2)
            outside[y:y + b, x:x + b] = 0
            worst_outside = max(worst_outside, int(outside.max()))
            crop, ran = self.render(p, k, Quality.FULL)
            comp = self.composite(crop if ran else None, k)
            # Squared errors, not PSNRs: an exact match makes PSNR infinite on both sides.
            worst_gap = max(worst_gap, abs(mse(comp, full) - self._frame_mse(comp, self.truth.box(k, p), k)))
        self.full_frames_exact = worst_outside > 0
        if self.full_frames_exact:
            log.warning("the truth changes outside the mouth box (by up to %d levels): scoring "
                        "frames on full renders", worst_outside)
        return {"frames": len(picks), "max_abs_diff_outside_box": worst_outside,
                "max_frame_mse_gap": worst_gap,
                "method": "full renders" if self.full_frames_exact else
                          "box error over the frame's pixels (outside the box is exact)"}

    def _frame_mse(self, comp: np.ndarray, truth_box: np.ndarray, k: int) -> float:
        """The frame's MSE from its mouth box alone (the rest of the frame is exact)."""
        x, y = self._box_xy(k)
        b = self.bundle.box_size
        return mse(comp[y:y + b, x:x + b], truth_box) * b * b / self.frame_pixels

    def determinism(self, params: np.ndarray, k: int, repeats: int = 5) -> dict:
        """Same params, same frame, `repeats` renders (and a second renderer): max abs diff."""
        out = {"repeats": repeats, "frame": int(k), "params": [round(float(v), 3) for v in params]}
        other = NcnnRenderer(self.bundle, threads=self.threads)
        for level in LEVELS:
            first = self.renderer.render(params, k, level)
            worst = 0
            for _ in range(repeats - 1):
                worst = max(worst, int(np.abs(self.renderer.render(params, k, level).astype(np.int16)
                                              - first).max()))
            worst = max(worst, int(np.abs(other.render(params, k, level).astype(np.int16) - first).max()))
            comp0 = self.composite(first, k).copy()
            worst_comp = max(int(np.abs(self.composite(first, k).astype(np.int16) - comp0).max())
                             for _ in range(repeats - 1))
            out[level.label] = {"crop_max_abs_diff": worst, "composite_max_abs_diff": worst_comp}
        return out

    # -- sets -----------------------------------------------------------------------------
    def evaluate(self, rows: ParamSet) -> SetResult:
        n = len(rows.frames)
        labels = [level.label for level in LEVELS]
        crop_psnr = {lab: np.full(n, np.nan) for lab in labels}
        crop_mse = {lab: np.full(n, np.nan) for lab in labels}
        crop_ssim = {lab: np.full(n, np.nan) for lab in labels}
        changed_psnr = {lab: np.full(n, np.nan) for lab in labels}
        frame_psnr = {lab: np.full(n, np.nan) for lab in labels}
        changed_share = np.full(n, np.nan)
        regions = self._sequence_regions(rows)
        changes: dict[str, list[float]] = {"truth": [], **{lab: [] for lab in labels}}
        previous: dict[str, np.ndarray] | None = None
        rest = 0
        bar = _progress(n, rows.name)
        for i in range(n):
            k, p = int(rows.frames[i]), rows.params[i]
            truth_box = self.truth.box(k, p)
            changed = np.any(truth_box != self.template_box(k), axis=2)
            seq = int(rows.sequence[i])
            current: dict[str, np.ndarray] = {}
            if seq >= 0:
                current["truth"] = self._truth_region(truth_box, k, regions[seq])
            ran_any = False
            for level, lab in zip(LEVELS, labels):
                crop, ran = self.render(p, k, level)
                comp = self.composite(crop if ran else None, k)
                if seq >= 0:
                    x0, y0, x1, y1 = regions[seq]
                    current[lab] = comp[y0:y1, x0:x1].astype(np.int16)
                if not ran:
                    continue
                ran_any = True
                crop_mse[lab][i] = mse(crop, truth_box)
                crop_psnr[lab][i] = psnr_from_mse(crop_mse[lab][i])
                crop_ssim[lab][i] = ssim(crop, truth_box)
                changed_psnr[lab][i] = psnr(crop, truth_box, changed) if changed.any() else np.nan
                frame_psnr[lab][i] = (psnr(comp, self.truth.frame(k, p)) if self.full_frames_exact
                                      else psnr_from_mse(self._frame_mse(comp, truth_box, k)))
            if ran_any:
                changed_share[i] = float(changed.mean())
            else:
                rest += 1
            if previous is not None and seq >= 0 and seq == int(rows.sequence[i - 1]):
                for key, region in current.items():
                    changes[key].append(float(np.abs(region - previous[key]).mean()))
            previous = current if seq >= 0 else None
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        summary = {"rows": n, "rest_rows": rest, "notes": list(rows.notes), "levels": {}}
        for lab in labels:
            finite_mse = crop_mse[lab][~np.isnan(crop_mse[lab])]
            psnr_summary = summarize(crop_psnr[lab], cap=PSNR_CAP_DB)
            psnr_summary["of_mean_mse"] = (round(psnr_from_mse(float(finite_mse.mean())), 4)
                                           if finite_mse.size else None)
            summary["levels"][lab] = {
                "crop_psnr_db": psnr_summary,
                "crop_ssim": summarize(crop_ssim[lab]),
                "changed_region_psnr_db": summarize(changed_psnr[lab], cap=PSNR_CAP_DB),
                "frame_psnr_db": summarize(frame_psnr[lab], cap=PSNR_CAP_DB),
            }
        summary["changed_pixel_share_of_box"] = summarize(changed_share)["mean"]
        if changes["truth"]:
            summary["temporal"] = change_summary(changes, int(np.unique(rows.sequence[rows.sequence >= 0]).size))
        return SetResult(summary, crop_psnr, {k: np.asarray(v) for k, v in changes.items()})

    def _sequence_regions(self, rows: ParamSet) -> dict[int, tuple[int, int, int, int]]:
        """Per sequence id: (x0, y0, x1, y1), the union of its frames' mouth boxes."""
        b = self.bundle.box_size
        out = {}
        for seq in np.unique(rows.sequence[rows.sequence >= 0]):
            xy = self.bundle.crop_boxes[rows.frames[rows.sequence == seq]]
            out[int(seq)] = (int(xy[:, 0].min()), int(xy[:, 1].min()),
                             int(xy[:, 0].max()) + b, int(xy[:, 1].max()) + b)
        return out

    def _truth_region(self, truth_box: np.ndarray, k: int, region: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = region
        x, y = self._box_xy(k)
        b = self.bundle.box_size
        out = np.asarray(self.bundle.frames[k][y0:y1, x0:x1]).astype(np.int16)
        out[y - y0:y - y0 + b, x - x0:x - x0 + b] = truth_box
        return out


def change_summary(changes: dict[str, list[float]], sequences: int) -> dict:
    """Mean frame-to-frame change of output and truth, and their ratio per level."""
    truth = float(np.mean(changes["truth"]))
    out = {"sequences": sequences, "steps": len(changes["truth"]),
           "truth_mean_abs_change": round(truth, 5)}
    for lab in (level.label for level in LEVELS):
        value = float(np.mean(changes[lab]))
        ratio = value / truth if truth > 0 else (1.0 if value == 0 else float("inf"))
        out[lab] = {"mean_abs_change": round(value, 5), "ratio_to_truth": round(ratio, 4),
                    "within_tolerance": bool(abs(ratio - 1.0) <= STABLE_RATIO_TOLERANCE)}
    return out
