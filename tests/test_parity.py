"""tools.parity: a dump compared with itself holds; a moved mouth or parameter fails the goals;
dumps of other inputs are refused. (The cross-architecture run is tools/arm64_check.sh.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tools.parity.cli import main
from tools.parity.compare import (IDENTICAL_DB, PARAMS_LIMIT, PSNR_GOAL_DB, DumpError, compare,
                                  load_dump, psnr_db)
from tools.parity.dump import VARIANTS, renderer_params


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("parity") / "x86.npz"
    assert main(["dump", "--out", str(path)]) == 0
    return path


def _rewrite(src: Path, dst: Path, change) -> Path:
    meta, arrays = load_dump(src)
    change(arrays)
    np.savez(dst, meta=np.array(json.dumps(meta)), **arrays)
    return dst


def test_a_dump_holds_every_goal_against_itself(reference, tmp_path, capsys):
    meta, arrays = load_dump(reference)
    assert meta["variants"] == list(VARIANTS)
    k = len(renderer_params()) * len(arrays["inputs/template_indices"])
    assert arrays["shipped/fine"].shape[0] == k and arrays["shipped/patch_full"].dtype == np.uint8
    assert arrays["shipped/audio_params"].shape[1] == 6
    # the mouth is really drawn: the FULL patch differs from the COARSE one
    assert np.abs(arrays["shipped/patch_full"].astype(int) - arrays["shipped/patch_coarse"]).max() > 10
    rows = compare(arrays, "self", meta, arrays)
    assert all(row.holds and row.params_max_abs == 0 for row in rows if row.variant == "shipped")
    table = tmp_path / "parity.md"
    assert main(["compare", "--reference", str(reference), "--markdown", str(table),
                 f"same={reference}"]) == 0
    assert "| same | shipped | no | 0.00e+00 | 99.0 | 99.0 | 99.0 | 99.0 | 0 | hold |" in table.read_text()


def test_a_moved_parameter_or_a_changed_mouth_misses_the_goals(reference, tmp_path, capsys):
    def nudge_params(arrays):
        arrays["shipped/audio_params"][10, 0] += 2 * PARAMS_LIMIT

    def grey_one_crop(arrays):
        arrays["shipped/patch_full"][3, 40:80, 40:80] ^= 0x20  # one mouth, 32 grey levels off

    for change in (nudge_params, grey_one_crop):
        other = _rewrite(reference, tmp_path / f"{change.__name__}.npz", change)
        assert main(["compare", "--reference", str(reference), f"arm={other}"]) == 1
        assert "the shipped options miss the goals on arm/shipped" in capsys.readouterr().err


def test_dumps_of_other_inputs_or_other_files_are_refused(reference, tmp_path, capsys):
    def other_params(arrays):
        arrays["inputs/params"][0, 0] = 0.25

    other = _rewrite(reference, tmp_path / "other.npz", other_params)
    _, ref = load_dump(reference)
    meta, arrays = load_dump(other)
    with pytest.raises(DumpError, match="made from other inputs"):
        compare(ref, "other", meta, arrays)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    assert main(["compare", "--reference", str(reference), f"junk={junk}"]) == 1
    assert capsys.readouterr().err.startswith(f"parity: {junk}: not a parity dump")
    assert main(["dump", "--out", str(tmp_path / "x.npz"), "--variants", "fp8"]) == 2
    assert "unknown fp8" in capsys.readouterr().err


def test_psnr_is_infinite_only_for_identical_crops():
    a = np.full((8, 8, 3), 100, np.uint8)
    assert psnr_db(a, a, 255.0) == IDENTICAL_DB
    b = a.copy()
    b[0, 0, 0] += 1  # one grey level in one of 192 values
    assert PSNR_GOAL_DB < psnr_db(a, b, 255.0) < IDENTICAL_DB
