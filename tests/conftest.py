"""Shared fixtures. Hardware is faked; ncnn models are the TEST FIXTURES of tools/make_fixtures."""
import logging
import os
import tempfile

import pytest

# Headless everywhere: no window may pop up during tests, no audio device is touched.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Sockets (speech, control) of every appliance started by a test land in a directory of this
# session, never in a running service's: subprocesses inherit it.
os.environ["RUNTIME_DIRECTORY"] = tempfile.mkdtemp(prefix="edgemate-test-run-")
# Decoded template caches of test bundles never land in the user's ~/.cache.
os.environ["EDGEMATE_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgemate-test-cache-")
# No test may talk to the systemd of the machine running it.
os.environ.pop("NOTIFY_SOCKET", None)


@pytest.fixture(scope="session")
def model_fixtures(tmp_path_factory):
    """(audio model sidecar, avatar bundle dir) written once per test session."""
    from tools.export.make_fixtures import write_all
    return write_all(tmp_path_factory.mktemp("fixtures"), frame_size=(180, 320), frames=25)

# Native extensions cannot be imported twice: mock.patch.dict(sys.modules, ...) in a test
# removes modules first imported inside it, and pybind11 then refuses the re-import.
import kaldi_native_fbank  # noqa: E402,F401
import ncnn  # noqa: E402,F401
import pygame  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """A tool's main() calls logging.basicConfig, which binds a root handler to the sys.stderr
    of that moment (pytest's capture of that test). Remove such handlers after each test, so
    a later test never logs into a closed stream ("--- Logging error ---" in its stderr)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
