"""Soak test: the real appliance (`edgemate run` in a child process) under a rotating load.

    python -m tools.soak.run --minutes 60 --out docs/soak

Every few seconds one action from a rotation: push speech over the control socket (WAV,
raw PCM chunked), barge in, reload a changed config (SIGHUP), reload a broken config
(must be rejected), drop a TTS client mid-utterance, send a malformed body (must get 4xx).
The configured source is a looping WAV playlist that changes with each reload.

Each minute: RSS, private memory, the appliance's own allocator readings (C heap in use and
freed-but-kept, Python blocks: its /status), open fds and threads, frames shown and
dropped, fps, the largest picture-to-sound offset of that minute, barge-in latency, and what
was done, into CSV and a PNG plot (rewritten every minute, so a cut-short run leaves a
report). It fails (exit 1) on RSS growth over 5 % after the warm-up (the first 10 % of the
run, at least one minute), any growth of open fds (the lowest count of a minute, the
playlist file being read aside, so a request in flight does not count), an offset of one
frame (40 ms) or more, an action answered wrongly, or an appliance that dies; a run of 30
minutes or more also fails when the peaks of private memory or of the C heap in use climb
over 5 % from the first third to the last (tools/soak/report.py). Without
--bundle/--audio-model it runs on TEST FIXTURE models (tools/export/make_fixtures.py).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from runtime import SAMPLE_RATE
from runtime.audio.pcm import encode_pcm
from runtime.audio.wav import write_wav
from runtime.commands.bench import speech_like
from runtime.commands.control_client import UnixHTTPConnection, exchange
from runtime.service.health import private_mb
from .report import plot, summary, verdict

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
#: The allocator settings of systemd/edgemate.service: the soak measures what a box runs.
UNIT_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "2",
                    "OMP_WAIT_POLICY": "PASSIVE"}
#: Allocator readings from the appliance's own /status (glibc; empty elsewhere), at each minute.
HEAP_COLUMNS = ("heap_in_use_mb", "heap_free_mb", "python_blocks")
COLUMNS = ("minute", "rss_mb", "private_mb", *HEAP_COLUMNS, "open_fds", "threads",
           "frames_shown", "dropped", "fps",
           "max_av_offset_ms", "barge_in_ms_max", "says", "stops", "reloads", "bad_reloads",
           "client_drops", "malformed", "errors", "load_avg_1m")


class Soak:
    def __init__(self, work: Path, out: Path, audio_model: Path, bundle: Path,
                 period_s: float) -> None:
        self.work, self.out, self.period_s = work, out, period_s
        self.audio_model, self.bundle = audio_model, bundle
        self.run_dir = work / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.run_dir / "edgemate-control.sock"
        self.config = work / "soak.yaml"
        self.clips = self._write_clips()
        self.generation = 0
        self.said = -1  # the last clip pushed by say_wav
        self.proc: subprocess.Popen | None = None
        self.rows: list[dict] = []
        self.counts = dict.fromkeys(("says", "stops", "reloads", "bad_reloads", "client_drops",
                                     "malformed", "errors"), 0)
        self.barge_ms: list[float] = []  # this minute's barge-in latencies
        self.barge_ms_all: list[float] = []
        self.failures: list[str] = []

    # -- setup ------------------------------------------------------------------------
    def _write_clips(self) -> list[Path]:
        clips = []
        for number, (seconds, rate, channels) in enumerate(
                [(3.0, 16000, 1), (5.0, 22050, 2), (2.0, 44100, 1), (7.0, 48000, 2)]):
            mono = speech_like(seconds, seed=number)
            at_rate = np.interp(np.arange(int(seconds * rate)) / rate,
                                np.arange(mono.size) / SAMPLE_RATE, mono).astype(np.float32)
            samples = at_rate if channels == 1 else np.stack([at_rate, at_rate * 0.8], axis=1)
            path = self.work / f"clip{number}_{rate}.wav"
            write_wav(path, samples, rate)
            clips.append(path)
        return clips

    def write_config(self, broken: bool = False) -> None:
        if broken:
            self.config.write_text("extends: default\naudio:\n  source: hologram\n")
            return
        g = self.generation
        playlist = [str(self.clips[(g + i) % len(self.clips)]) for i in range(2)]
        self.config.write_text(
            "extends: default\n"
            f"models: {{audio: '{self.audio_model}'}}\n"
            f"avatar: {{bundle: '{self.bundle}'}}\n"
            f"audio:\n  files: {{playlist: {json.dumps(playlist)}, loop: true, gap_s: 0.3}}\n"
            f"render: {{quality: {'full' if g % 2 == 0 else 'coarse'}}}\n"
            "display: {sink: null}\n"
            "control: {socket: edgemate-control.sock}\n")

    def start(self) -> None:
        self.write_config()
        env = dict(os.environ, RUNTIME_DIRECTORY=str(self.run_dir), PYTHONUNBUFFERED="1",
                   **UNIT_ENVIRONMENT)
        env.pop("NOTIFY_SOCKET", None)
        self.log_file = open(self.work / "appliance.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "runtime", "run", "-c", str(self.config)],
                                     cwd=REPO, env=env, stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.status().get("fps", 0) > 0:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"the appliance did not start; see {self.work / 'appliance.log'}")

    # -- talking to it ----------------------------------------------------------------
    def http(self, method: str, path: str, body=None, headers=None, timeout=30.0) -> tuple[int, dict]:
        connection = UnixHTTPConnection(str(self.socket), timeout)
        status, data = exchange(connection, method, path, body, headers)
        return status, json.loads(data) if data.startswith(b"{") else {}

    def status(self) -> dict:
        return self.http("GET", "/status", timeout=10)[1]

    def expect(self, what: str, code: int, wanted: int) -> None:
        if code != wanted:
            self.counts["errors"] += 1
            self.failures.append(f"{what}: HTTP {code}, expected {wanted}")
            log.error("%s: HTTP %d, expected %d", what, code, wanted)

    # -- actions ----------------------------------------------------------------------
    def say_wav(self, number: int) -> None:
        # Every clip in turn (rates 16 to 48 kHz, mono and stereo), so the warm-up minute
        # has already seen the largest buffers.
        self.said += 1
        data = self.clips[self.said % len(self.clips)].read_bytes()
        code, _ = self.http("POST", "/say", data, {"Content-Type": "audio/wav"})
        self.expect("say wav", code, 200)
        self.counts["says"] += 1

    def say_raw_then_stop(self, number: int) -> None:
        pcm = encode_pcm(speech_like(6.0, seed=number)[:, None], "s16le")
        pieces = (pcm[i:i + 16000] for i in range(0, len(pcm), 16000))
        code, _ = self.http("POST", "/say?rate=16000&format=s16le&channels=1", pieces,
                            {"Transfer-Encoding": "chunked"})
        self.expect("say raw chunked", code, 200)
        self.counts["says"] += 1
        time.sleep(1.5)  # mid-utterance
        started = time.monotonic()
        code, doc = self.http("POST", "/stop")
        self.expect("stop", code, 200)
        self.counts["stops"] += 1
        latency = doc.get("mouth_closed_after_ms")
        if latency is None:
            self.failures.append("stop: no frame after the cut was shown within 0.5 s")
        else:
            self.barge_ms.append(latency)
        log.debug("stop answered in %.0f ms", (time.monotonic() - started) * 1000)

    def reload(self) -> None:
        self.generation += 1
        self.write_config()
        self.proc.send_signal(signal.SIGHUP)
        self.counts["reloads"] += 1
        time.sleep(1.0)

    def bad_reload(self) -> None:
        self.write_config(broken=True)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        error = self.status().get("last_error") or ""
        if "reload rejected" not in error:
            self.failures.append(f"a broken config was not rejected (last_error {error!r})")
        self.counts["bad_reloads"] += 1
        self.write_config()  # the good file back, without a reload: nothing changes

    def client_drop(self, number: int) -> None:
        data = self.clips[number % len(self.clips)].read_bytes()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self.socket))
        sock.sendall(b"POST /say HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                     + f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:len(data) // 2])
        time.sleep(0.3)
        sock.close()  # a TTS engine that died mid-utterance
        self.counts["client_drops"] += 1

    def malformed(self) -> None:
        code, _ = self.http("POST", "/say", b"RIFF\x10\0\0\0WAVEjunkjunk",
                            {"Content-Type": "audio/wav"})
        self.expect("malformed say", code, 400)
        code, _ = self.http("POST", "/say?rate=3&format=s16le", b"\0" * 64)
        self.expect("bad rate", code, 400)
        self.counts["malformed"] += 1

    def act(self, step: int) -> None:
        rotation = (self.say_wav, self.say_raw_then_stop, self.client_drop, self.malformed,
                    self.say_wav, self.reload, self.say_raw_then_stop, self.bad_reload,
                    self.say_wav, self.reload, self.say_wav, self.client_drop)
        action = rotation[step % len(rotation)]
        try:
            action(step) if action in (self.say_wav, self.say_raw_then_stop, self.client_drop) \
                else action()
        except OSError as exc:
            self.counts["errors"] += 1
            self.failures.append(f"{action.__name__}: {exc}")
            log.error("%s failed: %s", action.__name__, exc)

    # -- measuring --------------------------------------------------------------------
    def sample(self) -> dict:
        process = psutil.Process(self.proc.pid)
        with process.oneshot():
            # The playlist item being read (and the next one, queued in a gap) is an open
            # file by design: counted apart, so a leak is not hidden or faked by timing.
            clips = {str(clip) for clip in self.clips}
            playing = sum(1 for entry in process.open_files() if entry.path in clips)
            return {"rss_mb": process.memory_info().rss / 2**20, "private_mb": _private_mb(process),
                    "fds": process.num_fds() - playing, "threads": process.num_threads()}

    def run(self, minutes: float) -> None:
        start = time.monotonic()
        step, minute = 0, 0
        samples: list[dict] = []
        last_status = self.status()
        next_action = start + self.period_s
        while minute < minutes:
            now = time.monotonic()
            if self.proc.poll() is not None:
                self.failures.append(f"the appliance exited with {self.proc.returncode}")
                break
            if now >= next_action:
                self.act(step)
                step += 1
                next_action = time.monotonic() + self.period_s
            samples.append(self.sample())
            if time.monotonic() - start >= (minute + 1) * 60:
                minute += 1
                status = self.status()
                self.rows.append(self._row(minute, samples, status, last_status))
                last_status, samples = status, []
                self.write_report(final=False)
                log.info("minute %d: %s", minute, self.rows[-1])
            time.sleep(0.5)

    def _row(self, minute: int, samples: list[dict], status: dict, last: dict) -> dict:
        row = {"minute": minute,
               "rss_mb": round(statistics.median(s["rss_mb"] for s in samples), 1),
               "private_mb": round(statistics.median(s["private_mb"] for s in samples), 1),
               "open_fds": min(s["fds"] for s in samples),
               "threads": min(s["threads"] for s in samples),
               "frames_shown": status["frames_shown"] - last["frames_shown"],
               "dropped": status["drops"] - last["drops"],
               "fps": round((status["frames_shown"] - last["frames_shown"]) / 60, 2),
               "max_av_offset_ms": status["recent_max_av_offset_ms"],
               "barge_in_ms_max": max(self.barge_ms, default=""),
               "load_avg_1m": round(os.getloadavg()[0], 2)}
        row.update({key: "" if status.get(key) is None else status[key] for key in HEAP_COLUMNS})
        row.update(self.counts)
        self.barge_ms_all += self.barge_ms
        self.barge_ms = []
        return row

    def stop(self) -> float | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.failures.append("SIGTERM: the appliance did not stop within 30 s")
            return None
        if code != 0:
            self.failures.append(f"SIGTERM: exit status {code}")
        return time.monotonic() - started

    # -- verdict and report -----------------------------------------------------------
    def verdict(self) -> list[str]:
        return verdict(self.rows, self.failures)

    def write_report(self, final: bool, stop_s: float | None = None) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "soak.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        if self.rows:
            fixture = "fixture" in str(self.bundle).lower()
            plot(self.rows, self.out / "soak.png",
                 "EdgeMate soak: playlists, pushed speech, barge-ins, reloads"
                 + (" (TEST FIXTURE models)" if fixture else ""))
        if final:
            (self.out / "soak.md").write_text(summary(self, stop_s))


def _private_mb(process: psutil.Process) -> float:
    """Anonymous resident memory of the appliance, read from outside it (`runtime.service.health`);
    on macOS its private pages, a close stand-in."""
    private = private_mb(f"/proc/{process.pid}/status")
    return private if private is not None else process.memory_full_info().uss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.soak.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("soak-report"))
    parser.add_argument("--period", type=float, default=4.0, help="seconds between actions")
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--audio-model", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = Path(tempfile.mkdtemp(prefix="edgemate-soak-"))
    audio_model, bundle = args.audio_model, args.bundle
    if audio_model is None or bundle is None:
        from tools.export.make_fixtures import write_all
        log.info("no models given: running on TEST FIXTURE models")
        audio_model, bundle = write_all(work / "fixtures")
    soak = Soak(work, args.out, audio_model.resolve(), bundle.resolve(), args.period)
    stop_s = None

    def interrupted(signum, frame):
        raise KeyboardInterrupt  # SIGTERM too: stop the appliance and write what we have

    signal.signal(signal.SIGTERM, interrupted)
    try:
        soak.start()
        soak.run(args.minutes)
    except KeyboardInterrupt:
        soak.failures.append(f"interrupted after {len(soak.rows)} minutes")
    finally:
        stop_s = soak.stop()
        soak.write_report(final=True, stop_s=stop_s)
        if not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
    problems = soak.verdict()
    print((args.out / "soak.md").read_text())
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
