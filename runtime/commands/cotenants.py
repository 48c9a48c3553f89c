"""Co-tenants for `edgemate bench --stress PROFILE`: what else runs on a real kiosk box.

    quiet      nothing else (the reference: no switch, FULL throughout)
    tts        a TTS engine synthesising in bursts (espeak-ng, else festival's text2wave),
               one per core: ~0.6 s of synthesis, then a pause of 0.4-1.2 s
    busy       a busy loop on every core at normal priority (a runaway browser tab)
    niced      the same at nice 19 (an updater, a backup, a log compressor)
    appliance  a second EdgeMate appliance on the same models, files source, null sink

Each is a set of child processes that leave on their own once we are gone (they poll their
parent; the second appliance also gets SIGTERM from the kernel on Linux), so a killed
bench never leaves load behind.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence

from .load_workers import BURN_CODE, allowed_cores, child_env, stop_processes

log = logging.getLogger(__name__)

PROFILES = ("quiet", "tts", "busy", "niced", "appliance")

#: Bursts of synthesis with pauses, until the parent is gone. argv[1:] is the engine command.
_TTS_CODE = """\
import os, random, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
parent = int(os.environ["EDGEMATE_STRESS_PARENT"])
rng = random.Random(os.getpid())
while os.getppid() == parent:
    end = time.monotonic() + 0.6
    while time.monotonic() < end and os.getppid() == parent:
        subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    time.sleep(rng.uniform(0.4, 1.2))
"""
_TEXT = ("Welcome to the museum. The exhibition on the second floor opens at ten, and the "
         "guided tour starts every hour at the information desk next to the entrance. "
         "Please ask me anything about the collection, the cafe or the way to the station.")


def parse_profiles(text: str) -> tuple[str, ...]:
    """'all' or a comma list of PROFILES, e.g. 'tts,busy'."""
    names = PROFILES if text == "all" else tuple(part.strip() for part in text.split(","))
    unknown = [name for name in names if name not in PROFILES]
    if unknown or not names:
        named = ", ".join(repr(name) for name in unknown) or repr(text)
        raise ValueError(f"unknown co-tenant profile {named} "
                         f"(allowed: all, {', '.join(PROFILES)})")
    return names


def tts_command() -> list[str] | None:
    """A local TTS engine's command that synthesises the text to nowhere, or None."""
    espeak = shutil.which("espeak-ng")
    if espeak:
        return [espeak, "-w", os.devnull, _TEXT]
    text2wave = shutil.which("text2wave")
    if text2wave:
        return ["sh", "-c", f'echo "$0" | {text2wave} -o {os.devnull}', _TEXT]
    return None


def _exit_with_parent() -> None:
    # Linux: the kernel sends SIGTERM when the bench dies (a second appliance does not poll).
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class CoTenant:
    """The child processes of one profile; `start()` and `stop()` (idempotent)."""

    def __init__(self, profile: str, cores: int, appliance_argv: Sequence[str] = ()):
        self.profile = profile
        self.cores = max(1, cores)
        self.appliance_argv = tuple(appliance_argv)
        self.procs: list[subprocess.Popen] = []
        self.note: str | None = None  # why the profile ran without its load

    def _spawn(self, argv: list[str], nice: int = 0, with_parent_death: bool = False) -> None:
        env = child_env()

        def setup() -> None:
            if nice:
                os.nice(nice)
            if with_parent_death:
                _exit_with_parent()

        self.procs.append(subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=setup if (nice or with_parent_death) else None))

    def start(self) -> None:
        if self.profile in ("busy", "niced"):
            for _ in range(self.cores):
                self._spawn([sys.executable, "-c", BURN_CODE],
                            nice=19 if self.profile == "niced" else 0)
        elif self.profile == "tts":
            command = tts_command()
            if command is None:
                self.note = "no TTS engine (espeak-ng or festival) installed: ran without load"
                log.warning("co-tenant tts: %s", self.note)
                return
            for _ in range(self.cores):
                self._spawn([sys.executable, "-c", _TTS_CODE, *command])
        elif self.profile == "appliance":
            self._spawn([sys.executable, "-m", "runtime", *self.appliance_argv],
                        with_parent_death=True)
        if self.procs:
            log.info("co-tenant %s: %d processes started", self.profile, len(self.procs))

    def stop(self) -> None:
        procs, self.procs = self.procs, []
        stop_processes(procs, 5.0)
        if procs:
            log.info("co-tenant %s: stopped", self.profile)


def main(argv: Sequence[str] | None = None) -> int:
    """python -m runtime.commands.cotenants PROFILES -- COMMAND...: COMMAND beside the co-tenants
    (e.g. `python -m runtime.commands.cotenants busy,tts -- edgemate demo --record busy.mp4`)."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m runtime.commands.cotenants", description=main.__doc__)
    parser.add_argument("profiles", help="all, or a comma list of " + ", ".join(PROFILES))
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        profiles = parse_profiles(args.profiles)
    except ValueError as err:
        parser.error(str(err))
    if not command or "appliance" in profiles:
        parser.error("give a command after --; 'appliance' needs the bench (edgemate bench --stress)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tenants = [CoTenant(profile, allowed_cores()) for profile in profiles]
    try:
        for tenant in tenants:
            tenant.start()
        return subprocess.call(command)
    finally:
        for tenant in tenants:
            tenant.stop()


if __name__ == "__main__":
    sys.exit(main())
