"""Request bodies for the control socket: Content-Length and chunked readers, a size limit,
and the canonical WAV header that lets raw PCM take the WAV path of StreamSource.feed.

Readers return short reads as data arrives (read1), so streamed speech is queued as it
comes instead of waiting for full buffers.
"""
from __future__ import annotations

import struct

from runtime.audio.pcm import SAMPLE_WIDTHS

#: Longest chunk-size or trailer line accepted: a longer one is not HTTP.
_MAX_LINE = 1024
_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_UNKNOWN_SIZE = 0xFFFFFFFF


class BadRequest(Exception):
    """A request the control socket refuses: `code` (4xx/5xx) and a one-line reason."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


class LengthReader:
    """Exactly `length` bytes of a Content-Length body; `error` says if it ended early."""

    def __init__(self, raw, length: int) -> None:
        self._raw, self._left = raw, length
        self.error: str | None = None

    def read(self, count: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if count < 0 else min(count, self._left)
        data = self._raw.read1(want) if hasattr(self._raw, "read1") else self._raw.read(want)
        if not data:
            self.error = f"{self._left} bytes short of Content-Length"
            self._left = 0
        self._left -= len(data)
        return data


class ChunkedReader:
    """A Transfer-Encoding: chunked body. A malformed chunk ends the body with `error` set."""

    def __init__(self, raw) -> None:
        self._raw = raw
        self._left = 0  # bytes left in the current chunk
        self._done = False
        self.error: str | None = None

    def _line(self) -> bytes:
        line = self._raw.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE or not line.endswith(b"\n"):
            raise ValueError("chunk line too long or connection closed")
        return line.strip()

    def _next_chunk(self) -> None:
        size_text = self._line().split(b";")[0].strip()  # chunk extensions are ignored
        # Hex digits only: Python's int() would also take "0x2c", "2_c" and " +2c".
        if not 1 <= len(size_text) <= 15 or size_text.strip(b"0123456789abcdefABCDEF"):
            raise ValueError(f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            while self._line():  # trailers up to the blank line
                pass
            self._done = True
        self._left = size

    def read(self, count: int = -1) -> bytes:
        try:
            while not self._done and self._left == 0:
                self._next_chunk()
            if self._done:
                return b""
            want = self._left if count < 0 else min(count, self._left)
            data = self._raw.read1(want) if hasattr(self._raw, "read1") else self._raw.read(want)
            if not data:
                raise ValueError("connection closed inside a chunk")
            self._left -= len(data)
            if self._left == 0 and self._raw.read(2) != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
            return data
        except ValueError as err:
            self.error, self._done = str(err), True
            return b""


class LimitedReader:
    """Passes at most `limit` bytes through; `truncated` tells whether more was offered."""

    def __init__(self, inner, limit: int) -> None:
        self._inner, self._limit = inner, limit
        self.count = 0
        self.truncated = False

    def read(self, count: int = -1) -> bytes:
        room = self._limit - self.count
        if room <= 0:
            # One more byte tells "exactly at the limit" from "over it".
            if not self.truncated and self._inner.read(1):
                self.truncated = True
            return b""
        data = self._inner.read(room if count < 0 else min(count, room))
        self.count += len(data)
        return data


def wav_header(rate: int, fmt: str, channels: int, data_bytes: int | None = None) -> bytes:
    """A canonical 44/46-byte WAV header; data_bytes None = unknown (read to the end)."""
    width = SAMPLE_WIDTHS[fmt]
    tag = _WAVE_FORMAT_IEEE_FLOAT if fmt.startswith("f") else _WAVE_FORMAT_PCM
    block_align = width * channels
    fmt_body = struct.pack("<HHIIHH", tag, channels, rate, rate * block_align, block_align,
                           width * 8)
    size = _UNKNOWN_SIZE if data_bytes is None else data_bytes
    riff_size = _UNKNOWN_SIZE if data_bytes is None else 4 + 8 + len(fmt_body) + 8 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt_body)) + fmt_body + b"data" + struct.pack("<I", size))
