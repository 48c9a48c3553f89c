"""`edgemate bench` against the figures committed in docs/perf-baseline.json: a table of ratios.

    python -m tools.bench_compare                      # runs the bench (null sink, as the baseline)
    python -m tools.bench_compare --result bench.json  # compares a saved `edgemate bench --json`
    python -m tools.bench_compare --write-baseline     # makes the current figures the baseline

A regression guard that is not a timed test: it prints, for every figure the baseline holds,
the baseline, the figure now and their ratio, marks ratios worse than --flag (default 1.25x)
and always exits 0 (CI prints it; a shared core's noise must not fail a build). Exit 2 only
when it cannot produce a table at all (the bench failed, a file is unreadable).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "docs" / "perf-baseline.json"
#: (dotted path in the bench JSON, what it is, True if lower is better).
FIGURES = (
    ("frame_ms.p50", "whole frame p50, ms", True),
    ("frame_ms.p95", "whole frame p95, ms", True),
    ("stages_ms.coarse.p50", "coarse stage p50, ms", True),
    ("stages_ms.fine.p50", "fine stage p50, ms", True),
    ("stages_ms.composite.p50", "composite p50, ms", True),
    ("stages_ms.present.p95", "present p95, ms", True),
    ("uncapped_fps.full", "uncapped fps, FULL", False),
    ("uncapped_fps.coarse", "uncapped fps, COARSE", False),
    ("steady.cpu_percent_one_core", "CPU at 25 fps, % of a core", True),
    ("steady.dropped", "drops at 25 fps", True),
    ("rss_mb", "peak RSS, MB", True),
    ("start_to_first_frame_s", "start to first frame, s", True),
)
#: The bench the baseline was measured with (the conditions go into the baseline file).
BENCH_ARGS = ("--seconds", "20", "--frames", "300", "--set", "models.threads=1",
              "--set", "render.quality=full")


def lookup(doc: dict, dotted: str):
    value = doc
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) else None


def compare(baseline: dict, result: dict, flag: float) -> list[tuple[str, object, object, str]]:
    rows = []
    for dotted, label, lower_better in FIGURES:
        base, now = baseline.get(dotted), lookup(result, dotted)
        if base is None or now is None:
            rows.append((label, base, now, "-"))
            continue
        if base == 0:
            rows.append((label, base, now, "same" if now == 0 else "new"))
            continue
        ratio = now / base
        worse = ratio > flag if lower_better else ratio < 1 / flag
        rows.append((label, base, now, f"{ratio:.2f}x" + ("  <- worse" if worse else "")))
    return rows


def run_bench(extra: Sequence[str]) -> dict:
    cmd = [sys.executable, "-c", "from runtime.cli import main; raise SystemExit(main())",
           "bench", "--json", *BENCH_ARGS, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"bench_compare: the bench failed (exit {done.returncode}): "
                         f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    return json.loads(done.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", type=Path, help="a saved `edgemate bench --json` (else it runs one)")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--flag", type=float, default=1.25, help="mark ratios worse than this")
    parser.add_argument("--write-baseline", action="store_true")
    parser.add_argument("bench_args", nargs="*", help="more bench arguments (after --)")
    args = parser.parse_args(argv)
    try:
        result = json.loads(args.result.read_text()) if args.result else run_bench(args.bench_args)
    except (OSError, json.JSONDecodeError) as err:
        print(f"bench_compare: cannot read {args.result}: {err}", file=sys.stderr)
        return 2
    except SystemExit as err:
        print(err, file=sys.stderr)
        return 2
    if args.write_baseline:
        doc = {"conditions": {"command": "python -m tools.bench_compare --write-baseline",
                              "bench_args": list(BENCH_ARGS) + list(args.bench_args),
                              "machine": result.get("machine"), "sink": result.get("sink"),
                              "python": platform.python_version()},
               "figures": {dotted: lookup(result, dotted) for dotted, _, _ in FIGURES}}
        args.baseline.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.baseline}")
        return 0
    try:
        baseline = json.loads(args.baseline.read_text())
    except (OSError, json.JSONDecodeError) as err:
        print(f"bench_compare: cannot read the baseline {args.baseline}: {err}", file=sys.stderr)
        return 2
    conditions = baseline.get("conditions", {})
    print(f"baseline: {args.baseline.relative_to(REPO) if args.baseline.is_relative_to(REPO) else args.baseline}"
          f" ({' '.join(conditions.get('bench_args', []))}; machine {conditions.get('machine')})")
    if result.get("models", {}).get("fixtures"):
        print("NOTE: this result was measured on TEST FIXTURE models")
    rows = compare(baseline.get("figures", {}), result, args.flag)
    print(f"{'figure':<30} {'baseline':>10} {'now':>10}  ratio")
    for label, base, now, ratio in rows:
        print(f"{label:<30} {_fmt(base):>10} {_fmt(now):>10}  {ratio}")
    print("(a ratio is noise on a shared machine until it repeats; this never fails a build)")
    return 0


def _fmt(value) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    raise SystemExit(main())
