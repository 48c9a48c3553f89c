"""Colours of the character. Seed 0 is the hand-picked default; other seeds mix curated sets.

Sets are curated rather than random RGB so every seed stays a plausible, friendly character
(skin tones, natural hair colours, calm clothing and backgrounds that keep the face readable).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

RGB = tuple[float, float, float]


def _hex(code: str) -> RGB:
    return tuple(int(code[i:i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]


@dataclass(frozen=True)
class Palette:
    bg_top: RGB
    bg_bottom: RGB
    bg_accent: RGB   # blurred lobby furniture / plants
    bg_light: RGB    # window light and bokeh
    skin: RGB
    skin_shade: RGB
    blush: RGB
    hair: RGB
    hair_light: RGB
    iris: RGB
    lip: RGB
    lip_shade: RGB
    mouth: RGB       # mouth interior
    tongue: RGB
    teeth: RGB
    sweater: RGB
    shirt: RGB


_SKINS = [("#f6d2bd", "#dca58e", "#ee9d93", "#c98a7e", "#a85a5c"),
          ("#f1c6a6", "#d29a7a", "#ec9a88", "#d27c74", "#a94f55"),
          ("#dba883", "#b87f5d", "#d98070", "#ae6b5e", "#8d4a4c"),
          ("#b9825d", "#9c6a4a", "#c06d5d", "#8f5548", "#6f3b3a"),
          ("#8a5a3c", "#74482f", "#a0584a", "#6c3f33", "#532b2a")]
_HAIRS = [("#4a3226", "#7a5640"), ("#2b2220", "#4d3e38"), ("#7a4a2a", "#a8703f"),
          ("#c79a5c", "#e3c08a"), ("#5b5552", "#8d8783"), ("#3a2a35", "#5e4656")]
_IRISES = ["#6b4a2e", "#3f6e5a", "#4a6a8c", "#7a5a2e", "#3b3b46"]
_CLOTHES = [("#2f5d73", "#f4f2ec"), ("#5b6e4f", "#f3efe6"), ("#7a3f4c", "#f2f0ea"),
            ("#3b4663", "#eef1f4"), ("#b8874a", "#f6f4ef"), ("#465a5e", "#fbf7ef")]
_BACKS = [("#d7e6e8", "#efe4d4", "#8fae98", "#fff6e6"), ("#e4e0ee", "#f2e6dc", "#a39cb8", "#fff4e8"),
          ("#e9e2d4", "#d9e3e3", "#a5a27f", "#fff8ea"), ("#dde4ec", "#ece7df", "#8ea3b5", "#fffaf0")]


def make_palette(seed: int) -> Palette:
    if seed == 0:
        picks = (1, 0, 0, 0, 0)  # warm light skin, brown hair, brown eyes, teal sweater
    else:
        rng = np.random.default_rng(seed)
        picks = tuple(int(rng.integers(len(s))) for s in (_SKINS, _HAIRS, _IRISES, _CLOTHES, _BACKS))
    skin, skin_shade, blush, lip, lip_shade = (_hex(c) for c in _SKINS[picks[0]])
    hair, hair_light = (_hex(c) for c in _HAIRS[picks[1]])
    sweater, shirt = (_hex(c) for c in _CLOTHES[picks[3]])
    bg_top, bg_bottom, bg_accent, bg_light = (_hex(c) for c in _BACKS[picks[4]])
    return Palette(
        bg_top=bg_top, bg_bottom=bg_bottom, bg_accent=bg_accent, bg_light=bg_light,
        skin=skin, skin_shade=skin_shade, blush=blush, hair=hair, hair_light=hair_light,
        iris=_hex(_IRISES[picks[2]]), lip=lip, lip_shade=lip_shade,
        mouth=_hex("#4a1a22"), tongue=_hex("#d9767a"), teeth=_hex("#f7f4ee"),
        sweater=sweater, shirt=shirt)
