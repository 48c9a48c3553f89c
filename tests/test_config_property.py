"""Whatever a config file or --set holds, loading gives a Config or a ConfigError, nothing else."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from unittest import mock

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.config.loader import Config, ConfigError, load_config
from runtime.system.paths import data_dir

DEFAULT_TEXT = (data_dir() / "firmware_config" / "default.yaml").read_text()
DEFAULT_TREE = yaml.safe_load(DEFAULT_TEXT)

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=20) | st.sampled_from(["0660", "@/x", "", "~", "auto", "mic"]))
keys = st.text(max_size=12) | st.sampled_from(sorted(DEFAULT_TREE)) | st.just("extends")
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25)


def outcome(path=None, overrides=()) -> Config | ConfigError:
    """Load; the only acceptable failure is ConfigError (anything else fails the test)."""
    try:
        return load_config(path, overrides)
    except ConfigError as error:
        assert error.messages
        assert all(isinstance(m, str) and m and "\n" not in m for m in error.messages)
        return error


def load_text(data: bytes | str, **kwargs):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "user.yaml"
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return outcome(path, **kwargs)


@FAST
@given(documents)
def test_arbitrary_yaml_documents(document):
    load_text(yaml.safe_dump(document))


@FAST
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
       | st.sampled_from(["a: &x [*x]", "a: 2001-02-30", "a: !!bool maybe", "a: !!float x",
                          "[" * 300, "a: !!binary '#'", "? [a]\n: b", "a: 1\n---\nb: 2"]))
def test_arbitrary_text(text):
    load_text(text)


@FAST
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data):
    load_text(data)


@FAST
@given(st.lists(st.text(max_size=30) | st.builds(lambda k, v: f"{k}={v}",
                                                 st.sampled_from(["log.level", "audio.mic",
                                                                  "display.window_size", "a"]),
                                                 st.text(max_size=20)), max_size=4))
def test_arbitrary_set_overrides(overrides):
    outcome(None, overrides)


def leaf_paths(tree, prefix=()):
    if isinstance(tree, dict) and tree:
        return [p for key, value in tree.items() for p in leaf_paths(value, prefix + (key,))]
    return [prefix]


def mutate(data, tree, action, key_path, value, new_key):
    """Replace a leaf, delete a key or add one, at `key_path` inside a copy of `tree`."""
    parent = tree
    for key in key_path[:-1]:
        parent = parent[key]
    if action == "replace":
        parent[key_path[-1]] = value
    elif action == "delete":
        del parent[key_path[-1]]
    elif isinstance(parent, dict):
        parent[new_key] = value
    return tree


@st.composite
def mutated_defaults(draw):
    tree = yaml.safe_load(DEFAULT_TEXT)  # a fresh copy to change
    path = draw(st.sampled_from(leaf_paths(tree)))
    depth = draw(st.integers(min_value=1, max_value=len(path)))
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    return mutate(draw, tree, action, path[:depth], draw(documents), draw(keys))


@FAST
@given(mutated_defaults())
def test_mutated_user_file(tree):
    # Only the user file is broken, so it is what a good config came from, and what every
    # problem names (file and line first, so the integrator can go straight to it).
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "user.yaml"
        path.write_text(yaml.safe_dump(tree))
        result = outcome(path)
        if isinstance(result, Config):
            assert path in result.sources
        else:
            assert all(message.startswith(str(path)) for message in result.messages), result.messages


@FAST
@given(mutated_defaults())
def test_mutated_shipped_default(tree):
    # the root profile itself broken (keys missing, wrong shapes) must still only give errors
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "firmware_config").mkdir()
        (Path(tmp) / "firmware_config" / "default.yaml").write_text(yaml.safe_dump(tree))
        with mock.patch.dict(os.environ, {"EDGEMATE_DATA": tmp}):
            outcome()
