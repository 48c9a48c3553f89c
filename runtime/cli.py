"""`edgemate`: one entry point for the appliance, its checks, its benchmark and devices.

Users see one-line errors; `--debug` (or EDGEMATE_DEBUG=1) shows tracebacks and debug logs.
Exit codes: 0 ok, 1 failure, 2 usage, 78 bad configuration or model files (EX_CONFIG; systemd
shows it and does not help by restarting into the same error).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from runtime import __version__

log = logging.getLogger(__name__)

EXIT_CONFIG = 78
_STARTED_AT = time.monotonic()


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE|PROFILE",
                        help="config file or shipped profile name (default: default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set audio.source=mic (repeatable)")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, help="avatar bundle directory (= --set avatar.bundle=...)")
    parser.add_argument("--audio-model", type=Path, help="audio model sidecar (= --set models.audio=...)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgemate", description="Talking-avatar appliance runtime.")
    parser.add_argument("--version", action="version", version=f"edgemate {__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="the appliance loop (what systemd starts)")
    _add_config_args(run)
    _add_model_args(run)

    demo = sub.add_parser("demo", help="the default avatar speaking the bundled clip")
    _add_config_args(demo)
    _add_model_args(demo)
    demo.add_argument("--record", type=Path, metavar="MP4",
                      help="record to this file instead of opening a window")

    check = sub.add_parser("check", help="validate config, model files, devices; exit 0 or 1")
    _add_config_args(check)
    _add_model_args(check)
    check.add_argument("--json", action="store_true", help="machine-readable result")

    bench = sub.add_parser("bench", help="measure the real pipeline per stage")
    _add_config_args(bench)
    _add_model_args(bench)
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument("--seconds", type=float, default=None,
                       help="length of the 25 fps run (default 10; with --stress or "
                       "--thermal-ramp: the phases' length)")
    bench.add_argument("--frames", type=int, default=150, help="frames per uncapped measurement")
    bench.add_argument("--audio", type=Path, help="WAV to drive the run (default: the bundle's "
                       "demo clip, else synthetic speech-like bursts)")
    from runtime.commands.stress import add_stress_args
    add_stress_args(bench)  # --stress, --thermal-ramp: the governor on a busy, hot box

    sub.add_parser("devices", help="audio inputs/outputs, displays, thermal sensors")

    from runtime.commands.mouth import add_parser as add_mouth_parser
    add_mouth_parser(sub)  # mouth FILE.wav: six mouth parameters per 40 ms frame

    from runtime.commands.control_client import add_parsers
    add_parsers(sub)  # say, stop, status: clients of a running appliance's control socket
    return parser


def _log_format() -> str:
    """journald stamps each line with its time; launchd's StandardErrorPath (a Mac's
    LaunchAgent) is a plain file that would not: there the lines carry their own."""
    tty = sys.stderr is not None and sys.stderr.isatty()
    stamped = sys.platform == "darwin" and not tty
    return ("%(asctime)s " if stamped else "") + "%(levelname)s %(name)s: %(message)s"


def _setup_logging(level: str, debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else getattr(logging, level.upper()),
                        format=_log_format(), force=True)


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(getattr(args, "overrides", []))
    if getattr(args, "bundle", None):
        overrides.append(f"avatar.bundle={args.bundle.resolve()}")
    if getattr(args, "audio_model", None):
        overrides.append(f"models.audio={args.audio_model.resolve()}")
    return overrides


def _load(args: argparse.Namespace, extra: Sequence[str] = ()):
    from runtime.config.loader import load_config
    return load_config(args.config, [*_overrides(args), *extra])


def cmd_run(args: argparse.Namespace, extra: Sequence[str] = ()) -> int:
    from runtime.service.sd_notify import Notifier
    from runtime.service.supervisor import Service, install_signal_handlers
    # Taken (and removed from the environment) first: no child may inherit NOTIFY_SOCKET.
    notifier = Notifier.from_environment()
    config = _load(args, extra)
    _setup_logging(config.log.level, args.debug)
    first = [config]

    def load_config():
        # The first load is the one above; a SIGHUP reads the same file and --set again.
        return first.pop() if first else _load(args, extra)

    service = Service(load_config, started_at=_STARTED_AT, notifier=notifier)
    install_signal_handlers(service)
    try:
        report = service.run()
    finally:
        notifier.stopping()
        notifier.close()
    if report.sink_note:
        print(report.sink_note)
    log.info("stopped: %d frames shown, %d dropped (%d pre-empted by other programs), "
             "max picture-to-sound offset %.1f ms", report.frames_shown, report.frames_dropped,
             report.frames_preempted, report.max_av_offset_ms)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from runtime.commands.demo import demo_overrides
    extra = demo_overrides(args)
    if extra is None:
        return 1
    return cmd_run(args, extra)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("EDGEMATE_DEBUG") == "1"
    args.debug = debug
    _setup_logging("info", debug)
    from runtime.config.loader import ConfigError
    from runtime.pipeline.appliance import ApplianceError
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "check":
            from runtime.commands.check import run_check
            return run_check(args, _load)
        if args.command == "bench":
            from runtime.commands.bench import run_bench
            return run_bench(args, _load, _STARTED_AT)
        if args.command == "devices":
            from runtime.commands.devices import print_devices
            return print_devices()
        if args.command == "mouth":
            from runtime.commands.mouth import run_mouth
            return run_mouth(args)
        if args.command in ("say", "stop", "status"):
            from runtime.commands.control_client import run_client
            return run_client(args)
    except ConfigError as err:
        print(f"edgemate {args.command}: invalid configuration:\n{err}", file=sys.stderr)
        return EXIT_CONFIG
    except ApplianceError as err:
        if debug:
            log.exception("failed")
        print(f"edgemate {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug: one line for users, the traceback with --debug
        if debug:
            raise
        print(f"edgemate {args.command}: internal error: {type(err).__name__}: {err} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2
