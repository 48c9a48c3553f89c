"""The parity table: each dump's outputs against the x86 reference's shipped outputs.

Every option set of every CPU is measured against what was evaluated: x86 with the options
the sidecars ship. Goals (issue 17): mouth parameters within 0.01 of x86 (max abs over every
frame of the clip and all six), every rendered crop at least 40 dB against x86 (the minimum
over all crops, not the mean: one bad mouth shows).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PARAMS_LIMIT = 0.01
PSNR_GOAL_DB = 40.0
IDENTICAL_DB = 99.0  # shown for crops that match exactly (an infinite PSNR)
CROPS = (("coarse", 1.0), ("fine", 1.0), ("patch_full", 255.0), ("patch_coarse", 255.0))


class DumpError(Exception):
    """A dump that cannot be compared: unreadable, or made from other inputs."""


@dataclass(frozen=True)
class ParityRow:
    name: str
    variant: str
    fp16_arithmetic: bool | None
    params_max_abs: float
    psnr_min_db: dict  # crop key -> minimum PSNR over crops
    #: Largest difference of any pixel of any patch, in grey levels: PSNR over a whole box
    #: dilutes a local change, this does not.
    patch_max_levels: int = 0

    @property
    def holds(self) -> bool:
        return (self.params_max_abs <= PARAMS_LIMIT
                and all(db >= PSNR_GOAL_DB for db in self.psnr_min_db.values()))


def load_dump(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise DumpError(f"{path}: not a parity dump ({err})") from None
    if "meta" not in arrays:
        raise DumpError(f"{path}: not a parity dump (no meta)")
    return json.loads(str(arrays.pop("meta"))), arrays


def psnr_db(reference: np.ndarray, other: np.ndarray, peak: float) -> float:
    a = reference.astype(np.float64)
    b = other.astype(np.float64)
    if peak == 1.0:  # stage outputs: the runtime clips them to the picture's range
        a, b = np.clip(a, 0, 1), np.clip(b, 0, 1)
    mse = float(np.mean((a - b) ** 2))
    return IDENTICAL_DB if mse == 0 else min(IDENTICAL_DB, 10 * math.log10(peak * peak / mse))


def compare(reference: dict[str, np.ndarray], name: str, meta: dict,
            arrays: dict[str, np.ndarray]) -> list[ParityRow]:
    for key in ("inputs/params", "inputs/template_indices"):
        if not np.array_equal(reference[key], arrays[key]):
            raise DumpError(f"{name}: made from other inputs than the reference ({key})")
    rows = []
    for variant in meta["variants"]:
        ref_audio, audio = reference["shipped/audio_params"], arrays[f"{variant}/audio_params"]
        if ref_audio.shape != audio.shape:
            raise DumpError(f"{name}: {variant}: {audio.shape[0]} audio frames, the reference "
                            f"has {ref_audio.shape[0]}")
        psnr = {}
        for key, peak in CROPS:
            ref, got = reference[f"shipped/{key}"], arrays[f"{variant}/{key}"]
            psnr[key] = min(psnr_db(r, g, peak) for r, g in zip(ref, got))
        levels = max(int(np.max(np.abs(reference[f"shipped/{key}"].astype(np.int16)
                                       - arrays[f"{variant}/{key}"].astype(np.int16))))
                     for key in ("patch_full", "patch_coarse"))
        rows.append(ParityRow(name, variant, meta.get("cpu_support_arm_asimdhp"),
                              float(np.max(np.abs(ref_audio - audio))), psnr, levels))
    return rows


def markdown(rows: list[ParityRow]) -> str:
    lines = [f"Parity against x86 (shipped options): mouth parameters max abs difference "
             f"(goal <= {PARAMS_LIMIT}), minimum PSNR over every crop (goal >= {PSNR_GOAL_DB:.0f} dB; "
             f"{IDENTICAL_DB:.0f} = identical or closer); the largest difference of any patch pixel in grey levels.",
             "", "| CPU | ncnn options | fp16 arithmetic | params max abs | coarse dB | fine dB "
             "| patch FULL dB | patch COARSE dB | patch max levels | goals |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        fp16 = {True: "yes", False: "no", None: "-"}[row.fp16_arithmetic]
        dbs = " | ".join(f"{row.psnr_min_db[key]:.1f}" for key, _ in CROPS)
        lines.append(f"| {row.name} | {row.variant} | {fp16} | {row.params_max_abs:.2e} | {dbs} "
                     f"| {row.patch_max_levels} | {'hold' if row.holds else 'FAIL'} |")
    return "\n".join(lines) + "\n"
