"""`python -m tools.parity dump|compare` (see the package docstring)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from .compare import DumpError, compare, load_dump, markdown
from .dump import VARIANTS, dump


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.parity", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("dump", help="run the models on fixed inputs, save every output")
    run.add_argument("--out", type=Path, required=True, help="the .npz to write")
    run.add_argument("--bundle", type=Path, default=None,
                     help="avatar bundle (default: the default avatar)")
    run.add_argument("--audio-model", type=Path, default=None,
                     help="audio model sidecar (default: the shipped one)")
    run.add_argument("--wav", type=Path, default=None, help="speech clip (default: the bundle's demo clip)")
    run.add_argument("--variants", default=",".join(VARIANTS),
                     help=f"comma-separated option sets (of {', '.join(VARIANTS)})")
    cmp = sub.add_parser("compare", help="the parity table against an x86 reference dump")
    cmp.add_argument("--reference", type=Path, required=True, help="the x86 dump")
    cmp.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    cmp.add_argument("--sheet", type=Path, default=None,
                     help="a PNG of FULL mouth patches: x86, each CPU, the difference x16")
    cmp.add_argument("dumps", nargs="+", metavar="NAME=FILE", help="dumps to compare")
    return parser


def _dump(args: argparse.Namespace) -> int:
    from runtime.commands.demo import DEFAULT_BUNDLE
    from runtime.commands.mouth import default_audio_model
    from runtime.system.paths import data_dir

    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        print(f"parity: --variants: unknown {', '.join(unknown)} (allowed: {', '.join(VARIANTS)})",
              file=sys.stderr)
        return 2
    bundle = args.bundle or data_dir() / DEFAULT_BUNDLE
    meta = dump(args.out, bundle, args.audio_model or default_audio_model(), args.wav, variants)
    print(f"parity: {args.out}: {meta['machine']} (QEMU_CPU={meta['qemu_cpu'] or '-'}, "
          f"fp16 arithmetic {meta['cpu_support_arm_asimdhp']}), {meta['total_seconds']} s")
    return 0


def _compare(args: argparse.Namespace) -> int:
    _, reference = load_dump(args.reference)
    rows, loaded = [], []
    for item in args.dumps:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        meta, arrays = load_dump(Path(path))
        rows += compare(reference, name, meta, arrays)
        loaded.append((name, meta, arrays))
    if args.sheet:
        from .sheet import sheet_image, write_png
        write_png(sheet_image(reference, loaded), args.sheet)
        columns = ", ".join(f"{name} shipped, diff, {name} ncnn defaults, diff" for name, _, _ in loaded)
        print(f"parity: {args.sheet}: columns x86, {columns}")
    table = markdown(rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    failed = [f"{row.name}/{row.variant}" for row in rows if row.variant == "shipped" and not row.holds]
    if failed:
        print(f"parity: the shipped options miss the goals on {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from runtime.models.ncnn_model import ModelError

    args = _parser().parse_args(argv)
    try:
        return _dump(args) if args.command == "dump" else _compare(args)
    except DumpError as err:
        print(f"parity: {err}", file=sys.stderr)
        return 1
    except ModelError as err:  # a bundle or sidecar that cannot be used (BundleError too)
        print(f"parity: {err}", file=sys.stderr)
        return 78
