"""The audio source interface and the factory that picks one from the config."""
from __future__ import annotations

import abc

from .chunk import AudioChunk


class AudioSourceError(Exception):
    """The source cannot work at all (bad config, missing optional module); one-line reason."""


class AudioSource(abc.ABC):
    """open(); read() until it returns None; close().

    `read(timeout_s)` returns the next chunk, an empty-handed `SILENT` marker when nothing
    arrived within `timeout_s` (a live source with nobody speaking), or None at the end
    of the source (a playlist that does not loop). It never blocks longer than timeout_s.
    `live` sources (mic) deliver in real time and drive the capture clock; the others
    (files, stream) can be read ahead and are paced by the consumer.
    """

    live: bool = False

    def open(self) -> None:
        """Acquire devices/sockets. Raises AudioSourceError with a one-line reason."""

    @abc.abstractmethod
    def read(self, timeout_s: float) -> AudioChunk | None | type[SILENT]:
        ...

    def close(self) -> None:
        """Release everything; safe to call twice."""

    def flush(self) -> None:
        """Barge-in: drop everything buffered but not yet read (stream: current utterance)."""

    def status(self) -> str:
        """One short line for the status report (e.g. 'mic: reopening (device gone)')."""
        return type(self).__name__

    def __enter__(self) -> AudioSource:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SILENT:
    """Marker returned by read(): nothing to play right now, the source is still there."""
