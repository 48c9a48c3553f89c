"""The validated configuration: one frozen dataclass per subsystem, field names = YAML keys.

Each field carries its check in `metadata["spec"]`, so the allowed values sit next to the field
they belong to. `runtime.config` walks these specs; nothing here reads files.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: Returned by a spec (or a section) whose value was rejected; the error is already recorded.
INVALID: Any = object()

_MAX_SHOWN = 60


def show(value: Any) -> str:
    """How a rejected value appears in an error message: short, YAML-flavoured."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."


def dotted(path: tuple) -> str:
    """("audio", "files", "playlist", 2) -> "audio.files.playlist[2]"."""
    text = ""
    for part in path:
        if not isinstance(part, int) and not part.isprintable():
            part = repr(part)  # one message, one line, whatever the key holds
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class Problems:
    """What a spec needs from the loader: a place to report, and where a key was set."""

    def error(self, path: tuple, message: str) -> None:
        raise NotImplementedError

    def base_dir(self, path: tuple) -> Path:
        """Directory of the file that set `path` (the working directory for --set)."""
        raise NotImplementedError


def _is_int(value: Any) -> bool:
    # bool is a subclass of int in Python; `threads: true` must not mean 1
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


@dataclass(frozen=True)
class Spec:
    """Base check: `convert` returns the typed value or INVALID (after reporting why)."""

    nullable: bool = False

    def describe(self) -> str:
        raise NotImplementedError

    def convert(self, value: Any, path: tuple, problems: Problems) -> Any:
        if value is None and self.nullable:
            return None
        result = self._convert(value, path, problems)
        if result is INVALID:
            problems.error(path, f"must be {self.allowed()} (got {show(value)})")
        return result

    def allowed(self) -> str:
        return ("null or " if self.nullable else "") + self.describe()

    def _convert(self, value: Any, path: tuple, problems: Problems) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Choice(Spec):
    """One of a fixed set of strings or integers."""

    options: tuple = ()

    def describe(self) -> str:
        return "one of " + ", ".join(str(option) for option in self.options)

    def allowed(self) -> str:
        # null is accepted but left out of the list: "one of 16000, 22050, ..." reads better
        # and the commented default.yaml says what null means
        return self.describe()

    def _convert(self, value, path, problems):
        # `sink: null` (the null sink) reads as YAML null; the option is the word itself.
        if value is None and "null" in self.options:
            return "null"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return INVALID
        return value if value in self.options else INVALID


@dataclass(frozen=True)
class Int(Spec):
    lo: int = 0
    hi: int = 0

    def describe(self) -> str:
        return f"an integer from {self.lo} to {self.hi}"

    def _convert(self, value, path, problems):
        return value if _is_int(value) and self.lo <= value <= self.hi else INVALID


@dataclass(frozen=True)
class Float(Spec):
    """A number (an integer is fine); hi None = no upper limit; lo_open = lo itself excluded."""

    lo: float = 0.0
    hi: float | None = None
    lo_open: bool = False

    def describe(self) -> str:
        if self.hi is None:
            return f"a number {'>' if self.lo_open else '>='} {self.lo:g}"
        return f"a number from {self.lo:g} to {self.hi:g}"

    def _convert(self, value, path, problems):
        if not _is_number(value):
            return INVALID
        try:
            number = float(value)
        except OverflowError:  # an integer with hundreds of digits
            return INVALID
        if not math.isfinite(number) or number < self.lo or (self.lo_open and number == self.lo):
            return INVALID
        if self.hi is not None and number > self.hi:
            return INVALID
        return number


@dataclass(frozen=True)
class Bool(Spec):
    def describe(self) -> str:
        return "true or false"

    def _convert(self, value, path, problems):
        return value if isinstance(value, bool) else INVALID


@dataclass(frozen=True)
class Text(Spec):
    """A string; device names may be empty (= the system default)."""

    def describe(self) -> str:
        return "a string"

    def _convert(self, value, path, problems):
        return value if isinstance(value, str) else INVALID


@dataclass(frozen=True)
class OctalMode(Spec):
    """A file mode written as a quoted octal string: unquoted 0660 is YAML 1.1 octal = 432."""

    def describe(self) -> str:
        return 'a quoted octal string from "0000" to "0777"'

    def _convert(self, value, path, problems):
        if not isinstance(value, str) or not re.fullmatch(r"[0-7]{3,4}", value):
            return INVALID
        mode = int(value, 8)
        return mode if mode <= 0o777 else INVALID


@dataclass(frozen=True)
class FilePath(Spec):
    """A non-empty path string; `resolve(value, base_dir)` turns it into a Path."""

    resolve: Callable[[str, Path], Path] | None = None

    def describe(self) -> str:
        return "a non-empty path string"

    def convert(self, value, path, problems):
        if value is None and self.nullable:
            return None
        allowed = self.allowed()
        if isinstance(value, str) and value.strip() and "\0" not in value:
            try:
                return self.resolve(value, problems.base_dir(path))
            except RuntimeError:  # pathlib cannot expand "~nosuchuser/x"
                allowed += " whose ~ names a known user"
        problems.error(path, f"must be {allowed} (got {show(value)})")
        return INVALID


@dataclass(frozen=True)
class PathList(Spec):
    """A list of paths, each resolved like FilePath."""

    item: FilePath = field(default_factory=FilePath)

    def describe(self) -> str:
        return "a list of path strings"

    def convert(self, value, path, problems):
        if not isinstance(value, list):
            problems.error(path, f"must be {self.describe()} (got {show(value)})")
            return INVALID
        items = [self.item.convert(entry, path + (index,), problems)
                 for index, entry in enumerate(value)]
        return INVALID if any(entry is INVALID for entry in items) else tuple(items)


@dataclass(frozen=True)
class Names(Spec):
    """A list of non-empty strings (e.g. thermal zone types, in order of preference)."""

    def describe(self) -> str:
        return "a list of non-empty strings"

    def _convert(self, value, path, problems):
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip()
                                                  for item in value):
            return INVALID
        return tuple(value)


@dataclass(frozen=True)
class Size(Spec):
    """[width, height] in pixels."""

    lo: int = 16
    hi: int = 7680

    def describe(self) -> str:
        return f"[width, height] with integers from {self.lo} to {self.hi}"

    def _convert(self, value, path, problems):
        if not isinstance(value, list) or len(value) != 2:
            return INVALID
        if not all(_is_int(side) and self.lo <= side <= self.hi for side in value):
            return INVALID
        return (value[0], value[1])


@dataclass(frozen=True)
class Section(Spec):
    """A nested mapping validated into `cls` (walked by the loader, not converted here)."""

    cls: type | None = None

    def describe(self) -> str:
        return "a mapping"


def _spec(spec: Spec) -> Any:
    return field(metadata={"spec": spec})


def _data_path(value: str, base_dir: Path) -> Path:
    from .paths import resolve_data_path
    return resolve_data_path(value, base_dir)


def _socket_path(value: str, base_dir: Path) -> Path:
    # sockets live in the runtime directory, not next to the config file that names them
    from .paths import runtime_dir
    path = Path(value).expanduser()
    return path if path.is_absolute() else runtime_dir() / path


def _cwd_path(value: str, base_dir: Path) -> Path:
    # a recording lands where the user started the program, whichever file named it
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")


@dataclass(frozen=True)
class LogConfig:
    level: str = _spec(Choice(options=("debug", "info", "warning", "error")))


@dataclass(frozen=True)
class FilesConfig:
    playlist: tuple[Path, ...] = _spec(PathList(item=FilePath(resolve=_data_path)))
    loop: bool = _spec(Bool())
    gap_s: float = _spec(Float(lo=0, hi=60))
    on_end: str = _spec(Choice(options=("idle", "exit")))


@dataclass(frozen=True)
class StreamConfig:
    socket: Path = _spec(FilePath(resolve=_socket_path))
    socket_mode: int = _spec(OctalMode())
    raw_rate: int = _spec(Int(lo=8000, hi=96000))
    raw_format: str = _spec(Choice(options=("s16le", "s24le", "s32le", "f32le", "u8")))
    raw_channels: int = _spec(Int(lo=1, hi=2))
    prebuffer_ms: int = _spec(Int(lo=0, hi=5000))
    max_buffer_s: float = _spec(Float(lo=1, hi=600))


@dataclass(frozen=True)
class MicConfig:
    device: str = _spec(Text())
    rate: int | None = _spec(Choice(nullable=True, options=(16000, 22050, 44100, 48000)))
    channels: int = _spec(Int(lo=1, hi=2))
    chunk_ms: int = _spec(Int(lo=5, hi=200))
    stall_timeout_s: float = _spec(Float(lo=0.1, hi=60))
    reopen_backoff_s: float = _spec(Float(lo=0.01, hi=60))
    # must also be >= reopen_backoff_s: checked by the loader, it spans two fields
    reopen_backoff_max_s: float = _spec(Float(lo=0.01, hi=600))


@dataclass(frozen=True)
class PlaybackConfig:
    enabled: bool = _spec(Bool())
    device: str = _spec(Text())
    extra_latency_ms: float = _spec(Float(lo=0, hi=2000))


@dataclass(frozen=True)
class AudioConfig:
    source: str = _spec(Choice(options=("files", "stream", "mic")))
    lead_ms: int = _spec(Int(lo=40, hi=2000))
    files: FilesConfig = _spec(Section(cls=FilesConfig))
    stream: StreamConfig = _spec(Section(cls=StreamConfig))
    mic: MicConfig = _spec(Section(cls=MicConfig))
    playback: PlaybackConfig = _spec(Section(cls=PlaybackConfig))


@dataclass(frozen=True)
class ModelsConfig:
    audio: Path = _spec(FilePath(resolve=_data_path))
    threads: int = _spec(Int(lo=1, hi=16))
    vulkan: bool = _spec(Bool())


@dataclass(frozen=True)
class AvatarConfig:
    bundle: Path = _spec(FilePath(resolve=_data_path))


@dataclass(frozen=True)
class RenderConfig:
    # auto: the governor (runtime/governor.py) picks the level; the others fix it
    quality: str = _spec(Choice(options=("auto", "full", "coarse", "pass")))


@dataclass(frozen=True)
class SensorsConfig:
    """Where the governor reads temperature and throttling (null = found automatically)."""

    temperature_file: Path | None = _spec(FilePath(nullable=True, resolve=_data_path))
    zone_types: tuple[str, ...] = _spec(Names())
    throttle_file: Path | None = _spec(FilePath(nullable=True, resolve=_data_path))
    pmset_interval_s: float = _spec(Float(lo=1, hi=600))
    pmset_timeout_s: float = _spec(Float(lo=0.1, hi=10))


@dataclass(frozen=True)
class GovernorConfig:
    """Thresholds of the quality governor; cool_c < hot_c <= critical_c and
    step_up_cost < step_down_cost are checked by the loader (they span fields)."""

    hot_c: float = _spec(Float(lo=30, hi=120))
    critical_c: float = _spec(Float(lo=30, hi=130))
    cool_c: float = _spec(Float(lo=20, hi=120))
    window_s: float = _spec(Float(lo=0.2, hi=10))
    step_down_cost: float = _spec(Float(lo=0.1, hi=2))
    step_up_cost: float = _spec(Float(lo=0.05, hi=2))
    step_down_drops: int = _spec(Int(lo=1, hi=100))
    busy_cpu_percent: float | None = _spec(Float(nullable=True, lo=1, hi=100))
    dwell_s: float = _spec(Float(lo=0, hi=3600))
    refractory_s: float = _spec(Float(lo=0, hi=600))
    warmup_s: float = _spec(Float(lo=0, hi=600))
    retry_after_s: float = _spec(Float(lo=1, hi=86400))
    sample_interval_s: float = _spec(Float(lo=0.1, hi=60))
    sensors: SensorsConfig = _spec(Section(cls=SensorsConfig))


@dataclass(frozen=True)
class RecordConfig:
    path: Path = _spec(FilePath(resolve=_cwd_path))
    # "auto" or a path; kept as given because "auto" is looked up at run time
    ffmpeg: str = _spec(Text())
    crf: int = _spec(Int(lo=0, hi=51))
    preset: str = _spec(Choice(options=X264_PRESETS))


@dataclass(frozen=True)
class DisplayConfig:
    sink: str = _spec(Choice(options=("window", "record", "null")))
    fullscreen: bool = _spec(Bool())
    driver: str = _spec(Choice(options=("auto", "x11", "wayland", "kmsdrm", "dummy")))
    window_size: tuple[int, int] | None = _spec(Size(nullable=True))
    fallback: str = _spec(Choice(options=("record", "null", "exit")))
    record: RecordConfig = _spec(Section(cls=RecordConfig))


@dataclass(frozen=True)
class ControlConfig:
    enabled: bool = _spec(Bool())
    socket: Path = _spec(FilePath(resolve=_socket_path))
    socket_mode: int = _spec(OctalMode())
    # loopback only: a remote door is never opened by a typo
    tcp_host: str = _spec(Choice(options=("127.0.0.1", "::1")))
    tcp_port: int | None = _spec(Int(nullable=True, lo=1024, hi=65535))
    max_body_mb: float = _spec(Float(lo=0.01, hi=1024))
    max_say_s: float = _spec(Float(lo=1, hi=3600))
    client_idle_timeout_s: float = _spec(Float(lo=0.1, hi=600))


@dataclass(frozen=True)
class ServiceConfig:
    status_interval_s: float = _spec(Float(lo=0.5, hi=3600))


@dataclass(frozen=True)
class RunConfig:
    duration_s: float | None = _spec(Float(nullable=True, lo=0, lo_open=True))


@dataclass(frozen=True)
class Config:
    """The whole configuration. `sources`: the files merged, the root profile first."""

    log: LogConfig = _spec(Section(cls=LogConfig))
    audio: AudioConfig = _spec(Section(cls=AudioConfig))
    models: ModelsConfig = _spec(Section(cls=ModelsConfig))
    avatar: AvatarConfig = _spec(Section(cls=AvatarConfig))
    render: RenderConfig = _spec(Section(cls=RenderConfig))
    governor: GovernorConfig = _spec(Section(cls=GovernorConfig))
    display: DisplayConfig = _spec(Section(cls=DisplayConfig))
    control: ControlConfig = _spec(Section(cls=ControlConfig))
    service: ServiceConfig = _spec(Section(cls=ServiceConfig))
    run: RunConfig = _spec(Section(cls=RunConfig))
    # not a YAML key: filled in by the loader
    sources: tuple[Path, ...] = ()


def to_dict(config: Config) -> dict:
    """A plain dict for YAML/JSON output; paths are strings, socket_mode an octal string."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (tuple, list)):
            return [plain(item) for item in value]
        return str(value) if isinstance(value, Path) else value

    result = plain(dataclasses.asdict(config))
    result["audio"]["stream"]["socket_mode"] = f"{config.audio.stream.socket_mode:04o}"
    result["control"]["socket_mode"] = f"{config.control.socket_mode:04o}"
    return result
