"""Load, merge and validate the YAML configuration into frozen dataclasses.

A config file names the profile it `extends` (default.yaml is the root of every chain); the
chain is deep-merged root first, then `--set key.path=value` overrides, then validated. Every
error names the file and line of the key that set the bad value:

    site.yaml:12: audio.mic.rate: must be one of 16000, 22050, 44100, 48000 (got 4410)
    --set:log.level: must be one of debug, info, warning, error (got 'loud')
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from .schema import (AudioConfig, AvatarConfig, Config, ControlConfig, DisplayConfig,
                            ServiceConfig, GovernorConfig, SensorsConfig, FilesConfig, LogConfig,
                            MicConfig, ModelsConfig, PlaybackConfig, RecordConfig, RenderConfig,
                            RunConfig, StreamConfig, to_dict)
from runtime.system.paths import data_dir
from .specs import INVALID, Problems, Section, dotted, show

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "load_config", "to_dict", "profile_names", "Config", "LogConfig",
           "AudioConfig", "FilesConfig", "StreamConfig", "MicConfig", "PlaybackConfig",
           "ModelsConfig", "AvatarConfig", "RenderConfig", "DisplayConfig", "RecordConfig",
           "RunConfig", "ControlConfig", "ServiceConfig", "GovernorConfig", "SensorsConfig"]

CONFIG_SUBDIR = "firmware_config"
ROOT_PROFILE = "default"
SET_LABEL = "--set"

# Guards against hostile or broken YAML: an alias "billion laughs" expands to millions of
# nodes, and deep nesting exhausts Python's recursion limit.
#: Keys an older release knew: accepted with a warning (what replaced them), not an error.
RETIRED_KEYS = {
    ("governor", "busy_cpu_percent"): "the governor judges the CPU time of its own frames, "
    "so other programs' load no longer changes its bar (see governor in default.yaml)",
}
_MAX_NODES = 100_000
#: A config file is a few kB; 256 kB leaves room for long playlists.
MAX_CONFIG_BYTES = 256 * 1024
_MAX_DEPTH = 100

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class ConfigError(Exception):
    """The configuration is unusable; `messages` holds one line per problem."""

    def __init__(self, messages: Sequence[str]):
        self.messages = list(messages)
        # args = (messages,) so a pickled error (multiprocessing) comes back whole
        super().__init__(self.messages)

    def __str__(self) -> str:
        return "\n".join(self.messages)


@dataclass
class _Layer:
    """One parsed file (or the --set overrides): plain data plus the line of every key."""

    path: Path | None
    label: str
    base_dir: Path
    data: dict
    lines: dict = field(default_factory=dict)
    extends: str | None = None
    extends_line: int = 1


def shipped_config_dir() -> Path:
    return data_dir() / CONFIG_SUBDIR


def profile_names() -> list[str]:
    """Names accepted as `load_config(path=NAME)`: the shipped profiles."""
    return sorted(path.stem for path in shipped_config_dir().glob("*.yaml"))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """The validated Config for `path` (a file, a shipped profile name, or None = default).

    `overrides` are `key.path=value` strings (from `--set`); each value is parsed as YAML.
    Raises ConfigError listing every problem found.
    """
    errors: list[str] = []
    first = _locate(path, errors)
    layers = _load_chain(first, errors) if first is not None else []
    set_layer = _parse_overrides(overrides, errors)
    if errors:
        raise ConfigError(errors)
    merged: dict = {}
    for layer in layers + [set_layer]:
        _merge(merged, layer.data)
    problems = _Collector(layers + [set_layer])
    config = _build(Config, merged, (), problems)
    if problems.found or config is INVALID:
        raise ConfigError([message for *_, message in sorted(problems.found)])
    config = dataclasses.replace(config, sources=tuple(layer.path for layer in layers))
    log.debug("config loaded from %s", ", ".join(str(p) for p in config.sources))
    return config


# --- finding and reading files ------------------------------------------------------------

def _locate(path: str | Path | None, errors: list[str]) -> Path | None:
    if path is None:
        return shipped_config_dir() / f"{ROOT_PROFILE}.yaml"
    given = Path(path)
    if given.is_file():
        return given
    shipped = shipped_config_dir() / f"{path}.yaml"
    if "/" not in str(path) and "\\" not in str(path) and shipped.is_file():
        return shipped
    errors.append(f"{path}: no such config file or profile "
                  f"(profiles: {', '.join(profile_names())})")
    return None


def _load_chain(first: Path, errors: list[str]) -> list[_Layer]:
    """Read `first` and the profiles it extends; the root (default.yaml) comes first."""
    root = (shipped_config_dir() / f"{ROOT_PROFILE}.yaml").resolve()
    layers: list[_Layer] = []
    seen: list[Path] = []  # resolved, to spot a cycle through symlinks or "../x"
    current = first
    while True:
        identity = current.resolve()
        if identity in seen:
            previous = layers[-1]
            names = [layer.label for layer in layers[seen.index(identity):]] + [str(current)]
            errors.append(f"{previous.label}:{previous.extends_line}: extends: cycle "
                          f"{' -> '.join(names)}")
            return []
        seen.append(identity)
        layer = _read_file(current, errors)
        if layer is None:
            return []
        layers.append(layer)
        if identity == root:
            break
        if layer.extends is None:
            # no `extends` (or null): the shipped default, never a look-alike next to the file
            current = shipped_config_dir() / f"{ROOT_PROFILE}.yaml"
            continue
        places = [current.parent / f"{layer.extends}.yaml",
                  shipped_config_dir() / f"{layer.extends}.yaml"]
        target = next((place for place in places if place.is_file()), None)
        if target is None:
            places = ", ".join(dict.fromkeys(str(place.parent) for place in places))
            name = str(layer.extends)
            name = name if name.isprintable() else repr(name)[1:-1]  # one line, whatever it holds
            errors.append(f"{layer.label}:{layer.extends_line}: extends: no profile "
                          f"'{name}' (looked for {name}.yaml in {places})")
            return []
        current = target
    layers.reverse()
    return layers


def _read_file(path: Path, errors: list[str]) -> _Layer | None:
    label = str(path)
    try:
        # Never more than the limit is read: a huge file is refused before the YAML parser
        # (which holds the interpreter for a minute on 50 MB, inside a running appliance on
        # reload) sees any of it.
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        errors.append(f"{label}: cannot read: {exc.strerror or exc}")
        return None
    if len(raw) > MAX_CONFIG_BYTES:
        errors.append(f"{label}: more than {MAX_CONFIG_BYTES} bytes: not read as a config file "
                      "(the shipped default.yaml, every key commented, is about 12 kB)")
        return None
    layer = _Layer(path=path.absolute(), label=label, base_dir=path.absolute().parent, data={})
    top = _parse_document(raw, label, errors)
    if top is None:
        return None
    reader = _NodeReader(label, errors)
    data = reader.read(top, ())
    if reader.failed:
        return None
    if not isinstance(data, dict):
        errors.append(f"{label}:{top.start_mark.line + 1}: the top level must be a mapping "
                      f"of config keys (got {show(data)})")
        return None
    layer.data, layer.lines = data, reader.lines
    if "extends" in data:
        extends = data.pop("extends")
        layer.extends_line = reader.lines.pop(("extends",))
        if extends is not None and (not isinstance(extends, str) or not extends.strip()):
            errors.append(f"{label}:{layer.extends_line}: extends: must be null or a profile "
                          f"name (got {show(extends)})")
            return None
        layer.extends = extends
    return layer


def _parse_document(raw: bytes | str, label: str, errors: list[str]) -> yaml.Node | None:
    loader = None
    try:
        # the Reader checks a str for control characters already in its constructor
        loader = yaml.SafeLoader(raw)
        top = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        context = f"{exc.context}: " if exc.context else ""
        errors.append(f"{label}:{line}: YAML syntax error: {context}{exc.problem}")
        return None
    except yaml.YAMLError as exc:  # ReaderError: bad encoding or control characters
        position = getattr(exc, "position", 0) or 0
        line = raw[:position].count(b"\n" if isinstance(raw, bytes) else "\n") + 1
        reason = getattr(exc, "reason", None) or str(exc)
        errors.append(f"{label}:{line}: YAML syntax error: {reason}")
        return None
    except RecursionError:
        errors.append(f"{label}:1: YAML nesting too deep")
        return None
    finally:
        if loader is not None:
            loader.dispose()
    if top is None:
        errors.append(f"{label}:1: empty file (expected a mapping of config keys)")
    return top


class _NodeReader:
    """Turns a composed YAML node tree into plain data, noting the line of every key."""

    def __init__(self, label: str, errors: list[str]):
        self.label = label
        self.errors = errors
        self.lines: dict[tuple, int] = {}
        self.failed = False
        self._nodes = 0
        self._constructor = yaml.SafeLoader("")

    def _error(self, node: yaml.Node, path: tuple, message: str) -> None:
        where = f"{dotted(path)}: " if path else ""
        self.errors.append(f"{self.label}:{node.start_mark.line + 1}: {where}{message}")
        self.failed = True

    def read(self, node: yaml.Node, path: tuple, ancestors: frozenset = frozenset()) -> Any:
        self._nodes += 1
        if self._nodes > _MAX_NODES or len(path) > _MAX_DEPTH:
            if not self.failed:  # one message is enough; the rest would repeat it
                self._error(node, path[:3], "document too large or too deeply nested")
            return None
        if id(node) in ancestors:
            self._error(node, path, "an alias refers to its own parent")
            return None
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        inner = ancestors | {id(node)}
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            items = []
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = item.start_mark.line + 1
                items.append(self.read(item, path + (index,), inner))
            return items
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            return self._mapping(node, path, inner)
        self._error(node, path, f"unsupported YAML tag {node.tag}")
        return None

    def _scalar(self, node: yaml.ScalarNode, path: tuple) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        # PyYAML's scalar constructors raise plain ValueError/KeyError/TypeError on values
        # like `2001-02-30` or `!!bool maybe`; each is a bad value, not a crash
        except (yaml.YAMLError, ValueError, KeyError, TypeError, OverflowError) as exc:
            reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
            self._error(node, path, f"cannot read value {show(node.value)} ({reason})")
            return None

    def _mapping(self, node: yaml.MappingNode, path: tuple, ancestors: frozenset) -> dict:
        result: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._error(key_node, path, "keys must be plain names, not lists or mappings")
                continue
            # the key as written: `1:` or `yes:` are unknown names, not an int or a bool
            key = key_node.value
            key_path = path + (key,)
            if key in result:
                self._error(key_node, key_path, "duplicate key")
                continue
            self.lines[key_path] = key_node.start_mark.line + 1
            result[key] = self.read(value_node, key_path, ancestors)
        return result


# --- --set overrides ----------------------------------------------------------------------

def _parse_overrides(overrides: Sequence[str], errors: list[str]) -> _Layer:
    layer = _Layer(path=None, label=SET_LABEL, base_dir=Path.cwd(), data={})
    if isinstance(overrides, str):  # a lone string would be split into characters
        overrides = [overrides]
    for text in overrides:
        key_text, equals, value_text = str(text).partition("=")
        keys = tuple(part.strip() for part in key_text.split("."))
        if not equals or not all(keys) or not key_text.isprintable():
            errors.append(f"{SET_LABEL}: expected KEY.PATH=VALUE, e.g. log.level=debug "
                          f"(got {show(text)})")
            continue
        if keys[0] == "extends":
            errors.append(f"{SET_LABEL}:extends: cannot be set on the command line; "
                          f"pass the profile with -c instead")
            continue
        value, inner_keys = _parse_set_value(value_text, keys, errors)
        if value is INVALID:
            continue
        for key in reversed(keys):
            value = {key: value}
        # a later --set wins, like a later file
        _merge(layer.data, value)
        # every key this --set names, down into a {mapping} value: errors there must not
        # be blamed on a file; a None line prints as "--set:KEY"
        layer.lines.update({keys[:depth]: None for depth in range(1, len(keys) + 1)})
        layer.lines.update({keys + inner: None for inner in inner_keys})
    return layer


def _parse_set_value(text: str, keys: tuple, errors: list[str]) -> tuple[Any, list]:
    """The YAML value of one --set (or INVALID) and the key paths inside it."""
    label = f"{SET_LABEL}:{'.'.join(keys)}"
    node_errors: list[str] = []
    node = _parse_document(text, label, node_errors) if text.strip() else None
    if node is not None:
        reader = _NodeReader(label, node_errors)
        value = reader.read(node, ())
        if not reader.failed:
            return value, list(reader.lines)
    if node_errors and "empty file" not in node_errors[0]:
        reason = node_errors[0].split(": ", 1)[-1]
        errors.append(f"{label}: cannot parse value {show(text)} as YAML: {reason}")
        return INVALID, []
    return None, []  # `--set run.duration_s=` (nothing, or only a comment) means null


# --- merging and validation ---------------------------------------------------------------

def _merge(dst: dict, src: dict) -> None:
    """Deep-merge src into dst: mappings merge, lists and scalars replace."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value


class _Collector(Problems):
    """Reports problems at the file and line that set the key; merged layers, root first."""

    def __init__(self, layers: list[_Layer]):
        self.layers = layers
        # (layer index, line, order found, message): sorted, they read like the files
        self.found: list[tuple[int, int, int, str]] = []

    def origin(self, path: tuple) -> tuple[_Layer, int | None]:
        # The last layer that names a key set the merged value: a later layer either merged
        # into it (a mapping) or replaced it. A missing key falls back to its section.
        for depth in range(len(path), 0, -1):
            for layer in reversed(self.layers):
                if path[:depth] in layer.lines:
                    return layer, layer.lines[path[:depth]]
        return self.layers[0], 1

    def error(self, path: tuple, message: str) -> None:
        layer, line = self.origin(path)
        # files: "FILE:LINE: key: ..."; --set has no line: "--set:key: ..."
        where = f"{layer.label}:{line}: " if line is not None else f"{layer.label}:"
        self.found.append((self.layers.index(layer), line or 0, len(self.found),
                           f"{where}{dotted(path) or '(top level)'}: {message}"))

    def base_dir(self, path: tuple) -> Path:
        return self.origin(path)[0].base_dir

    def retired(self, path: tuple) -> None:
        # Once per load: a config written for an older release keeps working, and says so.
        layer, line = self.origin(path)
        where = f"{layer.label}:{line}: " if line is not None else f"{layer.label}:"
        log.warning("%s%s: no longer used (ignored): %s", where, dotted(path), RETIRED_KEYS[path])


def _build(cls: type, data: Any, path: tuple, problems: _Collector) -> Any:
    """Validate the mapping `data` into dataclass `cls`, reporting every problem found."""
    if not isinstance(data, dict):
        problems.error(path, f"must be a mapping (got {show(data)})")
        return INVALID
    specs = {f.name: f.metadata["spec"] for f in dataclasses.fields(cls) if "spec" in f.metadata}
    for key in data:
        if path + (key,) in RETIRED_KEYS:
            problems.retired(path + (key,))
        elif key not in specs:
            problems.error(path + (key,),
                           f"unknown key {key!r} (allowed: {', '.join(specs)})")
    values = {}
    for name, spec in specs.items():
        if name not in data:
            problems.error(path + (name,), f"missing (must be {spec.allowed()})")
            values[name] = INVALID
        elif isinstance(spec, Section):
            values[name] = _build(spec.cls, data[name], path + (name,), problems)
        else:
            values[name] = spec.convert(data[name], path + (name,), problems)
    if cls is MicConfig:
        _check_backoff(values, path, problems)
    if cls is GovernorConfig:
        _check_governor(values, path, problems)
    if any(value is INVALID for value in values.values()):
        return INVALID
    return cls(**values)


def _check_backoff(values: dict, path: tuple, problems: _Collector) -> None:
    first, longest = values["reopen_backoff_s"], values["reopen_backoff_max_s"]
    if INVALID not in (first, longest) and longest < first:
        problems.error(path + ("reopen_backoff_max_s",),
                       f"must be a number from reopen_backoff_s ({first:g}) to 600 "
                       f"(got {show(longest)})")
        values["reopen_backoff_max_s"] = INVALID


def _check_governor(values: dict, path: tuple, problems: _Collector) -> None:
    # Hysteresis needs a gap: cool below hot, and the step-up cost below the step-down one.
    cool, hot, critical = values["cool_c"], values["hot_c"], values["critical_c"]
    if INVALID not in (cool, hot) and cool >= hot:
        problems.error(path + ("cool_c",), f"must be below hot_c ({hot:g}) (got {cool:g})")
        values["cool_c"] = INVALID
    if INVALID not in (hot, critical) and critical < hot:
        problems.error(path + ("critical_c",),
                       f"must be at least hot_c ({hot:g}) (got {critical:g})")
        values["critical_c"] = INVALID
    up, down = values["step_up_cost"], values["step_down_cost"]
    if INVALID not in (up, down) and up >= down:
        problems.error(path + ("step_up_cost",),
                       f"must be below step_down_cost ({down:g}) (got {up:g})")
        values["step_up_cost"] = INVALID
