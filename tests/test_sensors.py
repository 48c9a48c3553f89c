"""Sensors on fake sysfs trees in tmp_path: zone choice by type, Pi flags, x86 counters,
pmset (hung and garbled), and every way a sensor fails without raising."""
from __future__ import annotations

import builtins
import dataclasses
import subprocess
import time

import pytest

from runtime.config.loader import load_config
from runtime.quality.governor import Governor
from runtime.quality.levels import FrameCost, Quality
from runtime.quality.sensors import (FileTemperature, PiThrottle, PmsetThermal, SensorSampler,
                             SensorSet, X86Throttle, discover, find_thermal_zone,
                             parse_pmset_therm, parse_temperature)
from runtime.quality import sensors as sensors_module

ZONE_TYPES = load_config().governor.sensors.zone_types


def sensor_settings(**changes):
    return dataclasses.replace(load_config().governor.sensors, **changes)


def make_zones(root, zones: dict[int, tuple[str, str]]):
    for number, (kind, temp) in zones.items():
        zone = root / f"thermal_zone{number}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(temp + "\n")
    return root


@pytest.mark.parametrize("text, celsius", [("54321\n", 54.321), ("54.5", 54.5), ("86000", 86.0),
                                           ("-5000", -5.0), ("71 C", 71.0)])
def test_parse_temperature(text, celsius):
    assert parse_temperature(text) == pytest.approx(celsius)


@pytest.mark.parametrize("text", ["", "hot!", "nan", "inf", "\x00\x01"])
def test_parse_temperature_rejects_garbage(text):
    with pytest.raises((ValueError, IndexError)):
        parse_temperature(text)


def test_zone_is_chosen_by_type_not_number(tmp_path):
    root = make_zones(tmp_path, {0: ("acpitz", "40000"), 1: ("iwlwifi_1", "30000"),
                                 2: ("x86_pkg_temp", "55000"), 7: ("cpu-thermal", "61000")})
    zone, kind = find_thermal_zone(ZONE_TYPES, root)
    assert (zone.name, kind) == ("thermal_zone7", "cpu-thermal")
    zone, kind = find_thermal_zone(["x86_pkg_temp", "acpitz"], root)
    assert kind == "x86_pkg_temp"
    assert find_thermal_zone(["soc_thermal"], root) is None
    assert find_thermal_zone(ZONE_TYPES, tmp_path / "missing") is None


def test_discover_reads_the_cpu_zone_and_a_configured_file(tmp_path):
    root = make_zones(tmp_path / "thermal", {0: ("acpitz", "40000"), 1: ("soc_thermal", "63500")})
    found = discover(sensor_settings(), system="Linux", thermal_root=root,
                     pi_node=tmp_path / "none", x86_glob=str(tmp_path / "none*"), use_psutil=False)
    assert found.temperature.source == "thermal zone soc_thermal"
    assert found.temperature.read() == 63.5 and found.throttles == ()
    scripted = tmp_path / "temp"
    found = discover(sensor_settings(temperature_file=scripted), system="Linux",
                     thermal_root=root, use_psutil=False)
    assert found.temperature.source == "file" and "temperature: file" in found.describe()[0]


def test_a_box_without_sensors(tmp_path):
    found = discover(sensor_settings(), system="Linux", thermal_root=tmp_path,
                     pi_node=tmp_path / "none", x86_glob=str(tmp_path / "none*"), use_psutil=False)
    assert found.temperature is None and found.throttles == () and found.cpu is None
    reading = SensorSampler(found, 1.0).sample_once()
    assert reading.temperature_c is None and reading.throttled == ()


def test_pi_throttle_flags(tmp_path):
    node = tmp_path / "get_throttled"
    sensor = PiThrottle(node)
    node.write_text("50005\n")  # under-voltage + throttled now, both also since boot
    assert sensor.read() == ("under-voltage", "throttled")
    node.write_text("throttled=0xa\n")  # what vcgencmd prints
    assert sensor.read() == ("frequency capped", "soft temperature limit")
    node.write_text("0\n")
    assert sensor.read() == ()
    node.write_text("50000\n")  # only "has happened since boot": nothing now
    assert sensor.read() == ()


def test_x86_throttle_counters_report_increases(tmp_path):
    counters = [tmp_path / f"cpu{n}_core_throttle_count" for n in range(2)]
    for path in counters:
        path.write_text("10\n")
    sensor = X86Throttle([str(path) for path in counters])
    assert sensor.read() == ()  # the first read only sets the baseline
    assert sensor.read() == ()
    counters[1].write_text("11\n")
    assert sensor.read() == ("x86 thermal throttle",)
    assert sensor.read() == ()
    counters[0].unlink()  # a CPU taken offline: the others still count
    counters[1].write_text("15\n")
    assert sensor.read() == ()  # total fell (one CPU gone): no increase


THERM_CALM = """Note: No thermal warning level has been recorded
Note: No performance warning level has been recorded
Note: No CPU power status has been recorded
"""
THERM_HOT = """CPU_Scheduler_Limit \t= 100
CPU_Available_CPUs \t= 8
CPU_Speed_Limit \t= 70
"""


def test_parse_pmset_therm():
    assert parse_pmset_therm(THERM_CALM) == ()
    assert parse_pmset_therm(THERM_HOT) == ("macOS CPU speed limit 70%",)
    assert parse_pmset_therm("Thermal warning level set to 2.") == \
        ("macOS thermal warning level 2",)
    assert parse_pmset_therm("\x00garbage") == ()


def test_pmset_runs_at_most_every_interval_and_a_hang_is_cut_off():
    now = [0.0]
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(kwargs["timeout"])
        if len(calls) == 2:
            raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])  # pmset hung
        return subprocess.CompletedProcess(cmd, 0, stdout=THERM_HOT, stderr="")

    sensor = PmsetThermal(interval_s=10, timeout_s=2, clock=lambda: now[0], run=fake_run)
    sampler = SensorSampler(SensorSet(throttles=(sensor,)), 1.0, clock=lambda: now[0])
    assert sampler.sample_once().throttled == ("macOS CPU speed limit 70%",)
    now[0] = 5.0
    assert sampler.sample_once().throttled == ("macOS CPU speed limit 70%",)  # cached
    now[0] = 10.0
    assert sampler.sample_once().throttled == ()  # timed out: no reading, no exception
    assert calls == [2, 2]


def test_real_pmset_call_is_bounded_by_its_timeout(tmp_path, monkeypatch):
    # A pmset that never answers: subprocess.run kills it after timeout_s.
    fake = tmp_path / "pmset"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    sampler = SensorSampler(SensorSet(throttles=(PmsetThermal(10, 0.2),)), 1.0)
    started = time.monotonic()
    assert sampler.sample_once().throttled == ()
    assert time.monotonic() - started < 2.0


@pytest.fixture
def temp_file(tmp_path):
    path = tmp_path / "temp"
    path.write_text("61000\n")
    return path


def test_temperature_file_that_vanishes_garbles_and_comes_back(temp_file, caplog):
    sampler = SensorSampler(SensorSet(temperature=FileTemperature(temp_file, "file")), 1.0)
    assert sampler.sample_once().temperature_c == 61.0
    temp_file.unlink()
    assert sampler.sample_once().temperature_c is None
    temp_file.write_text("not a number")
    assert sampler.sample_once().temperature_c is None
    temp_file.write_bytes(b"\xff\xfe\x00")
    assert sampler.sample_once().temperature_c is None
    temp_file.write_text("72.25")
    reading = sampler.sample_once()
    assert reading.temperature_c == 72.2 and reading.temperature_source == "file"
    logged = sum("unreadable" in r.message for r in caplog.records)
    assert logged == 1, "logged once, not per sample"


def test_permission_denied_and_a_directory_give_no_reading(temp_file, tmp_path, monkeypatch):
    # Tests may run as root, where chmod 000 does not deny reading: deny in open() instead.
    real_open = builtins.open

    def denying_open(path, *args, **kwargs):
        if str(path) == str(temp_file):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(sensors_module, "open", denying_open, raising=False)
    sampler = SensorSampler(SensorSet(temperature=FileTemperature(temp_file, "file"),
                                      throttles=(PiThrottle(tmp_path),)), 1.0)
    reading = sampler.sample_once()  # the throttle "file" is a directory
    assert reading.temperature_c is None and reading.throttled == ()


def test_governor_on_failing_sensor_files_never_raises(temp_file, tmp_path):
    settings = dataclasses.replace(load_config().governor, warmup_s=0.0, dwell_s=1.0,
                                   thermal_dwell_s=1.0)
    found = discover(dataclasses.replace(settings.sensors, temperature_file=temp_file,
                                         throttle_file=tmp_path / "flags"),
                     system="Linux", use_psutil=False)
    now = [0.0]
    sampler = SensorSampler(found, 1.0, clock=lambda: now[0])
    governor = Governor(settings, sampler.latest, clock=lambda: now[0])
    script = ["90000", None, "garbage", "", "55000", "55000", "55000", "55000", "55000"]
    for second, content in enumerate(script):
        if content is None:
            temp_file.unlink()
        else:
            temp_file.write_text(content)
        sampler.sample_once()
        for _ in range(25):
            now[0] += 0.04
            governor.observe(FrameCost(0.005, 0.005))
    labels = [(s.from_level.label, s.to_level.label) for s in governor.switches]
    assert labels[0] == ("full", "pass")  # 90 C: critical
    assert governor.level() > Quality.PASS  # back up once the file read 55 C again


def test_sampler_thread_starts_and_stops(temp_file):
    sampler = SensorSampler(SensorSet(temperature=FileTemperature(temp_file, "file")), 0.01)
    sampler.start()
    try:
        assert sampler.latest().temperature_c == 61.0  # the first sample is taken at start
        temp_file.write_text("62000")
        deadline = time.monotonic() + 2
        while sampler.latest().temperature_c != 62.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sampler.latest().temperature_c == 62.0
    finally:
        sampler.stop()
    assert sampler._thread is None


def test_cpu_load_leaves_this_process_out():
    found = discover(sensor_settings(), system="Linux", use_psutil=True)
    assert found.cpu is not None
    assert found.cpu.read() is None  # psutil's first call has nothing to compare with
    time.sleep(0.05)
    value = found.cpu.read()
    assert value is not None and 0.0 <= value <= 100.0


def test_cpu_load_counts_competitors_not_niced_jobs_nor_us():
    from collections import namedtuple
    from runtime.quality.sensors import CpuLoad

    Times = namedtuple("Times", "user nice system idle iowait steal")
    load = CpuLoad()

    class FakePsutil:
        times = Times(user=60.0, nice=30.0, system=5.0, idle=5.0, iowait=0.0, steal=0.0)

        def cpu_times_percent(self, interval=None):
            return self.times

    class FakeProcess:
        def cpu_percent(self, interval=None):
            return 40.0  # 40 % of one core = 20 % of two

    load._psutil, load._process = FakePsutil(), FakeProcess()
    load._cpus, load._we_are_niced = 2, False
    assert load.read() is None
    assert load.read() == 100.0 - 5.0 - 30.0 - 20.0  # the niced batch job and we are left out
    FakePsutil.times = Times(user=10.0, nice=0.0, system=2.0, idle=88.0, iowait=0.0, steal=0.0)
    assert load.read() == 0.0  # only us: nobody else competes
