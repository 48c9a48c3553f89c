"""tools/bench_compare.py: ratios against the committed baseline; never a failing exit for noise."""
from __future__ import annotations

import json

from tools import bench_compare


def result(frame_p50=4.0, fps=300.0):
    return {"frame_ms": {"p50": frame_p50, "p95": 5.0}, "uncapped_fps": {"full": fps, "coarse": 600.0},
            "stages_ms": {"coarse": {"p50": 0.8}}, "steady": {"cpu_percent_one_core": 15.0, "dropped": 0},
            "rss_mb": 250.0, "machine": {"machine": "x86_64"}, "models": {"fixtures": False}}


def test_ratios_mark_what_got_worse_in_its_own_direction():
    base = {"frame_ms.p50": 4.0, "uncapped_fps.full": 300.0, "steady.dropped": 0, "rss_mb": 250.0}
    rows = {label: ratio for label, _, _, ratio in
            bench_compare.compare(base, result(frame_p50=6.0, fps=200.0), flag=1.25)}
    assert rows["whole frame p50, ms"] == "1.50x  <- worse"
    assert rows["uncapped fps, FULL"] == "0.67x  <- worse"  # fewer fps is worse
    assert rows["peak RSS, MB"] == "1.00x"
    assert rows["drops at 25 fps"] == "same"
    assert rows["present p95, ms"] == "-"  # not in the baseline


def test_main_prints_a_table_and_exits_0_even_when_worse(tmp_path, capsys):
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(result(frame_p50=40.0)))
    baseline = tmp_path / "baseline.json"
    assert bench_compare.main(["--result", str(saved), "--baseline", str(baseline),
                               "--write-baseline"]) == 0
    saved.write_text(json.dumps(result(frame_p50=80.0)))
    assert bench_compare.main(["--result", str(saved), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "whole frame p50, ms" in out and "2.00x  <- worse" in out


def test_unreadable_inputs_exit_2_with_one_line(tmp_path, capsys):
    assert bench_compare.main(["--result", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
