"""A contact sheet of the FULL mouth patch: x86, then each CPU with each option set, and
the difference against x86 amplified x16 (black = none), so what the table says can be seen."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Which renders to show: indices into the dump's (template frame x parameter vector) order.
SHOWN = (0, 1, 2, 7, 9)  # open alone, wide alone, round alone, open half, a mixture
AMPLIFY = 16


def sheet_image(reference: dict, dumps: list[tuple[str, dict, dict]],
                variants: tuple[str, ...] = ("shipped", "ncnn_defaults")) -> np.ndarray:
    ref = reference["shipped/patch_full"]
    rows = []
    for index in SHOWN:
        cells = [ref[index]]
        for _, meta, arrays in dumps:
            for variant in variants:
                if variant not in meta["variants"]:
                    continue
                patch = arrays[f"{variant}/patch_full"][index]
                diff = np.abs(patch.astype(np.int16) - ref[index]) * AMPLIFY
                cells += [patch, np.clip(diff, 0, 255).astype(np.uint8)]
        gap = np.full((ref.shape[1], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([part for cell in cells for part in (cell, gap)][:-1], axis=1))
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)


def write_png(image: np.ndarray, path: Path) -> None:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame  # a runtime dependency already: no image library needed for one PNG

    surface = pygame.surfarray.make_surface(np.ascontiguousarray(image.transpose(1, 0, 2)))
    pygame.image.save(surface, str(path))
