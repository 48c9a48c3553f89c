"""Config -> an open display sink (with the configured fallback)."""
from __future__ import annotations

from runtime.config.schema import DisplayConfig
from runtime.display import make_sink, open_with_fallback
from runtime.display.sink import DisplaySink


def _make(display: DisplayConfig, kind: str) -> DisplaySink:
    rec = display.record
    return make_sink(kind, fullscreen=display.fullscreen, driver=display.driver,
                     window_size=display.window_size, path=display.path,
                     scale_filter=display.scale_filter, record_path=rec.path, ffmpeg=rec.ffmpeg,
                     crf=rec.crf, preset=rec.preset)


def open_sink(display: DisplayConfig, frame_size: tuple[int, int]) -> tuple[DisplaySink, str | None]:
    """The open sink and a line for the user if the fallback was taken."""
    return open_with_fallback(_make(display, display.sink), display.fallback,
                              lambda: _make(display, display.fallback), frame_size)
