"""Contact sheets for looking at the character: mouth sweeps/combinations and a loop strip.

Labels use pygame's default font when pygame is importable (it is a runtime dependency);
without it the sheets are written unlabelled, with the layout documented in the log line.
"""
from __future__ import annotations

import logging

import numpy as np

from .mouth import PARAM_NAMES
from .scene import BLINKS, DefaultAvatar

log = logging.getLogger(__name__)

SWEEP_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Named combinations (open, wide, round, press, bite, teeth), roughly the visemes they mimic.
COMBOS = (
    ("a (open+wide)", (0.9, 0.35, 0.0, 0.0, 0.0, 0.2)),
    ("o (open+round)", (0.55, 0.0, 0.9, 0.0, 0.0, 0.0)),
    ("u/w (round)", (0.15, 0.0, 1.0, 0.0, 0.0, 0.0)),
    ("i/e (wide+teeth)", (0.2, 0.9, 0.0, 0.0, 0.0, 0.7)),
    ("f/v (bite)", (0.1, 0.2, 0.0, 0.0, 1.0, 0.3)),
    ("m/b/p (press)", (0.0, 0.1, 0.0, 1.0, 0.0, 0.0)),
    ("t/d/n (teeth)", (0.3, 0.3, 0.0, 0.0, 0.0, 1.0)),
    ("sh (round+teeth)", (0.25, 0.0, 0.7, 0.0, 0.0, 0.8)),
    ("press+open", (0.8, 0.0, 0.0, 0.8, 0.0, 0.0)),
    ("all ones", (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)),
)
LABEL_H = 22


def _label(text: str, width: int, height: int = LABEL_H) -> np.ndarray:
    tile = np.full((height, width, 3), 245, np.uint8)
    try:
        import pygame
        import pygame.font
        if not pygame.font.get_init():
            pygame.font.init()
        font = pygame.font.Font(None, max(12, height - 4))
        surf = font.render(text, True, (40, 40, 40), (245, 245, 245))
        arr = pygame.surfarray.array3d(surf).transpose(1, 0, 2)
        h, w = min(arr.shape[0], height), min(arr.shape[1], width - 4)
        tile[(height - h) // 2:(height - h) // 2 + h, 4:4 + w] = arr[:h, :w]
    except Exception:  # no pygame or no font: unlabelled tiles are still useful
        log.debug("no font for labels", exc_info=True)
    return tile


def _labelled(img: np.ndarray, text: str) -> np.ndarray:
    return np.concatenate([_label(text, img.shape[1]), img], axis=0)


def _grid(tiles: list[np.ndarray], cols: int, pad: int = 4) -> np.ndarray:
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = tile
    return sheet


def mouth_sheet(avatar: DefaultAvatar, k: int = 0) -> np.ndarray:
    """Rows: each parameter swept 0 -> 1 alone (5 steps); then the named combinations."""
    tiles = []
    for i, name in enumerate(PARAM_NAMES):
        for value in SWEEP_STEPS:
            params = [0.0] * 6
            params[i] = value
            tiles.append(_labelled(avatar.render_box(k, params), f"{name} {value:.2f}"))
    for name, params in COMBOS:
        tiles.append(_labelled(avatar.render_box(k, params), name))
    return _grid(tiles, len(SWEEP_STEPS))


def blink_frame(count: int) -> int:
    return round(BLINKS[0][0] * count) % count


def loop_strip(avatar: DefaultAvatar, shrink: int = 2) -> np.ndarray:
    """Template frames 0, 1/4, 1/2, 3/4, last and a blink, shrunk by box averaging."""
    n = avatar.count
    picks = [0, n // 4, n // 2, 3 * n // 4, n - 1, blink_frame(n)]
    tiles = []
    for k in picks:
        frame = avatar.render_frame(k).astype(np.float32)
        h, w = frame.shape[0] // shrink * shrink, frame.shape[1] // shrink * shrink
        small = frame[:h, :w].reshape(h // shrink, shrink, w // shrink, shrink, 3).mean(axis=(1, 3))
        tiles.append(_labelled((small + 0.5).astype(np.uint8), f"frame {k}" + (" (blink)" if k == picks[-1] else "")))
    return _grid(tiles, len(tiles))
