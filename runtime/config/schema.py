"""The validated configuration: one frozen dataclass per subsystem, field names = YAML keys.

Each field carries its check in `metadata["spec"]` (runtime/config/specs.py), so the check
sits next to the field it belongs to; the allowed values of an enum are imported from the
module that acts on them, so the two cannot drift apart. `runtime.config.loader` walks
these specs; nothing here reads files.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.audio import SOURCE_KINDS
from runtime.audio.capture import CAPTURE_RATES
from runtime.audio.files import ON_END
from runtime.audio.pcm import RAW_FORMATS
from runtime.display import FALLBACK_KINDS, SINK_KINDS
from runtime.display.record_ffmpeg import X264_PRESETS
from runtime.display.screen_paths import PATHS, SCALE_FILTERS
from runtime.display.window import DRIVERS
from runtime.quality.levels import QUALITY_SETTINGS
from .specs import (Bool, Choice, FilePath, Float, Int, Names, OctalMode, PathList, Section,
                           Size, Spec, Text)


def _spec(spec: Spec) -> Any:
    return field(metadata={"spec": spec})


def _data_path(value: str, base_dir: Path) -> Path:
    from runtime.system.paths import resolve_data_path
    return resolve_data_path(value, base_dir)


def _socket_path(value: str, base_dir: Path) -> Path:
    # sockets live in the runtime directory, not next to the config file that names them
    from runtime.system.paths import runtime_dir
    path = Path(value).expanduser()
    return path if path.is_absolute() else runtime_dir() / path


def _cwd_path(value: str, base_dir: Path) -> Path:
    # a recording lands where the user started the program, whichever file named it
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


@dataclass(frozen=True)
class LogConfig:
    level: str = _spec(Choice(options=("debug", "info", "warning", "error")))


@dataclass(frozen=True)
class FilesConfig:
    playlist: tuple[Path, ...] = _spec(PathList(item=FilePath(resolve=_data_path)))
    loop: bool = _spec(Bool())
    gap_s: float = _spec(Float(lo=0, hi=60))
    on_end: str = _spec(Choice(options=ON_END))


@dataclass(frozen=True)
class StreamConfig:
    socket: Path = _spec(FilePath(resolve=_socket_path))
    socket_mode: int = _spec(OctalMode())
    raw_rate: int = _spec(Int(lo=8000, hi=96000))
    raw_format: str = _spec(Choice(options=RAW_FORMATS))
    raw_channels: int = _spec(Int(lo=1, hi=2))
    prebuffer_ms: int = _spec(Int(lo=0, hi=5000))
    max_buffer_s: float = _spec(Float(lo=1, hi=600))
    max_buffer_mb: float = _spec(Float(lo=1, hi=1024))


@dataclass(frozen=True)
class MicConfig:
    device: str = _spec(Text())
    rate: int | None = _spec(Choice(nullable=True, options=CAPTURE_RATES))
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
    source: str = _spec(Choice(options=SOURCE_KINDS))
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
    # auto: the governor (runtime/quality/governor.py) picks the level; the others fix it
    quality: str = _spec(Choice(options=QUALITY_SETTINGS))


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
    # Never 1: a single dropped frame is not evidence that rendering costs too much.
    step_down_drops: int = _spec(Int(lo=2, hi=100))
    pass_after_s: float = _spec(Float(lo=1, hi=600))
    dwell_s: float = _spec(Float(lo=0, hi=3600))
    thermal_dwell_s: float = _spec(Float(lo=0, hi=3600))
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
    sink: str = _spec(Choice(options=SINK_KINDS))
    fullscreen: bool = _spec(Bool())
    driver: str = _spec(Choice(options=DRIVERS))
    window_size: tuple[int, int] | None = _spec(Size(nullable=True))
    path: str = _spec(Choice(options=PATHS))
    scale_filter: str = _spec(Choice(options=SCALE_FILTERS))
    fallback: str = _spec(Choice(options=FALLBACK_KINDS))
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
    max_clients: int = _spec(Int(lo=1, hi=256))
    max_clients_per_user: int = _spec(Int(lo=1, hi=256))


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
