"""The configuration loader: shipped profiles, error messages, overrides, extends, paths."""
from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path

import pytest
import yaml

from runtime.config.loader import Config, ConfigError, load_config, profile_names, to_dict
from runtime.system.paths import data_dir, runtime_dir

SHIPPED = data_dir() / "firmware_config"
BOARD_PROFILES = ["rpi4", "rpi5", "x86-mini", "macos-m1"]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors_of(path=None, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return caught.value.messages


def leaves(tree, prefix=()):
    """{(key, path): value} for every scalar or list in a nested mapping."""
    if isinstance(tree, dict):
        found = {}
        for key, value in tree.items():
            found.update(leaves(value, prefix + (key,)))
        return found
    return {prefix: tree}


# --- shipped files --------------------------------------------------------------------------

def test_default_loads_with_documented_values():
    config = load_config()
    assert isinstance(config, Config)
    assert config.sources == (SHIPPED / "default.yaml",)
    assert config.audio.source == "files"
    assert config.audio.files.playlist == ()
    assert config.audio.stream.socket == runtime_dir() / "edgemate-speech.sock"
    assert config.audio.stream.socket_mode == 0o660
    assert config.audio.mic.rate is None
    assert config.models.audio == data_dir() / "models/audio/audio.yaml"
    assert config.avatar.bundle == data_dir() / "models/avatars/default"
    assert config.display.window_size is None
    assert config.display.record.path == Path.cwd() / "edgemate-recording.mp4"
    assert config.run.duration_s is None
    assert isinstance(config.audio.stream.max_buffer_s, float)


def test_config_is_frozen():
    config = load_config()
    with pytest.raises(AttributeError):
        config.log.level = "debug"


def test_board_profiles_are_shipped():
    assert set(BOARD_PROFILES) <= set(profile_names())


@pytest.mark.parametrize("name", BOARD_PROFILES)
def test_profile_differs_from_default_only_where_its_file_says(name):
    path = SHIPPED / f"{name}.yaml"
    text = path.read_text()
    assert text.startswith("#"), "a profile starts with a comment naming its board"
    said = yaml.safe_load(text)
    assert said.pop("extends") == "default"
    default = to_dict(load_config())
    profile = to_dict(load_config(name))
    assert profile.pop("sources") == [str(SHIPPED / "default.yaml"), str(path)]
    default.pop("sources")
    changed = {key for key, value in leaves(profile).items() if leaves(default)[key] != value}
    assert changed == set(leaves(said)), "a profile holds only (and all) real differences"


def test_profile_by_path_equals_profile_by_name():
    assert load_config(SHIPPED / "rpi4.yaml") == load_config("rpi4")


def test_unknown_profile_name():
    (message,) = errors_of("rpi9")
    assert message.startswith("rpi9: no such config file or profile (profiles: ")
    assert "rpi4" in message


def test_to_dict_round_trips(tmp_path):
    config = load_config("rpi4", ["display.window_size=[640, 360]",
                                  "audio.files.playlist=[a.wav]", "run.duration_s=5"])
    plain = to_dict(config)
    json.dumps(plain)  # what `edgemate check --json` prints
    plain.pop("sources")
    again = load_config(write(tmp_path, "dump.yaml", yaml.safe_dump(plain)))
    assert again.audio == config.audio and again.display == config.display
    assert again.run == config.run and again.models == config.models


# --- error messages --------------------------------------------------------------------------

def test_error_names_file_line_key_allowed_and_got(tmp_path):
    path = write(tmp_path, "user.yaml", """
        log:
          level: info
        audio:
          mic:
            rate: 4410
        """)
    assert errors_of(path) == [
        f"{path}:5: audio.mic.rate: must be one of 16000, 22050, 44100, 48000 (got 4410)"]


def test_config_error_str_is_the_messages(tmp_path):
    path = write(tmp_path, "user.yaml", "log: {level: loud}\nrender: {quality: best}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == "\n".join(caught.value.messages)
    assert len(caught.value.messages) == 2
    assert pickle.loads(pickle.dumps(caught.value)).messages == caught.value.messages


def test_unknown_keys_list_what_is_allowed(tmp_path):
    path = write(tmp_path, "user.yaml", """
        colour: red
        render:
          quality: full
          speed: 3
        """)
    assert errors_of(path) == [
        f"{path}:1: colour: unknown key 'colour' (allowed: log, audio, models, avatar, "
        f"render, governor, display, control, service, run)",
        f"{path}:4: render.speed: unknown key 'speed' (allowed: quality)"]


@pytest.mark.parametrize("text, expected", [
    ("models: {threads: true}", "models.threads: must be an integer from 1 to 16 (got true)"),
    ("models: {threads: '3'}", "models.threads: must be an integer from 1 to 16 (got '3')"),
    ("models: {threads: 3.0}", "models.threads: must be an integer from 1 to 16 (got 3.0)"),
    ("models: {vulkan: 1}", "models.vulkan: must be true or false (got 1)"),
    ("audio: {mic: {device: 3}}", "audio.mic.device: must be a string (got 3)"),
    ("log: {level: {a: 1}}",
     "log.level: must be one of debug, info, warning, error (got a mapping)"),
    ("log: debug", "log: must be a mapping (got 'debug')"),
    ("audio: {files: {playlist: a.wav}}",
     "audio.files.playlist: must be a list of path strings (got 'a.wav')"),
    ("audio: {stream: {socket_mode: 0660}}",
     "audio.stream.socket_mode: must be a quoted octal string from \"0000\" to \"0777\" "
     "(got 432)"),
    ("audio: {stream: {socket_mode: '0800'}}",
     "audio.stream.socket_mode: must be a quoted octal string from \"0000\" to \"0777\" "
     "(got '0800')"),
])
def test_wrong_type(tmp_path, text, expected):
    path = write(tmp_path, "user.yaml", text)
    assert errors_of(path) == [f"{path}:1: {expected}"]


@pytest.mark.parametrize("text, expected", [
    ("audio: {lead_ms: 39}", "audio.lead_ms: must be an integer from 40 to 2000 (got 39)"),
    ("audio: {files: {gap_s: 60.5}}",
     "audio.files.gap_s: must be a number from 0 to 60 (got 60.5)"),
    ("audio: {stream: {raw_rate: 7999}}",
     "audio.stream.raw_rate: must be an integer from 8000 to 96000 (got 7999)"),
    ("audio: {mic: {chunk_ms: 201}}",
     "audio.mic.chunk_ms: must be an integer from 5 to 200 (got 201)"),
    ("display: {record: {crf: -1}}",
     "display.record.crf: must be an integer from 0 to 51 (got -1)"),
    ("display: {window_size: [8, 8]}",
     "display.window_size: must be null or [width, height] with integers from 16 to 7680 "
     "(got [8, 8])"),
    ("display: {window_size: [640]}",
     "display.window_size: must be null or [width, height] with integers from 16 to 7680 "
     "(got [640])"),
    ("run: {duration_s: 0}", "run.duration_s: must be null or a number > 0 (got 0)"),
    ("run: {duration_s: .inf}", "run.duration_s: must be null or a number > 0 (got inf)"),
    ("audio: {mic: {reopen_backoff_s: 2, reopen_backoff_max_s: 1}}",
     "audio.mic.reopen_backoff_max_s: must be a number from reopen_backoff_s (2) to 600 (got 1.0)"),
])
def test_out_of_range(tmp_path, text, expected):
    path = write(tmp_path, "user.yaml", text)
    assert errors_of(path) == [f"{path}:1: {expected}"]


@pytest.mark.parametrize("text, expected", [
    ("audio: {source: speaker}", "audio.source: must be one of files, stream, mic (got 'speaker')"),
    ("render: {quality: best}", "render.quality: must be one of auto, full, coarse, pass (got 'best')"),
    ("display: {sink: hdmi}", "display.sink: must be one of window, record, null (got 'hdmi')"),
    ("display: {record: {preset: quick}}", "display.record.preset: must be one of ultrafast, "
     "superfast, veryfast, faster, fast, medium, slow, slower, veryslow, placebo (got 'quick')"),
    ("audio: {stream: {raw_format: s16be}}",
     "audio.stream.raw_format: must be one of s16le, s24le, s32le, f32le, u8 (got 's16be')"),
])
def test_bad_enum(tmp_path, text, expected):
    path = write(tmp_path, "user.yaml", text)
    assert errors_of(path) == [f"{path}:1: {expected}"]


def test_unquoted_null_means_the_null_option(tmp_path):
    # YAML reads `sink: null` as None; for these keys the word names an option, not "unset"
    config = load_config(write(tmp_path, "user.yaml", "display: {sink: null, fallback: null}"))
    assert (config.display.sink, config.display.fallback) == ("null", "null")
    assert load_config(None, ["display.sink=null"]).display.sink == "null"


def test_valid_values_are_accepted(tmp_path):
    path = write(tmp_path, "user.yaml", """
        audio:
          mic: {rate: 48000, reopen_backoff_s: 1, reopen_backoff_max_s: 1}
          playback: {extra_latency_ms: 15}
          stream: {socket_mode: "0777"}
        display: {window_size: [640, 360]}
        run: {duration_s: 2}
        """)
    config = load_config(path)
    assert config.audio.mic.rate == 48000
    assert config.audio.playback.extra_latency_ms == 15.0
    assert isinstance(config.audio.playback.extra_latency_ms, float)
    assert config.audio.stream.socket_mode == 0o777
    assert config.display.window_size == (640, 360)
    assert config.run.duration_s == 2.0


def test_all_errors_of_a_file_are_collected_in_line_order(tmp_path):
    path = write(tmp_path, "user.yaml", """
        render: {quality: best}
        audio:
          lead_ms: 5
          bogus: 1
        log: {level: 3}
        """)
    messages = errors_of(path)
    assert [message.split(": ")[0] for message in messages] == [
        f"{path}:1", f"{path}:3", f"{path}:4", f"{path}:5"]


@pytest.mark.parametrize("text, line, reason", [
    ("log:\n  level: info\n bad: [\n", 3, "YAML syntax error: "),
    ("log: {level: info\n\n", 3, "YAML syntax error: "),
    ("", 1, "empty file (expected a mapping of config keys)"),
    ("# only a comment\n", 1, "empty file (expected a mapping of config keys)"),
    ("- log\n- audio\n", 1, "the top level must be a mapping of config keys (got ['log', "),
    ("just text\n", 1, "the top level must be a mapping of config keys (got 'just text')"),
    ("log: {level: info}\nlog: {level: debug}\n", 2, "log: duplicate key"),
    ("run: {duration_s: !!python/object:os.system x}\n", 1, "run.duration_s: cannot read"),
    ("a: &x [*x]\n", 1, "a[0]: an alias refers to its own parent"),
])
def test_unreadable_yaml(tmp_path, text, line, reason):
    path = write(tmp_path, "user.yaml", text)
    (message,) = errors_of(path)
    assert message.startswith(f"{path}:{line}: {reason}")


def test_missing_file_names_the_profiles(tmp_path):
    (message,) = errors_of(tmp_path / "nope.yaml")
    assert message.startswith(f"{tmp_path / 'nope.yaml'}: no such config file or profile")


# --- --set overrides -------------------------------------------------------------------------

def test_set_overrides_values():
    config = load_config("rpi4", ["log.level=debug", "display.window_size=[640,360]",
                                  "audio.mic.rate=16000", "display.driver=x11",
                                  "run.duration_s="])
    assert config.log.level == "debug"
    assert config.display.window_size == (640, 360)
    assert config.audio.mic.rate == 16000
    assert config.display.driver == "x11"
    assert config.display.fullscreen is True  # from rpi4, untouched
    assert config.run.duration_s is None
    assert config.sources[-1] == SHIPPED / "rpi4.yaml"


def test_later_set_wins_and_flow_mappings_merge():
    config = load_config(None, ["log.level=debug", "log.level=error",
                                "audio.mic={rate: 22050, channels: 2}"])
    assert config.log.level == "error"
    assert (config.audio.mic.rate, config.audio.mic.channels) == (22050, 2)
    assert config.audio.mic.chunk_ms == 20


def test_set_errors():
    assert errors_of(None, ["audio.mic.rate=4410", "nonsense", "a..b=1", "audio.mic.rate=[",
                            "extends=rpi4", "render.fast=1", "log.level.x=1"]) == [
        "--set: expected KEY.PATH=VALUE, e.g. log.level=debug (got 'nonsense')",
        "--set: expected KEY.PATH=VALUE, e.g. log.level=debug (got 'a..b=1')",
        "--set:audio.mic.rate: cannot parse value '[' as YAML: YAML syntax error: while "
        "parsing a flow node: expected the node content, but found '<stream end>'",
        "--set:extends: cannot be set on the command line; pass the profile with -c instead",
    ]
    assert errors_of(None, ["audio.mic.rate=4410", "render.fast=1", "log.level.x=1"]) == [
        "--set:log.level: must be one of debug, info, warning, error (got a mapping)",
        "--set:audio.mic.rate: must be one of 16000, 22050, 44100, 48000 (got 4410)",
        "--set:render.fast: unknown key 'fast' (allowed: quality)",
    ]


def test_errors_inside_a_set_mapping_blame_the_set():
    assert errors_of(None, ["audio.mic={rate: 4410}"]) == [
        "--set:audio.mic.rate: must be one of 16000, 22050, 44100, 48000 (got 4410)"]


def test_set_and_file_errors_together(tmp_path):
    path = write(tmp_path, "user.yaml", "render: {quality: best}\n")
    assert errors_of(path, ["log.level=loud"]) == [
        f"{path}:1: render.quality: must be one of auto, full, coarse, pass (got 'best')",
        "--set:log.level: must be one of debug, info, warning, error (got 'loud')"]


# --- extends ---------------------------------------------------------------------------------

def test_extends_chain_through_a_shipped_profile(tmp_path):
    write(tmp_path, "site.yaml", "extends: rpi4\nlog: {level: warning}\n")
    leaf = write(tmp_path, "kiosk.yaml", "extends: site\naudio: {source: mic}\n")
    config = load_config(leaf)
    assert config.sources == (SHIPPED / "default.yaml", SHIPPED / "rpi4.yaml",
                              tmp_path / "site.yaml", leaf)
    assert config.audio.source == "mic"
    assert config.log.level == "warning"
    assert config.display.driver == "kmsdrm"


def test_a_profile_next_to_the_file_wins_over_a_shipped_one(tmp_path):
    write(tmp_path, "rpi4.yaml", "render: {quality: coarse}\n")
    leaf = write(tmp_path, "kiosk.yaml", "extends: rpi4\n")
    config = load_config(leaf)
    assert config.render.quality == "coarse"
    assert config.display.driver == "auto"  # the local rpi4.yaml extends default directly


def test_error_points_at_the_profile_that_set_the_value(tmp_path):
    base = write(tmp_path, "base.yaml", "log: {level: info}\naudio:\n  lead_ms: 1\n")
    leaf = write(tmp_path, "leaf.yaml", "extends: base\nrender: {quality: full}\n")
    assert errors_of(leaf) == [
        f"{base}:3: audio.lead_ms: must be an integer from 40 to 2000 (got 1)"]


def test_missing_extends_target(tmp_path):
    leaf = write(tmp_path, "leaf.yaml", "log: {level: info}\nextends: nowhere\n")
    (message,) = errors_of(leaf)
    assert message.startswith(f"{leaf}:2: extends: no profile 'nowhere' (looked for "
                              f"nowhere.yaml in {tmp_path}, {SHIPPED})")


def test_extends_cycle(tmp_path):
    first = write(tmp_path, "a.yaml", "extends: b\n")
    second = write(tmp_path, "b.yaml", "extends: a\n")
    assert errors_of(first) == [f"{second}:1: extends: cycle {first} -> {second} -> {first}"]
    alone = write(tmp_path, "self.yaml", "extends: self\n")
    assert errors_of(alone) == [f"{alone}:1: extends: cycle {alone} -> {alone}"]


def test_extends_must_be_a_name(tmp_path):
    leaf = write(tmp_path, "leaf.yaml", "extends: [a]\n")
    assert errors_of(leaf) == [f"{leaf}:1: extends: must be null or a profile name (got ['a'])"]


def test_file_without_extends_extends_default(tmp_path):
    leaf = write(tmp_path, "leaf.yaml", "extends: null\nlog: {level: debug}\n")
    config = load_config(leaf)
    assert config.sources == (SHIPPED / "default.yaml", leaf)
    assert config.audio.source == "files"


# --- paths -----------------------------------------------------------------------------------

def test_paths_resolve_against_the_file_that_set_them(tmp_path, monkeypatch):
    (tmp_path / "base").mkdir()
    write(tmp_path / "base", "base.yaml", """
        audio: {files: {playlist: [hello.wav, "@/speech/demo.wav", /abs/x.wav]}}
        models: {audio: my/audio.yaml}
        """)
    leaf = write(tmp_path, "leaf.yaml", "extends: base/base\navatar: {bundle: face}\n")
    config = load_config(leaf)
    assert config.audio.files.playlist == (tmp_path / "base/hello.wav",
                                           data_dir() / "speech/demo.wav", Path("/abs/x.wav"))
    assert config.models.audio == tmp_path / "base/my/audio.yaml"
    assert config.avatar.bundle == tmp_path / "face"


def test_set_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, ["avatar.bundle=faces/anna", "audio.files.playlist=[a.wav]"])
    assert config.avatar.bundle == tmp_path / "faces/anna"
    assert config.audio.files.playlist == (tmp_path / "a.wav",)


def test_socket_and_recording_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    leaf = write(tmp_path / "conf", "leaf.yaml",
                 "display: {record: {path: out/rec.mp4}}\naudio: {stream: {socket: s.sock}}\n")
    config = load_config(leaf)
    assert config.audio.stream.socket == tmp_path / "run" / "s.sock"
    assert config.display.record.path == tmp_path / "out/rec.mp4"
    config = load_config(leaf, ["audio.stream.socket=/srv/tts.sock"])
    assert config.audio.stream.socket == Path("/srv/tts.sock")


def test_empty_path_is_an_error(tmp_path):
    path = write(tmp_path, "user.yaml", "avatar: {bundle: ''}\n")
    assert errors_of(path) == [
        f"{path}:1: avatar.bundle: must be a non-empty path string (got '')"]
    path = write(tmp_path, "user.yaml", """
        audio:
          files:
            playlist:
              - a.wav
              - 3
        """)
    assert errors_of(path) == [
        f"{path}:5: audio.files.playlist[1]: must be a non-empty path string (got 3)"]


def test_shipped_default_is_found_through_edgemate_data(tmp_path, monkeypatch):
    (tmp_path / "firmware_config").mkdir()
    write(tmp_path / "firmware_config", "default.yaml",
          (SHIPPED / "default.yaml").read_text().replace("level: info", "level: error"))
    monkeypatch.setenv("EDGEMATE_DATA", str(tmp_path))
    config = load_config()
    assert config.log.level == "error"
    assert config.models.audio == tmp_path / "models/audio/audio.yaml"


def test_broken_default_reports_missing_keys(tmp_path, monkeypatch):
    (tmp_path / "firmware_config").mkdir()
    default = write(tmp_path / "firmware_config", "default.yaml",
                    (SHIPPED / "default.yaml").read_text().replace("    crf: 25\n", ""))
    monkeypatch.setenv("EDGEMATE_DATA", str(tmp_path))
    (message,) = errors_of()
    assert message.startswith(f"{default}:")
    assert message.endswith(
        "display.record.crf: missing (must be an integer from 0 to 51)")


def test_a_huge_config_file_is_refused_without_being_parsed(tmp_path):
    from runtime.config.loader import MAX_CONFIG_BYTES
    path = tmp_path / "huge.yaml"
    with open(path, "w") as handle:  # valid YAML all through: only its size is wrong
        handle.write("audio:\n  files:\n    playlist:\n")
        while handle.tell() <= 40 * MAX_CONFIG_BYTES:
            handle.write("      - /srv/audio/welcome-message-in-the-lobby.wav\n" * 1000)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.messages == [
        f"{path}: more than {MAX_CONFIG_BYTES} bytes: not read as a config file (the shipped "
        "default.yaml, every key commented, is about 12 kB)"]
