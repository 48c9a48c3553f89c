"""EVAL_sheet.png (what the renderer draws next to the truth) and EVAL_plots.png.

Sheet layout: blocks stacked top to bottom. The first block holds the named combinations
(visemes) after the rest mouth; each further block sweeps two parameters alone through
0, .25, .5, .75, 1. Inside a block a header names each column, and the rows are FULL,
COARSE and the generator's truth (TRUTH); renderer tiles carry their crop PSNR. Labels use
tools/avatar/sheets.py's pygame font helper; the PNG is written by tools/avatar/png.py.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from runtime.quality.levels import Quality

from tools.avatar.mouth import PARAM_NAMES
from tools.avatar.png import write_png
from tools.avatar.sheets import COMBOS, LABEL_H, SWEEP_STEPS, _label
from .metrics import psnr

log = logging.getLogger(__name__)

#: The combinations the issue names (a, o, u, i/e, f/v, m/b/p): the first six of COMBOS.
SHEET_COMBOS = COMBOS[:6]
PARAMS_PER_BLOCK = 2
ROW_NAMES = ("FULL", "COARSE", "TRUTH")
ROW_LABEL_W, PAD, BLOCK_GAP = 78, 4, 14


def sheet_columns() -> list[list[tuple[str, tuple[float, ...]]]]:
    """Blocks of (label, params) columns."""
    blocks = [[("rest (all 0)", (0.0,) * 6)] + [(name, tuple(p)) for name, p in SHEET_COMBOS]]
    for first in range(0, len(PARAM_NAMES), PARAMS_PER_BLOCK):
        block = []
        for i in range(first, min(first + PARAMS_PER_BLOCK, len(PARAM_NAMES))):
            for value in SWEEP_STEPS:
                params = [0.0] * 6
                params[i] = value
                block.append((f"{PARAM_NAMES[i]} {value:.2f}", tuple(params)))
        blocks.append(block)
    return blocks


def _row_label(text: str, height: int, label_h: int) -> np.ndarray:
    tile = np.full((height, ROW_LABEL_W, 3), 255, np.uint8)
    top = (height - label_h) // 2
    tile[top:top + label_h] = _label(text, ROW_LABEL_W, label_h)
    return tile


def contact_sheet(evaluator, frame: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 sheet for template frame `frame`."""
    b = evaluator.bundle.box_size
    blocks = sheet_columns()
    cols = max(len(block) for block in blocks)
    lh = max(LABEL_H, b // 8)  # label height: the font grows with it, readable on big boxes
    cell_w, cell_h = b + PAD, lh + b + PAD
    width = ROW_LABEL_W + cols * cell_w + PAD
    pieces = []
    for block in blocks:
        header = np.full((lh + PAD, width, 3), 255, np.uint8)
        rows = [np.full((cell_h, width, 3), 255, np.uint8) for _ in ROW_NAMES]
        for r, name in enumerate(ROW_NAMES):
            rows[r][lh:lh + b, :ROW_LABEL_W] = _row_label(name, b, LABEL_H)
        for c, (label, params) in enumerate(block):
            p = np.asarray(params, np.float32)
            truth = evaluator.truth.box(frame, p)
            x = ROW_LABEL_W + c * cell_w
            # Small boxes (test bundles) get the short name: "a" for "a (open+wide)".
            header[PAD:, x:x + b] = _label(label if b >= 160 else label.split(" (")[0], b, lh)
            tiles = []
            for level in (Quality.FULL, Quality.COARSE):
                crop, _ = evaluator.render(p, frame, level)
                value = psnr(crop, truth)
                tiles.append((crop, "exact" if not np.isfinite(value) else f"{value:.1f} dB"))
            tiles.append((truth, ""))
            for r, (img, text) in enumerate(tiles):
                if text:
                    rows[r][:lh, x:x + b] = _label(text, b, lh)
                rows[r][lh:lh + b, x:x + b] = img
        pieces.extend([header, *rows])
        pieces.append(np.full((BLOCK_GAP, width, 3), 200, np.uint8))  # grey rule between blocks
    return np.concatenate(pieces[:-1], axis=0)


def write_sheet(evaluator, path: Path, frame: int = 0) -> None:
    write_png(path, contact_sheet(evaluator, frame))
    log.info("wrote %s", path)


def write_plots(path: Path, random_psnr: dict | None, speech: tuple[dict, np.ndarray] | None,
                ramp_changes: dict | None, goals_db: tuple[float, float]) -> bool:
    """Histogram of crop PSNR (random set), PSNR along the speech sequences, and the
    frame-to-frame change of the slow ramp. False (and no file) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no %s", path.name)
        return False
    fig, axes = plt.subplots(3, 1, figsize=(12, 11))
    full_goal, coarse_goal = goals_db
    ax = axes[0]
    if random_psnr:
        for lab, values in random_psnr.items():
            finite = np.minimum(values[np.isfinite(values)], 100.0)
            ax.hist(finite, bins=40, alpha=0.55, label=f"{lab} (mean {finite.mean():.2f} dB)")
        ax.axvline(full_goal, color="C0", ls="--", lw=1, label=f"FULL goal {full_goal:g} dB")
        ax.axvline(coarse_goal, color="C1", ls="--", lw=1, label=f"COARSE goal {coarse_goal:g} dB")
        ax.legend()
    ax.set_title("held-out random combinations: mouth-crop PSNR per sample")
    ax.set_xlabel("PSNR (dB)")
    ax = axes[1]
    if speech is not None:
        psnrs, open_track = speech
        for lab, values in psnrs.items():
            ax.plot(np.minimum(values, 100.0), lw=0.8, label=lab)
        ax.set_ylabel("crop PSNR (dB); gaps = rest")
        twin = ax.twinx()
        twin.plot(open_track, color="grey", lw=0.6, alpha=0.6, label="open")
        twin.set_ylim(0, 4)
        twin.set_ylabel("open (grey)")
        ax.legend(loc="lower left")
    ax.set_title("held-out speech (audio model on test voices), consecutive frames")
    ax.set_xlabel("frame (sentences concatenated)")
    ax = axes[2]
    if ramp_changes:
        for key, values in ramp_changes.items():
            ax.plot(values, lw=1.2, label=key, color="black" if key == "truth" else None)
        ax.legend()
    ax.set_title("slow ramp: mean |frame t - frame t-1| over the mouth region (flicker shows as spikes)")
    ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    log.info("wrote %s", path)
    return True
