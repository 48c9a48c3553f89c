"""Where shipped data (models, firmware_config) lives, for source trees and installs alike."""
from __future__ import annotations

import os
import sys
from pathlib import Path

#: Prefix of a config path that points into the data directory ("@/models/audio/audio.yaml").
DATA_PREFIX = "@/"


def data_dir() -> Path:
    """The directory holding `models/` and `firmware_config/`.

    Order: $EDGEMATE_DATA; the source tree next to the `runtime` package (git checkout or
    editable install); `<prefix>/share/edgemate` (a regular `pip install .`, see setup.cfg
    data_files).
    """
    env = os.environ.get("EDGEMATE_DATA")
    if env:
        return Path(env)
    source_tree = Path(__file__).resolve().parents[2]  # runtime/system/paths.py
    if (source_tree / "firmware_config" / "default.yaml").is_file():
        return source_tree
    return Path(sys.prefix) / "share" / "edgemate"


def resolve_data_path(value: str, base_dir: Path) -> Path:
    """A path from a config file: '@/x' is in the data dir, relative is against base_dir."""
    if value.startswith(DATA_PREFIX):
        return data_dir() / value[len(DATA_PREFIX):]
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def runtime_dir() -> Path:
    """Where sockets go: $RUNTIME_DIRECTORY under systemd, else the temp directory."""
    env = os.environ.get("RUNTIME_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    import tempfile
    return Path(tempfile.gettempdir())


def cache_dir() -> Path:
    """Where derived data that can be rebuilt goes (decoded template frames).

    Order: $EDGEMATE_CACHE_DIR; $CACHE_DIRECTORY (systemd sets it for CacheDirectory=, the
    first of a colon-separated list); $XDG_CACHE_HOME/edgemate (the spec says to ignore a
    relative one); ~/.cache/edgemate (macOS: ~/Library/Caches/edgemate, which backups
    skip); the temp directory if there is no home.
    """
    env = os.environ.get("EDGEMATE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    env = os.environ.get("CACHE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "edgemate"
    try:
        if sys.platform == "darwin":
            return Path.home() / "Library" / "Caches" / "edgemate"
        return Path.home() / ".cache" / "edgemate"
    except RuntimeError:  # no HOME and no passwd entry (a bare container user)
        import tempfile
        return Path(tempfile.gettempdir()) / f"edgemate-cache-{os.getuid()}"
