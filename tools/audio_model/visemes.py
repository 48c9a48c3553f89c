"""Phoneme timings -> six mouth parameters per 40 ms video frame (the audio model's targets).

Three steps, each chosen to look like a real mouth rather than a table lookup:

1. **Phoneme -> viseme, per language.** `VISEMES` holds the shape of each viseme class as
   (open, wide, round, press, bite, teeth) in [0, 1] plus a *dominance*: how strongly the
   class holds its shape against its neighbours. Lip closures (p b m) and lip-teeth contacts
   (f v) must really happen, so they dominate; h and k-like sounds are made behind the lips and
   take the shape of the vowel around them (low dominance). Silence is all zeros (the closed
   mouth at rest) and dominates strongly, so pauses close the mouth and it stays closed
   until the lead of the next sound.
   Symbols are mapped per language: `ESPEAK_IPA` (espeak-ng's IPA phoneme names, English and
   shared vowels), `ESPEAK_CMN` (Mandarin additions: espeak-ng writes retroflexes as `ts.`,
   `s.`, the apical vowel as `i.`, aspiration as a trailing `h`) and `FESTIVAL_EN` (the
   radio phone set of festival's US English voices). A phoneme name that holds several
   vowels (diphthongs `aɪ`, `oʊ`; Mandarin finals `iɛ`, `ɑu`) glides: its interval is split
   evenly among its parts.
2. **Coarticulation (dominance blending).** Shapes are laid out on a 10 ms grid, shifted
   `LEAD_S` earlier (lips and jaw move before the sound they shape is heard), and blended
   with a Gaussian of `BLEND_SIGMA_S` weighted by dominance:
   target(t) = sum(g * w * shape) / sum(g * w), a light version of Cohen & Massaro's model.
   Neighbours blend, transitions are smooth (no square steps) and a short /p/ between two
   vowels still presses the lips.
3. **Video frames.** The 10 ms grid is averaged over each 40 ms video frame k, which covers
   audio time [0.04 k, 0.04 (k + 1)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

#: (open, wide, round, press, bite, teeth) and dominance per viseme class.
#: `open` is the inner-lip gap in connected speech, where the jaw stays low and the lips stay
#: parted through most consonants: only p b m close them, f v bring the lower lip to the teeth,
#: s z leave a narrow slit; t d n l k g h keep the gap of about half a vowel; open vowels
#: reach 1 and close ones (i u) a third. (The first table closed the lips on every t and s:
#: its targets spent 12% of speech frames at open >= 0.5; real lips, measured with a face mesh
#: on two talking clips, spend 32-42% of their speech frames in the upper half of their range.)
#: p b m dominate hardest (5): between vowels this open, a weaker closure left the model's
#: mouth at 0.2 where real lips meet.
VISEMES: dict[str, tuple[tuple[float, ...], float]] = {
    "sil": ((0.0, 0.0, 0.0, 0.0, 0.0, 0.0), 4.0),
    "PBM": ((0.0, 0.0, 0.0, 1.0, 0.0, 0.0), 5.0),
    "FV": ((0.15, 0.15, 0.0, 0.0, 1.0, 0.3), 2.5),
    "TH": ((0.35, 0.25, 0.0, 0.0, 0.0, 1.0), 1.5),
    "TDN": ((0.4, 0.25, 0.0, 0.0, 0.0, 0.7), 0.8),
    "SZ": ((0.2, 0.55, 0.0, 0.0, 0.0, 0.6), 1.2),
    "SH": ((0.3, 0.0, 0.65, 0.0, 0.0, 0.4), 1.2),
    "KG": ((0.45, 0.2, 0.0, 0.0, 0.0, 0.1), 0.5),
    "H": ((0.35, 0.15, 0.0, 0.0, 0.0, 0.0), 0.15),
    "R": ((0.3, 0.0, 0.5, 0.0, 0.0, 0.1), 1.0),
    "W": ((0.15, 0.0, 0.9, 0.0, 0.0, 0.0), 2.0),
    "J": ((0.3, 0.6, 0.0, 0.0, 0.0, 0.2), 1.0),
    "AA": ((1.0, 0.2, 0.0, 0.0, 0.0, 0.0), 1.0),
    "AE": ((0.85, 0.45, 0.0, 0.0, 0.0, 0.0), 1.0),
    "EH": ((0.7, 0.55, 0.0, 0.0, 0.0, 0.0), 1.0),
    "AH": ((0.65, 0.2, 0.0, 0.0, 0.0, 0.0), 1.0),
    "ER": ((0.45, 0.05, 0.35, 0.0, 0.0, 0.0), 1.0),
    "IY": ((0.35, 0.85, 0.0, 0.0, 0.0, 0.1), 1.0),
    "OW": ((0.7, 0.0, 0.75, 0.0, 0.0, 0.0), 1.0),
    "AO": ((0.9, 0.0, 0.35, 0.0, 0.0, 0.0), 1.0),
    "UW": ((0.3, 0.0, 0.9, 0.0, 0.0, 0.0), 1.0),
    "YY": ((0.3, 0.1, 0.85, 0.0, 0.0, 0.0), 1.0),
}
VOWEL_CLASSES = frozenset({"AA", "AE", "EH", "AH", "ER", "IY", "OW", "AO", "UW", "YY"})

#: espeak-ng IPA phoneme names (initialised with espeakINITIALIZE_PHONEME_IPA).
ESPEAK_IPA: dict[str, str] = {
    "p": "PBM", "b": "PBM", "m": "PBM", "ɱ": "FV", "f": "FV", "v": "FV",
    "θ": "TH", "ð": "TH",
    "t": "TDN", "d": "TDN", "n": "TDN", "l": "TDN", "ɾ": "TDN", "ɫ": "TDN", "ɬ": "TDN",
    "s": "SZ", "z": "SZ", "ts": "SZ", "dz": "SZ",
    "ʃ": "SH", "ʒ": "SH", "tʃ": "SH", "dʒ": "SH", "ʂ": "SH", "ʐ": "SH", "ɕ": "SH", "ʑ": "SH",
    "tɕ": "SH", "dʑ": "SH", "tʂ": "SH",
    "k": "KG", "ɡ": "KG", "g": "KG", "ŋ": "KG", "nɡ": "KG", "ng": "KG", "x": "KG", "χ": "KG", "ɣ": "KG", "ʔ": "KG",
    "c": "KG", "q": "KG",
    "h": "H", "ɦ": "H",
    "ɹ": "R", "r": "R", "ɻ": "R", "ʁ": "R",
    "w": "W", "ʍ": "W", "ɥ": "W", "j": "J",
    "a": "AA", "ɑ": "AA", "ä": "AA", "æ": "AE", "ɐ": "AH",
    "e": "EH", "ɛ": "EH", "ə": "AH", "ʌ": "AH", "ɜ": "AH", "ɤ": "AH", "ɚ": "ER", "ɝ": "ER",
    "i": "IY", "ɪ": "IY", "ɨ": "IY", "ɯ": "IY", "ᵻ": "IY",
    "o": "OW", "ɔ": "AO", "ɒ": "AO", "ɵ": "OW", "u": "UW", "ʊ": "UW", "ʉ": "UW", "ɘ": "AH", "y": "YY", "ø": "YY",
    "œ": "YY",
}
#: Mandarin (espeak-ng cmn-latn-pinyin) on top of ESPEAK_IPA.
ESPEAK_CMN: dict[str, str] = {
    **ESPEAK_IPA,
    "ts.": "SH", "s.": "SH", "z.": "R",  # zh/ch, sh, r: retroflex, lips slightly rounded
    "i.": "SZ",  # the apical vowel of zi/ci/si/zhi/shi: teeth close, corners spread
    "ɤ": "AH", "o-": "OW",
}
#: festival US English voices (radio phone set); two-part entries glide.
FESTIVAL_EN: dict[str, tuple[str, ...]] = {
    "pau": ("sil",), "h#": ("sil",), "brth": ("sil",),
    "aa": ("AA",), "ae": ("AE",), "ah": ("AH",), "ao": ("AO",), "aw": ("AA", "UW"),
    "ay": ("AA", "IY"), "ax": ("AH",), "eh": ("EH",), "er": ("ER",), "ey": ("EH", "IY"),
    "ih": ("IY",), "iy": ("IY",), "ow": ("OW", "UW"), "oy": ("AO", "IY"), "uh": ("UW",),
    "uw": ("UW",), "b": ("PBM",), "p": ("PBM",), "m": ("PBM",), "f": ("FV",), "v": ("FV",),
    "th": ("TH",), "dh": ("TH",), "t": ("TDN",), "d": ("TDN",), "n": ("TDN",), "l": ("TDN",),
    "s": ("SZ",), "z": ("SZ",), "sh": ("SH",), "zh": ("SH",), "ch": ("SH",), "jh": ("SH",),
    "k": ("KG",), "g": ("KG",), "ng": ("KG",), "hh": ("H",), "r": ("R",), "w": ("W",),
    "y": ("J",),
}
TABLES = {"espeak-en": ESPEAK_IPA, "espeak-cmn": ESPEAK_CMN}
#: Marks espeak-ng adds to a name that do not change the mouth (length, stress, syllabic).
_IGNORED = set("ːˑˈˌ̩̃ʰʲʷ-'")

FRAME_S = 0.04
HOP_S = 0.01
#: The mouth forms its shape this long before the sound is heard. Real lips lead the sound by
#: 50-100 ms (issue 14: with 0.02 s the model was 2 frames late against real lips, with 0.04 s
#: still 2 frames; 0.06 s with 1.25x `open` and the first viseme table cost 0.03 of held-out
#: r(open)). The look-ahead (55 ms) bounds how far ahead the model can know a sound.
LEAD_S = 0.06
#: Width of the blending window (one standard deviation).
BLEND_SIGMA_S = 0.03
#: `open` targets are scaled by this (and clipped at 1). 1.25 moved the share of speech
#: frames opened >= 0.5 only from 10% to 12% on a real clip (real lips: 42%): how far the
#: mouth opens is the avatar's calibration.open_scale, not the audio model's.
OPEN_GAIN = 1.0


@dataclass(frozen=True)
class Segment:
    """One phoneme: [start_s, end_s) in the audio, and its symbol as the synthesizer named it."""

    start_s: float
    end_s: float
    symbol: str


def parse_symbol(symbol: str, table: str) -> tuple[str, ...]:
    """Viseme classes of one phoneme name (several for glides); ('sil',) for pauses."""
    if table == "festival-en":
        return FESTIVAL_EN.get(symbol.lower(), ("sil",) if not symbol else ("AH",))
    mapping = TABLES[table]
    if not symbol or symbol.startswith("("):
        return ("sil",)
    classes: list[str] = []
    i = 0
    while i < len(symbol):
        for size in (3, 2, 1):
            piece = symbol[i:i + size]
            if len(piece) == size and piece in mapping:
                # Aspiration ('th', 'tɕh' in Mandarin): an 'h' after a consonant adds nothing.
                if piece == "h" and classes and classes[-1] not in VOWEL_CLASSES:
                    pass
                elif not classes or classes[-1] != mapping[piece]:
                    classes.append(mapping[piece])
                i += size
                break
        else:
            i += 1  # a mark (length, stress, tone) or an unknown letter: no shape of its own
    return tuple(classes) or ("sil",)


def segments_to_classes(segments: Iterable[Segment], table: str) -> list[tuple[float, float, str]]:
    """Split each phoneme into (start, end, viseme class) parts; glides share the interval."""
    parts = []
    for seg in segments:
        classes = parse_symbol(seg.symbol, table)
        width = (seg.end_s - seg.start_s) / len(classes)
        for n, name in enumerate(classes):
            parts.append((seg.start_s + n * width, seg.start_s + (n + 1) * width, name))
    return parts


def frame_targets(segments: Sequence[Segment], table: str, duration_s: float) -> np.ndarray:
    """(frames, 6) float32 targets for audio of `duration_s`: one row per 40 ms video frame."""
    hops_per_frame = int(round(FRAME_S / HOP_S))
    frames = int(np.ceil(duration_s / FRAME_S - 1e-9))
    hops = frames * hops_per_frame
    pad = int(np.ceil(4 * BLEND_SIGMA_S / HOP_S))
    shapes = np.zeros((hops + 2 * pad, 6), np.float64)
    weights = np.full(hops + 2 * pad, VISEMES["sil"][1])  # outside the phonemes: silence
    centers = (np.arange(hops + 2 * pad) - pad + 0.5) * HOP_S
    for start, end, name in segments_to_classes(segments, table):
        shape, dominance = VISEMES[name]
        inside = (centers >= start - LEAD_S) & (centers < end - LEAD_S)
        if not inside.any():  # shorter than a hop: still leaves its mark at its middle
            middle = (start + end) / 2 - LEAD_S
            inside = np.abs(centers - middle) == np.abs(centers - middle).min()
        shapes[inside] = shape
        weights[inside] = dominance
    radius = pad
    offsets = np.arange(-radius, radius + 1) * HOP_S
    kernel = np.exp(-0.5 * (offsets / BLEND_SIGMA_S) ** 2)
    numerator = np.stack([np.convolve(weights * shapes[:, p], kernel, mode="same")
                          for p in range(6)], axis=1)
    denominator = np.convolve(weights, kernel, mode="same")[:, None]
    blended = (numerator / denominator)[pad:pad + hops]
    per_frame = blended.reshape(frames, hops_per_frame, 6).mean(axis=1)
    per_frame[:, 0] = np.minimum(1.0, per_frame[:, 0] * OPEN_GAIN)
    # Tiny float residues far from speech would make "closed" not exactly zero.
    per_frame[per_frame < 1e-4] = 0.0
    return per_frame.astype(np.float32)


def speech_mask(segments: Sequence[Segment], table: str, frames: int) -> np.ndarray:
    """True for video frames that overlap a (non-silent) phoneme: used by the evaluation."""
    mask = np.zeros(frames, bool)
    for start, end, name in segments_to_classes(segments, table):
        if name == "sil":
            continue
        first, last = int(start / FRAME_S), int(np.ceil(end / FRAME_S))
        mask[max(0, first):min(frames, last)] = True
    return mask


def targets_recipe() -> dict:
    """Everything the targets depend on (recorded in feature caches and the model's recipe)."""
    return {"lead_s": LEAD_S, "blend_sigma_s": BLEND_SIGMA_S, "open_gain": OPEN_GAIN,
            "visemes": {name: [list(shape), dominance] for name, (shape, dominance) in VISEMES.items()}}
