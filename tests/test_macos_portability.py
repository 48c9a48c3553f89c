"""macOS parity without a Mac: this Linux box is made to look like one (sys.platform "darwin",
no sched_*affinity, no psutil.sensors_temperatures, no cpu_affinity, no SO_PEERCRED or
SOCK_CLOEXEC, sensor paths that do not exist) and every Linux-only reading must degrade to
"unknown" without raising or logging a traceback. The launchd plist and the Mac section of
systemd/README.md are checked against the code they start."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import plistlib
import re
import socket
import sys
from pathlib import Path
from unittest import mock

import psutil
import pytest

from runtime.config.loader import load_config
from runtime.quality.levels import FrameCost, Quality

REPO = Path(__file__).resolve().parents[1]
PLIST = REPO / "systemd" / "com.edgemate.appliance.plist"
MAC_README = REPO / "systemd" / "README.md"

# pmset -g therm as printed by a calm Intel Mac (a CPU power block with a timestamp), a calm
# Apple silicon Mac, and a hot one.
THERM_INTEL_CALM = """Note: No thermal warning level has been recorded
Note: No performance warning level has been recorded
2024-05-02 10:11:12 +0200 CPU Power notify
\tCPU_Scheduler_Limit \t= 100
\tCPU_Available_CPUs \t= 8
\tCPU_Speed_Limit \t= 100
"""
THERM_M1_CALM = """Note: No thermal warning level has been recorded
Note: No performance warning level has been recorded
Note: No CPU power status has been recorded
"""
THERM_HOT = """2024-05-02 10:11:12 +0200 Thermal Warning Level notify
Thermal warning level set to 1.
2024-05-02 10:11:13 +0200 CPU Power notify
\tCPU_Speed_Limit \t= 60
"""


@pytest.fixture
def fake_macos(monkeypatch, tmp_path):
    """Linux-only APIs and paths gone, as on macOS; returns a directory that does not exist."""
    import platform

    from runtime.commands import cpu_meter, devices
    from runtime.quality import sensors
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    for name in ("sched_getaffinity", "sched_setaffinity"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.delattr(psutil, "sensors_temperatures", raising=False)
    monkeypatch.delattr(psutil.Process, "cpu_affinity", raising=False)
    for name in ("SO_PEERCRED", "SOCK_CLOEXEC"):
        monkeypatch.delattr(socket, name, raising=False)
    missing = tmp_path / "no-such-dir"
    monkeypatch.setattr(sensors, "THERMAL_ROOT", missing / "thermal")
    monkeypatch.setattr(sensors, "PI_THROTTLE_NODE", missing / "get_throttled")
    monkeypatch.setattr(sensors, "X86_THROTTLE_GLOB", str(missing / "cpu*" / "count"))
    monkeypatch.setattr(devices, "THERMAL_ZONE_GLOB", str(missing / "thermal_zone*"))
    monkeypatch.setattr(devices, "PI_THROTTLE_NODE", str(missing / "get_throttled"))
    monkeypatch.setattr(devices, "X86_COUNTER_GLOB", str(missing / "cpu*" / "count"))
    monkeypatch.setattr(cpu_meter, "_PROC", missing / "proc")
    # No pmset on this Linux box: PATH without one, unless a test puts a fake first.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return missing


def _fake_pmset(tmp_path: Path, output: str) -> None:
    script = tmp_path / "bin" / "pmset"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + output + "EOF\n")
    script.chmod(0o755)


def _no_tracebacks(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- sensors ------------------------------------------------------------------------------

def test_pmset_output_of_calm_macs_is_no_throttle():
    from runtime.quality.sensors import parse_pmset_therm
    # The timestamp after "No thermal warning level ..." is no warning level of 2024.
    assert parse_pmset_therm(THERM_INTEL_CALM) == ()
    assert parse_pmset_therm(THERM_M1_CALM) == ()
    assert parse_pmset_therm(THERM_HOT) == ("macOS CPU speed limit 60%",
                                            "macOS thermal warning level 1")


def test_sensors_read_unknown_on_a_mac_without_raising(fake_macos, caplog):
    from runtime.quality.sensors import PsutilTemperature, SensorSampler, discover
    from runtime.service.health import read_temperature_c
    caplog.set_level(logging.DEBUG)
    settings = load_config("macos-m1").governor.sensors
    found = discover(settings)
    assert found.temperature is None and found.throttles == ()  # no pmset on PATH here
    assert found.cpu is not None  # psutil's CPU times exist on macOS
    assert PsutilTemperature.find() is None
    sampler = SensorSampler(found, 1.0, clock=lambda: 5.0)
    reading = sampler.sample_once()
    assert reading.temperature_c is None and reading.temperature_source is None
    assert reading.throttled == ()
    assert read_temperature_c(str(fake_macos / "thermal_zone*" / "temp")) is None
    assert any("no temperature sensor" in r.getMessage() for r in caplog.records)
    _no_tracebacks(caplog)


def test_pmset_is_the_macs_throttle_sensor(fake_macos, tmp_path, caplog):
    from runtime.quality.sensors import PmsetThermal, SensorSampler, discover
    _fake_pmset(tmp_path, THERM_INTEL_CALM)
    found = discover(load_config("macos-m1").governor.sensors)
    assert [type(sensor) for sensor in found.throttles] == [PmsetThermal]
    assert found.throttles[0].interval_s == 5  # the macos-m1 profile asks more often
    assert SensorSampler(found, 1.0).sample_once().throttled == ()
    _fake_pmset(tmp_path, THERM_HOT)
    found = discover(load_config("macos-m1").governor.sensors, use_psutil=False)
    assert SensorSampler(found, 1.0).sample_once().throttled == (
        "macOS CPU speed limit 60%", "macOS thermal warning level 1")
    _no_tracebacks(caplog)


# -- the governor -------------------------------------------------------------------------

def test_governor_decides_by_frame_cost_alone_with_no_temperature(fake_macos, caplog):
    from runtime.quality.governor import Governor
    from runtime.quality.sensors import Reading, SensorSampler, discover
    settings = load_config("macos-m1").governor
    found = discover(settings.sensors, use_psutil=False)
    now = [0.0]
    sampler = SensorSampler(found, 1.0, clock=lambda: now[0])
    busy_until = 30.0  # FULL is too slow while the box is busy, then it fits again

    def read() -> Reading:
        # What the sampler says (nothing), with the CPU of other programs pinned high: shown
        # in the status, never a reason to switch.
        return dataclasses.replace(sampler.latest(), cpu_other_percent=95.0)

    governor = Governor(settings, read, clock=lambda: now[0])
    for frame in range(round(120 / 0.04)):
        now[0] = round(frame * 0.04, 6)
        if frame % 25 == 0:
            sampler.sample_once()
        level = governor.level()
        cost = 0.036 if level == Quality.FULL and now[0] < busy_until else 0.008
        governor.observe(FrameCost(cost, cost, level=level))
    assert governor.reading.temperature_c is None and governor.reading.throttled == ()
    moves = [(s.from_level.label, s.to_level.label) for s in governor.switches]
    assert moves == [("full", "coarse"), ("coarse", "full")]
    assert "p95 CPU cost" in governor.switches[0].reason
    assert governor.level() == Quality.FULL
    _no_tracebacks(caplog)


# -- edgemate devices -----------------------------------------------------------------------

def test_devices_runs_on_a_mac_without_linux_sensors(fake_macos, tmp_path, capsys, caplog):
    import fake_pyaudio
    from runtime.cli import main
    _fake_pmset(tmp_path, THERM_M1_CALM)
    with mock.patch.dict(sys.modules, {"pyaudio": fake_pyaudio.FakeBackend()}):
        assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "USB PnP Sound Device" in out and "Built-in Output" in out
    sensors = out.split("Thermal sensors:")[1].split("Quality governor reads:")[0]
    assert "/sys/" not in sensors and "psutil" not in sensors
    assert "macOS pmset -g therm: Note: No thermal warning level" in sensors
    assert "macOS pmset -g therm" in out.split("Quality governor reads:")[1]
    displays = out.split("Displays:")[1].split("Thermal sensors:")[0]
    assert "kmsdrm" not in displays  # SDL's dummy driver here: the Mac's hint, not Linux's
    assert "LaunchAgent" in displays
    _no_tracebacks(caplog)


def test_devices_without_pyaudio_or_any_sensor_is_a_clean_message(fake_macos, capsys):
    from runtime.cli import main
    with mock.patch.dict(sys.modules, {"pyaudio": None}):
        assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "brew install portaudio" in out
    assert "none found (the quality governor then decides from frame cost and drops)" in out
    assert "no temperature or throttle sensor" in out
    assert "Traceback" not in out


# -- CPU counts, affinity, processes -------------------------------------------------------

def test_core_counts_work_without_sched_getaffinity(fake_macos, monkeypatch):
    from runtime.commands.load_workers import allowed_cores
    from runtime.render.template_cache import _decode_threads
    assert not hasattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert _decode_threads() == 4 and allowed_cores() == 8
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "cannot tell"
    assert _decode_threads() == 1 and allowed_cores() == 1


def test_process_readings_without_proc_or_glibc(fake_macos, monkeypatch):
    from runtime.commands.cpu_meter import OtherProcessesCpu
    from runtime.service import control_access, health
    assert health.private_mb(str(fake_macos / "status")) is None
    monkeypatch.setattr(health, "_LIBC", None)  # macOS libc: no mallinfo2 / malloc_trim
    assert health.heap_usage()["heap_in_use_mb"] is None and health.trim_heap() is False
    # macOS lists open descriptors under /dev/fd (Linux too), not /proc/self/fd.
    left = control_access.fds_left((str(fake_macos / "fd"), "/dev/fd"))
    assert left is not None and left > 0
    assert control_access.fds_left((str(fake_macos / "fd"),)) is None
    meter = OtherProcessesCpu()
    meter.start()
    meter.stop()
    assert meter.children_s is None and meter.display_server_s is None

    def denied(*args, **kwargs):
        raise psutil.AccessDenied(os.getpid())
    monkeypatch.setattr(psutil.Process, "num_threads", denied)
    usage = health.process_usage()  # psutil.Error is not an OSError: must not escape
    assert usage["rss_mb"] is None


def test_mic_hotplug_hint_is_none_without_alsa(fake_macos, monkeypatch):
    from runtime.audio import mic
    monkeypatch.setattr(mic, "_ALSA_NODES", str(fake_macos / "snd"))
    assert mic.alsa_nodes() is None


# -- systemd pieces are no-ops, sockets work without Linux extras ---------------------------

def test_sd_notify_is_a_no_op_without_notify_socket(fake_macos):
    from runtime.service.sd_notify import Notifier
    env = {"PATH": "/usr/bin"}
    notifier = Notifier.from_environment(env)
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    assert not any((notifier.ready("x"), notifier.reloading(), notifier.status("x"),
                    notifier.watchdog(), notifier.stopping(), notifier.watchdog_due()))
    notifier.close()


def test_sd_notify_needs_no_sock_cloexec(fake_macos, tmp_path):
    from runtime.service.sd_notify import Notifier
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        notifier = Notifier(path)
        assert notifier.ready()
        assert listener.recv(256).startswith(b"READY=1")
        notifier.close()


def test_peers_are_allowed_by_file_mode_without_so_peercred(fake_macos):
    from runtime.system.peer_access import peer_allowed, peer_credentials
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert peer_credentials(left) is None
        assert peer_allowed(left) == (True, "peer")


def test_the_socket_directory_is_made_when_tmp_was_emptied(fake_macos, tmp_path):
    from runtime.system.unix_socket import InstanceLock, ensure_socket_dir
    sockets = tmp_path / "tmp" / "edgemate"  # /tmp/edgemate after a reboot: gone
    lock = InstanceLock(sockets / "edgemate-control.sock")
    lock.acquire()
    try:
        assert sockets.is_dir() and (sockets / "edgemate-control.sock.lock").is_file()
    finally:
        lock.release()
    ensure_socket_dir(sockets / "again.sock")  # there already: nothing to do


def test_stream_source_listens_in_a_missing_directory(fake_macos, tmp_path):
    from runtime.audio.stream import StreamSource
    path = tmp_path / "gone" / "edgemate-speech.sock"
    source = StreamSource(path)
    source.open()
    try:
        assert path.exists()
    finally:
        source.close()


# -- paths, display, logging --------------------------------------------------------------

def test_cache_goes_to_library_caches_on_a_mac(fake_macos, monkeypatch, tmp_path):
    from runtime.system.paths import cache_dir
    for name in ("EDGEMATE_CACHE_DIR", "CACHE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "Library" / "Caches" / "edgemate"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # asked for: honoured
    assert cache_dir() == tmp_path / "xdg" / "edgemate"


def test_the_mac_profile_leaves_the_sdl_driver_to_sdl(fake_macos, monkeypatch):
    from runtime.display.window import WindowSink
    config = load_config("macos-m1")
    assert config.display.driver == "auto"
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    sink = WindowSink(fullscreen=True, driver=config.display.driver)
    sink._set_driver()
    assert "SDL_VIDEODRIVER" not in os.environ  # never kmsdrm or x11 forced on Cocoa


def test_log_lines_carry_their_time_in_a_launchd_log_file(fake_macos, monkeypatch):
    from runtime import cli
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))  # a file, as launchd's
    try:
        assert cli._log_format().startswith("%(asctime)s ")
        monkeypatch.setattr(sys, "platform", "linux")  # journald stamps lines itself
        assert "asctime" not in cli._log_format()
    finally:
        sys.stderr.close()


# -- the LaunchAgent and its README --------------------------------------------------------

def _plist() -> dict:
    with open(PLIST, "rb") as handle:
        return plistlib.load(handle)


def _mac_section() -> str:
    text = MAC_README.read_text()
    return text[text.index("## macOS"):]


def test_plist_starts_a_real_edgemate_command_with_the_readme_config(tmp_path):
    from runtime.cli import build_parser
    plist = _plist()
    program = plist["ProgramArguments"]
    assert Path(program[0]).name == "edgemate"
    args = build_parser().parse_args(program[1:])
    assert args.command == "run"
    readme = _mac_section()
    assert args.config in readme and program[0] in readme
    # The config the README writes there loads, on the profile it names.
    match = re.search(r"printf '([^']*)' > " + re.escape(args.config), readme)
    assert match, "the README writes the plist's config file"
    written = tmp_path / "config.yaml"
    written.write_text(match.group(1).encode().decode("unicode_escape"))
    assert written.read_text().startswith("extends: macos-m1\n")
    config = load_config(str(written))
    assert config.display.fullscreen is True and config.display.driver == "auto"


def test_plist_label_paths_and_environment_match_the_code_and_readme():
    from runtime.commands.control_client import LAUNCH_AGENT_RUNTIME_DIR
    plist = _plist()
    readme = _mac_section()
    label = plist["Label"]
    assert f"gui/$(id -u)/{label}" in readme and f"{label}.plist" in readme
    assert PLIST.name == f"{label}.plist"
    env = plist["EnvironmentVariables"]
    assert Path(env["RUNTIME_DIRECTORY"]) == LAUNCH_AGENT_RUNTIME_DIR
    assert str(LAUNCH_AGENT_RUNTIME_DIR / "edgemate-control.sock") in readme
    assert load_config("macos-m1").control.socket.name == "edgemate-control.sock"
    path_dirs = env["PATH"].split(":")
    assert "/usr/bin" in path_dirs  # pmset, the Mac's thermal reading
    assert "/opt/homebrew/bin" in path_dirs  # brew's ffmpeg for the record fallback
    assert "NOTIFY_SOCKET" not in env
    for key in ("StandardOutPath", "StandardErrorPath"):
        log_path = Path(plist[key])
        # launchd opens it before EdgeMate could create a directory: /tmp itself.
        assert log_path.parent == Path("/tmp") and str(log_path) in readme


def test_plist_restart_policy_is_what_the_readme_says():
    from runtime.cli import EXIT_CONFIG
    plist = _plist()
    readme = " ".join(_mac_section().split())
    assert plist["KeepAlive"] == {"SuccessfulExit": False}  # any error exit, 78 included
    assert plist["RunAtLoad"] is True
    assert EXIT_CONFIG == 78 and "exit 78" in readme
    assert f"`ThrottleInterval` ({plist['ThrottleInterval']} s)" in readme
    assert "every 10 s" in readme and plist["ThrottleInterval"] == 10


def test_clients_find_the_launch_agents_socket_on_a_mac(fake_macos, monkeypatch, tmp_path):
    from runtime.commands import control_client
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.delenv("EDGEMATE_CONTROL_SOCKET", raising=False)
    monkeypatch.setattr(control_client, "LAUNCH_AGENT_RUNTIME_DIR", tmp_path)
    monkeypatch.setattr(control_client, "SYSTEMD_RUNTIME_DIR", tmp_path / "run")
    args = argparse.Namespace(socket=None, config=None)
    assert control_client.socket_path(args).parent != tmp_path  # no agent running yet
    (tmp_path / "edgemate-control.sock").touch()
    assert control_client.socket_path(args) == tmp_path / "edgemate-control.sock"
    assert "usermod" not in control_client._how_to_get_in()  # no such command on a Mac
    monkeypatch.setattr(sys, "platform", "linux")  # Linux never looks in /tmp
    assert control_client.socket_path(args).parent != tmp_path
