"""A hostile integrator against a running appliance: bad requests, idle and slow clients,
speech-socket abuse, signals, deleted sockets, a second instance and broken bundles.

    python -m tools.checks.attack [--bundle DIR] [--audio-model SIDECAR] [--json]

Starts `edgemate run` (the stream source, null sink, control and speech sockets in a
temporary folder), runs every case against it, local sockets only and
bounded in time, and checks after each: the appliance still answers GET /status, its frames
still advance, and speech answered 200 was played. Broken bundles are run as their own
`edgemate run` each: they must exit 78 with one line and no traceback. Prints a table of
cases tried, survived cleanly and data lost; exit 0 when every case survived with nothing
lost.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLE = REPO / "models" / "avatars" / "default"
DEFAULT_AUDIO = REPO / "models" / "audio" / "audio.yaml"


@dataclass
class Outcome:
    category: str
    name: str
    survived: bool = True
    data_lost: bool = False
    note: str = ""


@dataclass
class Target:
    """The appliance under attack and how to reach it."""

    folder: Path
    proc: subprocess.Popen
    control: Path
    speech: Path
    log: Path
    outcomes: list[Outcome] = field(default_factory=list)

    def ask(self, request: bytes, timeout_s: float = 10.0) -> bytes:
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(timeout_s)
            deadline = time.monotonic() + timeout_s
            while True:  # a full listen queue answers EAGAIN: a real client tries again
                try:
                    raw.connect(str(self.control))
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            try:
                raw.sendall(request)
            except OSError:
                pass  # refused before it was all sent: the answer is still there
            answer = b""
            try:
                while True:
                    part = raw.recv(65536)
                    if not part:
                        break
                    answer += part
            except OSError:
                pass
            return answer

    def status(self) -> dict | None:
        try:
            answer = self.ask(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n", 5.0)
            return json.loads(answer.split(b"\r\n\r\n", 1)[1])
        except (OSError, ValueError, IndexError):
            return None

    def healthy(self) -> tuple[bool, str]:
        """Answers, runs, and its frames advance."""
        if self.proc.poll() is not None:
            return False, f"the appliance exited ({self.proc.returncode})"
        first = self.status()
        if first is None or first.get("state") != "running":
            return False, f"status: {first and first.get('state')}"
        deadline = time.monotonic() + 5.0  # a busy box may hold a frame back for a moment
        while time.monotonic() < deadline:
            time.sleep(0.1)
            second = self.status()
            if second is not None and second["frames_shown"] > first["frames_shown"]:
                return True, ""
        return False, "frames do not advance"


def _wav(seconds: float, rate: int = 16000, level: float = 0.4) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (level * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * 32767)
    data = pcm.astype("<i2").tobytes()
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" +
            struct.pack("<I", len(data)) + data)


def _say(target: Target, body: bytes) -> bytes:
    head = (b"POST /say HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n")
    return target.ask(head + body, 30.0)


def _played(target: Target, within_s: float) -> bool:
    """Pushed speech shows as playing within the time (what a 200 promised)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        status = target.status() or {}
        if "playing" in str(status.get("pushed") or "") + str(status.get("source") or ""):
            return True
        time.sleep(0.03)
    return False


# --- the cases -------------------------------------------------------------------------

def http_cases() -> list[tuple[str, bytes]]:
    return [
        ("garbage request line", b"\x00\x01\x02 not http\r\n\r\n"),
        ("70 kB request line", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"),
        ("1000 headers", b"GET /status HTTP/1.1\r\n" + b"X-A: b\r\n" * 1000 + b"\r\n"),
        ("Content-Length of 4,400 digits", b"POST /say HTTP/1.1\r\nContent-Length: "
         + b"9" * 4400 + b"\r\n\r\n"),
        ("Content-Length 100 GB", b"POST /say HTTP/1.1\r\nContent-Length: 107374182400\r\n\r\n"),
        ("Content-Length -5", b"POST /say HTTP/1.1\r\nContent-Length: -5\r\n\r\n"),
        ("chunk size 0x2c", b"POST /say?rate=16000 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"0x2c\r\n" + b"\x00" * 44 + b"\r\n0\r\n\r\n"),
        ("chunk size 2_c", b"POST /say?rate=16000 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"2_c\r\n" + b"\x00" * 44 + b"\r\n0\r\n\r\n"),
        ("chunk size ffffffffffffffff", b"POST /say?rate=16000 HTTP/1.1\r\nTransfer-Encoding: "
         b"chunked\r\n\r\nffffffffffffffff\r\nab\r\n"),
        ("body shorter than declared", b"POST /say HTTP/1.1\r\nContent-Length: 100000\r\n\r\nRIFF"),
        ("not a WAV, no rate", b"POST /say HTTP/1.1\r\nContent-Length: 8\r\n\r\nabcdefgh"),
        ("WAV with 0 channels", b"POST /say HTTP/1.1\r\nContent-Length: 44\r\n\r\n" + b"RIFF"
         + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 0, 16000, 0, 0, 16)
         + b"data" + struct.pack("<I", 0)),
        ("raw rate 1", b"POST /say?rate=1 HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"),
        ("raw rate 10^9", b"POST /say?rate=1000000000 HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"),
        ("path traversal", b"GET /../../etc/passwd HTTP/1.1\r\n\r\n"),
        ("unknown method", b"DELETE /status HTTP/1.1\r\n\r\n"),
        ("Transfer-Encoding gzip", b"POST /say HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
        ("HTTP/0.9", b"GET /status\r\n"),
    ]


def run_http(target: Target) -> None:
    for name, request in http_cases():
        answer = target.ask(request, 15.0)
        ok, why = target.healthy()
        code = answer[:12].decode("latin-1", "replace")
        target.outcomes.append(Outcome("control HTTP", name, ok and not code.startswith("HTTP/1.1 2"),
                                       note=why or code.strip()))


def run_clients(target: Target) -> None:
    # 200 half-open connections, then a good request must get 200 or a clear 503.
    idle = []
    for _ in range(200):
        raw = socket.socket(socket.AF_UNIX)
        raw.setblocking(False)
        try:
            raw.connect(str(target.control))
            idle.append(raw)
        except OSError:  # the listen queue is full: the flood is being refused
            raw.close()
    answer = target.ask(b"GET /status HTTP/1.1\r\n\r\n", 10.0)
    for raw in idle:
        raw.close()
    time.sleep(0.5)
    ok, why = target.healthy()
    target.outcomes.append(Outcome("clients", "200 idle connections", ok and answer[:12] in
                                   (b"HTTP/1.1 200", b"HTTP/1.1 503"), note=why or answer[:12].decode()))
    # A slow header drip, then good speech must still play.
    with socket.socket(socket.AF_UNIX) as slow:
        slow.connect(str(target.control))
        for byte in b"POST /say HT":
            slow.sendall(bytes([byte]))
            time.sleep(0.1)
        answer = _say(target, _wav(1.0))
        lost = answer.startswith(b"HTTP/1.1 200") and not _played(target, 3.0)
    ok, why = target.healthy()
    target.outcomes.append(Outcome("clients", "slow header drip beside a good /say", ok,
                                   lost, why or answer[:12].decode()))


def run_speech(target: Target) -> None:
    answer = _say(target, _wav(1.5))
    got = answer.startswith(b"HTTP/1.1 200")
    played = _played(target, 4.0)
    target.outcomes.append(Outcome("speech", "a good POST /say", got, got and not played,
                                   "played" if played else "not played"))
    # The speech socket: a silent client, then a good one.
    with socket.socket(socket.AF_UNIX) as silent:
        silent.connect(str(target.speech))
        with socket.socket(socket.AF_UNIX) as good:
            good.connect(str(target.speech))
            good.sendall(_wav(1.0))
            good.shutdown(socket.SHUT_WR)
            played = _played(target, 15.0)
    ok, why = target.healthy()
    target.outcomes.append(Outcome("speech", "silent socket client before a good one", ok,
                                   not played, why or ("played" if played else "not played")))
    # An endless 2-channel 96 kHz float stream for 2 s: memory stays bounded.
    before = (target.status() or {}).get("private_mb") or 0
    header = (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " +
              struct.pack("<IHHIIHH", 16, 3, 2, 96000, 96000 * 8, 8, 32) + b"data" +
              struct.pack("<I", 0xFFFFFFFF))
    with socket.socket(socket.AF_UNIX) as flood:
        flood.settimeout(0.5)
        flood.connect(str(target.speech))
        flood.sendall(header)
        end, block = time.monotonic() + 2.0, np.full(96000, 0.1, np.float32).tobytes()
        while time.monotonic() < end:
            try:
                flood.sendall(block)
            except OSError:
                break  # back pressure: the socket stopped taking it
    after = (target.status() or {}).get("private_mb") or 0
    target.ask(b"POST /stop HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    ok, why = target.healthy()
    target.outcomes.append(Outcome("speech", "endless 96 kHz stereo float stream", ok and after - before < 60,
                                   note=why or f"private memory {before} -> {after} MB"))
    with socket.socket(socket.AF_UNIX) as noise:
        noise.connect(str(target.speech))
        noise.sendall(os.urandom(65536))
    ok, why = target.healthy()
    target.outcomes.append(Outcome("speech", "random bytes on the speech socket", ok, note=why))


def run_process(target: Target, audio_model: Path, bundle: Path) -> None:
    target.proc.send_signal(signal.SIGSTOP)
    time.sleep(3.0)
    target.proc.send_signal(signal.SIGCONT)
    time.sleep(1.0)
    ok, why = target.healthy()
    target.outcomes.append(Outcome("process", "SIGSTOP 3 s, SIGCONT", ok, note=why))
    for path in (target.control, target.speech):
        path.unlink()
    time.sleep(2.5)
    ok, why = target.healthy()
    back = target.control.exists() and target.speech.exists()
    target.outcomes.append(Outcome("process", "runtime sockets deleted", ok and back,
                                   note=why or ("both back" if back else "not back")))
    try:
        second = subprocess.run(_run_argv(target.folder, audio_model, bundle),
                                capture_output=True, text=True, timeout=60, cwd=REPO)
        lines = second.stderr.strip().splitlines()
        clean = second.returncode != 0 and "Traceback" not in second.stderr and len(lines) >= 1
        said = lines[-1][:120] if lines else f"exit {second.returncode}, nothing said"
    except subprocess.TimeoutExpired:  # subprocess.run killed it
        clean, said = False, "it started beside the first and ran for 60 s"
    ok, why = target.healthy()
    target.outcomes.append(Outcome("process", "a second appliance on the same sockets",
                                   ok and clean, note=why or said))


def broken_bundles(source: Path, folder: Path) -> list[tuple[str, Path]]:
    doc = yaml.safe_load((source / "avatar.yaml").read_text())

    def make(name: str, change: Callable[[dict, Path], None]) -> tuple[str, Path]:
        target = folder / name.replace(" ", "-")
        target.mkdir(parents=True)
        for item in source.iterdir():
            if item.name != "avatar.yaml":
                (target / item.name).symlink_to(item)
        copy = yaml.safe_load(yaml.safe_dump(doc))
        change(copy, target)
        (target / "avatar.yaml").write_text(yaml.safe_dump(copy, sort_keys=False))
        return name, target

    def replace_file(target: Path, name: str, array) -> None:
        (target / name).unlink()
        np.save(target / name, array, allow_pickle=True)

    def restamp(copy: dict, target: Path, name: str) -> None:
        import hashlib
        copy["template"]["sha256"][name] = hashlib.sha256((target / name).read_bytes()).hexdigest()

    return [
        make("box size 0", lambda d, t: d.update(box_size=0)),
        make("box size 100000", lambda d, t: d.update(box_size=100000)),
        make("feather 100000", lambda d, t: d.update(mask={"feather_px": 100000})),
        make("frame size 100000x100000", lambda d, t: d.update(frame_size=[100000, 100000])),
        make("template count 30000000", lambda d, t: d["template"].update(count=30000000)),
        make("NaN open_scale", lambda d, t: d.update(calibration={"open_scale": float("nan")})),
        make("sha256 of /etc/shadow", lambda d, t: d["template"].update(sha256={"/etc/shadow": "0"})),
        make("crop size off the models", lambda d, t: d.update(crop_size=d["crop_size"] // 2)),
        make("pickled crop boxes", lambda d, t: (replace_file(t, "crop_boxes.npy",
                                                              np.array([{"x": 1}], dtype=object)),
                                                 restamp(d, t, "crop_boxes.npy"))),
        make("mask file with NaN", lambda d, t: (np.save(t / "mask.npy", np.full((4, 4), np.nan,
                                                                                   np.float32)),
                                                 d.update(mask={"file": "mask.npy"}))),
    ]


def run_bundles(folder: Path, audio_model: Path, bundle: Path, outcomes: list[Outcome]) -> None:
    for name, path in broken_bundles(bundle, folder / "bundles"):
        done = subprocess.run(_run_argv(folder, audio_model, path, sockets=False),
                              capture_output=True, text=True, timeout=300, cwd=REPO)
        lines = done.stderr.strip().splitlines()
        clean = done.returncode == 78 and "Traceback" not in done.stderr and len(lines) >= 1
        outcomes.append(Outcome("bundle", name, clean,
                                note=f"exit {done.returncode}: {lines[-1][:110] if lines else ''}"))


def _run_argv(folder: Path, audio_model: Path, bundle: Path, sockets: bool = True) -> list[str]:
    from runtime.commands.demo import demo_clip
    clip = demo_clip(bundle) or demo_clip(DEFAULT_BUNDLE)
    argv = [sys.executable, "-m", "runtime", "run", "--audio-model", str(audio_model),
            "--bundle", str(bundle), "--set", "display.sink=null",
            "--set", "audio.playback.enabled=false", "--set", "log.level=warning"]
    if sockets:  # the speech socket is open only with the stream source
        argv += ["--set", "audio.source=stream",
                 "--set", f"control.socket={folder / 'control.sock'}",
                 "--set", f"audio.stream.socket={folder / 'speech.sock'}"]
    else:
        argv += ["--set", "audio.source=files", "--set", f"audio.files.playlist=[{clip}]",
                 "--set", "control.enabled=false", "--set", "run.duration_s=1"]
    return argv


def start(folder: Path, audio_model: Path, bundle: Path) -> Target:
    log = folder / "appliance.log"
    proc = subprocess.Popen(_run_argv(folder, audio_model, bundle), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    target = Target(folder, proc, folder / "control.sock", folder / "speech.sock", log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = target.status() if target.control.exists() else None
        if status and status.get("fps", 0) > 0:
            return target
        if proc.poll() is not None:
            raise SystemExit(f"attack: the appliance did not start (exit {proc.returncode}): "
                             f"{log.read_text().strip().splitlines()[-1:]}")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("attack: the appliance did not show frames within 120 s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.checks.attack", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--audio-model", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--json", action="store_true", help="print every outcome as JSON")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="edgemate-attack-", dir="/tmp"))
    outcomes: list[Outcome] = []
    try:
        target = start(folder, args.audio_model, args.bundle)
        try:
            run_http(target)
            run_clients(target)
            run_speech(target)
            run_process(target, args.audio_model, args.bundle)
        finally:
            target.proc.send_signal(signal.SIGTERM)
            try:
                code = target.proc.wait(30)
            except subprocess.TimeoutExpired:
                target.proc.kill()
                code = "killed after 30 s"
            traceback = "Traceback" in target.log.read_text()
            target.outcomes.append(Outcome("process", "SIGTERM at the end", code == 0 and not traceback,
                                           note=f"exit {code}" + (", a traceback in the log" if traceback else "")))
            outcomes += target.outcomes
        run_bundles(folder, args.audio_model, args.bundle, outcomes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps([outcome.__dict__ for outcome in outcomes], indent=2))
    _table(outcomes)
    return 0 if all(o.survived and not o.data_lost for o in outcomes) else 1


def _table(outcomes: list[Outcome]) -> None:
    out = sys.stderr if "--json" in sys.argv else sys.stdout
    out.write("| category | cases | survived cleanly | data lost |\n|---|---|---|---|\n")
    for category in dict.fromkeys(o.category for o in outcomes):
        rows = [o for o in outcomes if o.category == category]
        out.write(f"| {category} | {len(rows)} | {sum(o.survived for o in rows)} | "
                  f"{sum(o.data_lost for o in rows)} |\n")
    out.write(f"| all | {len(outcomes)} | {sum(o.survived for o in outcomes)} | "
              f"{sum(o.data_lost for o in outcomes)} |\n")
    for outcome in outcomes:
        if not outcome.survived or outcome.data_lost:
            out.write(f"FAILED {outcome.category}: {outcome.name}: {outcome.note}\n")


if __name__ == "__main__":
    sys.exit(main())
