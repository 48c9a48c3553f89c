"""Where frames go: the window sink (desktop or KMSDRM kiosk), the MP4 record sink (with
the audio), and the null sink. A sink is handed the template frame and the mouth patch.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from .sink import DisplayError, DisplaySink

log = logging.getLogger(__name__)

#: Values of display.sink and of display.fallback.
SINK_KINDS = ("window", "record", "null")
FALLBACK_KINDS = ("record", "null", "exit")

__all__ = ["DisplayError", "DisplaySink", "FALLBACK_KINDS", "SINK_KINDS", "make_sink",
           "open_with_fallback"]


def make_sink(kind: str, *, fullscreen: bool = False, driver: str = "auto",
              window_size: tuple[int, int] | None = None, path: str = "auto",
              scale_filter: str = "smooth",
              record_path: Path = Path("edgemate-recording.mp4"), ffmpeg: str = "auto",
              crf: int = 25, preset: str = "superfast") -> DisplaySink:
    """A closed sink of the given kind (display.sink); open it with open_with_fallback()."""
    # Imports inside: a record-only box needs no pygame, a window-only box no ffmpeg.
    if kind == "window":
        from .window import WindowSink
        return WindowSink(fullscreen=fullscreen, driver=driver, window_size=window_size,
                          path=path, scale_filter=scale_filter)
    if kind == "record":
        from .record import RecordSink
        return RecordSink(Path(record_path), ffmpeg=ffmpeg, crf=crf, preset=preset)
    if kind == "null":
        from .null import NullSink
        return NullSink()
    raise ValueError(f"display sink {kind!r}: allowed are {', '.join(SINK_KINDS)}")


def open_with_fallback(primary: DisplaySink, fallback_kind: str,
                       make_fallback: Callable[[], DisplaySink],
                       frame_size: tuple[int, int]) -> tuple[DisplaySink, str | None]:
    """Open `primary`; if it cannot open, open the fallback (display.fallback) instead.

    Returns the open sink and a line for the user when the fallback was taken (else None).
    With fallback 'exit', or when the fallback fails too, raises DisplayError.
    """
    if fallback_kind not in FALLBACK_KINDS:
        raise ValueError(f"display fallback {fallback_kind!r}: "
                         f"allowed are {', '.join(FALLBACK_KINDS)}")
    try:
        primary.open(frame_size)
        return primary, None
    except DisplayError as exc:
        reason = str(exc)
        if fallback_kind == "exit":
            raise
    log.warning("%s sink unavailable: %s; falling back to %s", primary.name, reason, fallback_kind)
    fallback = make_fallback()
    try:
        fallback.open(frame_size)
    except DisplayError as exc:
        raise DisplayError(f"{reason}; fallback {fallback_kind} failed too: {exc}") from None
    path = getattr(fallback, "path", None)
    if path is not None:
        note = f"{reason}: recording to {Path(path).resolve()} instead"
    else:
        note = f"{reason}: showing nothing ({fallback.name} sink) instead"
    return fallback, note
