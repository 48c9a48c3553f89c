"""The command line as users meet it: exit codes and one-line messages, never a traceback."""
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from runtime.cli import main

REPO = Path(__file__).resolve().parent.parent


def _models(model_fixtures):
    return ["--audio-model", str(model_fixtures[0]), "--bundle", str(model_fixtures[1])]


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text


def test_check_good_config_exits_0(model_fixtures, capsys):
    assert main(["check", *_models(model_fixtures)]) == 0
    out = capsys.readouterr().out
    assert "TEST FIXTURE" in out and "FAIL" not in out


def test_check_bad_config_exits_1_with_file_line_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("audio:\n  mic:\n    rate: 4410\n")
    assert main(["check", "-c", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:3: audio.mic.rate: must be one of 16000, 22050, 44100, 48000 (got 4410)" in out


def test_check_json(model_fixtures, capsys):
    assert main(["check", "--json", *_models(model_fixtures)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["config"]["audio"]["source"] == "files"


def test_run_with_bad_config_exits_78_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("display:\n  sink: hologram\n")
    assert main(["run", "-c", str(bad)]) == 78
    err = capsys.readouterr().err
    assert f"{bad}:2: display.sink: must be one of window, record, null (got 'hologram')" in err
    _no_traceback(err)


def test_run_with_corrupted_model_exits_78_naming_the_file(model_fixtures, tmp_path):
    import shutil
    bundle = tmp_path / "bundle"
    shutil.copytree(model_fixtures[1], bundle)
    weights = bundle / "fine.ncnn.bin"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    done = subprocess.run([sys.executable, "-m", "runtime", "run", "--audio-model",
                           str(model_fixtures[0]), "--bundle", str(bundle),
                           "--set", "display.sink=null"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 78
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("edgemate run: ") and str(weights) in last and "sha256 mismatch" in last
    _no_traceback(done.stderr)


def test_mic_without_pyaudio_names_the_extra(model_fixtures, capsys):
    with mock.patch.dict(sys.modules, {"pyaudio": None}):
        code = main(["run", *_models(model_fixtures), "--set", "audio.source=mic",
                     "--set", "display.sink=null"])
    assert code == 1
    err = capsys.readouterr().err
    assert "edgemate[audio]" in err
    _no_traceback(err)


def test_demo_without_default_avatar_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEMATE_DATA", str(tmp_path))  # a data tree without models/avatars/default
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert "no default avatar is installed" in err and str(tmp_path / "models") in err


def test_demo_of_the_shipped_default_avatar_records(tmp_path, capsys, monkeypatch):
    """The shipped bundle loads (every sha256), renders and records with its own clip."""
    if not (REPO / "models" / "avatars" / "default" / "avatar.yaml").exists():
        pytest.skip("the default avatar is not in this tree")
    monkeypatch.setenv("EDGEMATE_DATA", str(REPO))
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--record", str(out), "--set", "run.duration_s=2"]) == 0
    assert out.is_file() and out.stat().st_size > 10_000


def test_demo_records_when_there_is_no_display(model_fixtures, tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    code = main(["demo", *_models(model_fixtures), "--record", str(out),
                 "--set", "run.duration_s=1"])
    assert code == 0 and out.is_file()
    assert f"recording saved to {out}" in capsys.readouterr().out


def test_bench_json_fields(model_fixtures, capsys):
    assert main(["bench", "--json", "--seconds", "2", "--frames", "20", *_models(model_fixtures)]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("stages_ms", "uncapped_fps", "steady", "rss_mb", "start_to_first_frame_s"):
        assert key in report
    assert set(report["uncapped_fps"]) == {"full", "coarse"}
    for stage in ("features", "audio_model", "coarse", "fine", "composite", "present"):
        assert stage in report["stages_ms"], stage
    steady = report["steady"]
    assert steady["shown"] > 0 and steady["delivered_fps"] > 0  # the figures, not a speed
    assert report["models"]["fixtures"] is True


def test_internal_errors_are_one_line_unless_debug(capsys):
    with mock.patch("runtime.cli.cmd_run", side_effect=RuntimeError("boom")):
        assert main(["run"]) == 1
        assert "internal error: RuntimeError: boom (run with --debug" in capsys.readouterr().err
        with pytest.raises(RuntimeError):
            main(["--debug", "run"])
