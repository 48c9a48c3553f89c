"""WAV files: our own RIFF parsing (the stdlib `wave` module reads neither float nor
WAVE_FORMAT_EXTENSIBLE), streaming reads, and a writer for tests and the record sink.

The header parser reads sequentially from any file-like object, so the same code reads a
file on disk and a WAV pushed through the speech socket.
"""
from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .pcm import MAX_CHANNELS, SAMPLE_WIDTHS, RawPcmDecoder, decode_raw_pcm, encode_pcm

__all__ = [
    "MAX_RATE", "MIN_RATE", "RawPcmDecoder", "WavError", "WavFormat", "WavReader", "WavWriter",
    "decode_raw_pcm", "read_wav", "read_wav_header", "write_wav",
]

log = logging.getLogger(__name__)

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
#: The 14 bytes after the format tag in every standard KSDATAFORMAT_SUBTYPE_* GUID.
_SUBFORMAT_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_KNOWN_TAGS = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM",
               0x0055: "MP3"}
MIN_RATE = 8000
MAX_RATE = 96000
#: Data sizes that streaming writers put in the header when the length is not known yet.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
#: A fmt chunk is 16 to 40 bytes; a larger one means the header is garbage.
_MAX_FMT_BYTES = 1024
#: Chunks skipped before `data` (LIST, fact, bext, ...); more means garbage.
_MAX_CHUNKS = 64

# writer subtype -> (sample format, bits, format tag)
_SUBTYPES = {
    "u8": ("u8", 8, WAVE_FORMAT_PCM),
    "pcm16": ("s16le", 16, WAVE_FORMAT_PCM),
    "pcm24": ("s24le", 24, WAVE_FORMAT_PCM),
    "pcm32": ("s32le", 32, WAVE_FORMAT_PCM),
    "float32": ("f32le", 32, WAVE_FORMAT_IEEE_FLOAT),
    "float64": ("f64le", 64, WAVE_FORMAT_IEEE_FLOAT),
}
_PCM_FORMATS = {8: "u8", 16: "s16le", 24: "s24le", 32: "s32le"}
_FLOAT_FORMATS = {32: "f32le", 64: "f64le"}


class WavError(Exception):
    """A WAV file or stream that cannot be read; the message is one line naming the source."""


@dataclass(frozen=True)
class WavFormat:
    sample_format: str  # a key of pcm.SAMPLE_WIDTHS
    channels: int
    rate: int

    @property
    def frame_bytes(self) -> int:
        return SAMPLE_WIDTHS[self.sample_format] * self.channels


def _read_exact(stream: BinaryIO, count: int) -> bytes:
    """Up to `count` bytes; fewer only at end of stream (sockets return short reads)."""
    parts = []
    while count > 0:
        part = stream.read(count)
        if not part:
            break
        parts.append(part)
        count -= len(part)
    return b"".join(parts)


def parse_fmt_chunk(body: bytes, name: str) -> WavFormat:
    if len(body) < 16:
        raise WavError(f"{name}: fmt chunk too short ({len(body)} bytes)")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise WavError(f"{name}: WAVE_FORMAT_EXTENSIBLE fmt chunk too short "
                           f"({len(body)} bytes)")
        tag = struct.unpack("<H", body[24:26])[0]
        if body[26:40] != _SUBFORMAT_GUID_TAIL:
            raise WavError(f"{name}: unsupported WAVE_FORMAT_EXTENSIBLE subformat "
                           f"{body[24:40].hex()}")
    if tag == WAVE_FORMAT_PCM:
        sample_format = _PCM_FORMATS.get(bits)
    elif tag == WAVE_FORMAT_IEEE_FLOAT:
        sample_format = _FLOAT_FORMATS.get(bits)
    else:
        what = _KNOWN_TAGS.get(tag, "unknown")
        raise WavError(f"{name}: unsupported format tag 0x{tag:04x} ({what}); "
                       "PCM or IEEE float only")
    if sample_format is None:
        kind = "PCM" if tag == WAVE_FORMAT_PCM else "float"
        raise WavError(f"{name}: unsupported {kind} sample size {bits} bits")
    if not 1 <= channels <= MAX_CHANNELS:
        raise WavError(f"{name}: {channels} channels (1 to {MAX_CHANNELS} supported)")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise WavError(f"{name}: sample rate {rate} Hz outside {MIN_RATE} to {MAX_RATE}")
    wav_format = WavFormat(sample_format, channels, rate)
    if block_align != wav_format.frame_bytes:
        # Some writers get block_align wrong; the sample size and channel count decide.
        log.warning("%s: block_align %d does not match %d channels of %d bits; using %d",
                    name, block_align, channels, bits, wav_format.frame_bytes)
    return wav_format


def _is_chunk_id(chunk_id: bytes) -> bool:
    return len(chunk_id) == 4 and all(32 <= byte < 127 for byte in chunk_id)


def read_wav_header(stream: BinaryIO, name: str) -> tuple[WavFormat, int | None]:
    """Reads RIFF/WAVE up to the start of the sample data.

    Returns the format and the declared data size in bytes, or None when the writer did
    not know it (0 or 0xFFFFFFFF: a streamed WAV; read to the end). Leaves `stream` at the
    first sample. Raises WavError naming `name`.
    """
    riff = _read_exact(stream, 12)
    if not riff:
        raise WavError(f"{name}: empty file")
    if riff[:4] != b"RIFF":
        if riff[:4] in (b"RIFX", b"RF64"):
            raise WavError(f"{name}: {riff[:4].decode()} files are not supported (RIFF only)")
        raise WavError(f"{name}: not a RIFF/WAVE file (starts with {riff[:4]!r})")
    if len(riff) < 12:
        raise WavError(f"{name}: truncated header ({len(riff)} bytes)")
    if riff[8:12] != b"WAVE":
        raise WavError(f"{name}: RIFF file of type {riff[8:12]!r}, not WAVE")
    seekable = _seekable(stream)
    wav_format: WavFormat | None = None
    offset = 12
    previous_odd = False
    for _ in range(_MAX_CHUNKS):
        prefix = b""
        if previous_odd:
            # An odd-sized chunk is followed by a zero pad byte; some writers omit it, and
            # then this byte already starts the next chunk id.
            pad = _read_exact(stream, 1)
            prefix = pad if pad not in (b"", b"\0") else b""
            offset += len(pad) - len(prefix)
        header = prefix + _read_exact(stream, 8 - len(prefix))
        if len(header) < 8:
            missing = "fmt chunk" if wav_format is None else "data chunk"
            raise WavError(f"{name}: truncated header (no {missing})")
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        if not _is_chunk_id(chunk_id):
            raise WavError(f"{name}: garbage chunk id {chunk_id!r} at byte {offset}")
        offset += 8
        if chunk_id == b"data":
            if wav_format is None:
                raise WavError(f"{name}: data chunk before the fmt chunk")
            return wav_format, None if size in _UNKNOWN_SIZES else size
        if chunk_id == b"fmt ":
            if size > _MAX_FMT_BYTES:
                raise WavError(f"{name}: fmt chunk of {size} bytes is not a WAV header")
            body = _read_exact(stream, size)
            if len(body) < size:
                raise WavError(f"{name}: truncated fmt chunk")
            wav_format = parse_fmt_chunk(body, name)
        else:
            _skip(stream, size, seekable, name, chunk_id)
        offset += size
        previous_odd = bool(size & 1)
    raise WavError(f"{name}: no data chunk in the first {_MAX_CHUNKS} chunks")


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _skip(stream: BinaryIO, count: int, seekable: bool, name: str, chunk_id: bytes) -> None:
    if seekable:
        stream.seek(count, os.SEEK_CUR)
        return
    while count > 0:
        part = stream.read(min(count, 65536))
        if not part:
            raise WavError(f"{name}: truncated {chunk_id.decode('ascii')} chunk")
        count -= len(part)


class WavReader:
    """Reads a WAV file block by block: `read(frames)` until it returns 0 frames.

    Malformed headers raise WavError at construction. A data chunk shorter than declared
    (an interrupted copy) is read as far as it goes, with a warning.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.name = str(path)
        try:
            self._file: BinaryIO = open(self.path, "rb")
        except OSError as exc:
            raise WavError(f"{self.name}: cannot open: {exc.strerror or exc}") from None
        try:
            self.format, declared = read_wav_header(self._file, self.name)
            available = os.fstat(self._file.fileno()).st_size - self._file.tell()
        except BaseException:
            self._file.close()
            raise
        if declared is not None and declared > available:
            log.warning("%s: data chunk declares %d bytes, the file holds %d: "
                        "playing what is there", self.name, declared, available)
        data_bytes = available if declared is None else min(declared, available)
        self.frames = data_bytes // self.format.frame_bytes
        self._frames_left = self.frames

    @property
    def rate(self) -> int:
        return self.format.rate

    @property
    def channels(self) -> int:
        return self.format.channels

    @property
    def duration_s(self) -> float:
        return self.frames / self.format.rate

    def read(self, max_frames: int) -> np.ndarray:
        """float32 (n, channels), n <= max_frames; n == 0 at the end."""
        count = max(0, min(max_frames, self._frames_left))
        data = _read_exact(self._file, count * self.format.frame_bytes)
        samples = decode_raw_pcm(data, self.format.sample_format, self.format.channels)
        self._frames_left = 0 if len(samples) < count else self._frames_left - count
        return samples

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> WavReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """The whole file: float32 (frames, channels) in [-1, 1] and the rate in Hz."""
    with WavReader(path) as reader:
        return reader.read(reader.frames), reader.rate


class WavWriter:
    """Writes a WAV file incrementally; sizes are patched on close (a crash leaves a file
    whose header says 0 bytes, which WavReader reads to the end)."""

    def __init__(self, path: Path | str, rate: int, channels: int, subtype: str = "pcm16",
                 extensible: bool = False) -> None:
        if subtype not in _SUBTYPES:
            raise ValueError(f"unknown WAV subtype {subtype!r}; known: {', '.join(_SUBTYPES)}")
        self._sample_format, bits, tag = _SUBTYPES[subtype]
        self.rate, self.channels = rate, channels
        self._data_bytes = 0
        self._file: BinaryIO = open(path, "wb")
        block_align = channels * bits // 8
        base = struct.pack("<HHIIHH", WAVE_FORMAT_EXTENSIBLE if extensible else tag, channels,
                           rate, rate * block_align, block_align, bits)
        if extensible:
            channel_mask = {1: 0x4, 2: 0x3}.get(channels, 0)
            fmt_body = base + struct.pack("<HHI", 22, bits, channel_mask) \
                + struct.pack("<H", tag) + _SUBFORMAT_GUID_TAIL
        elif tag == WAVE_FORMAT_IEEE_FLOAT:
            fmt_body = base + struct.pack("<H", 0)  # cbSize: non-PCM fmt chunks are 18 bytes
        else:
            fmt_body = base
        header = b"RIFF\0\0\0\0WAVE" + b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
        if tag == WAVE_FORMAT_IEEE_FLOAT and not extensible:
            # The spec wants a fact chunk for non-PCM data; its frame count is patched on close.
            self._fact_offset = len(header) + 8
            header += b"fact" + struct.pack("<II", 4, 0)
        else:
            self._fact_offset = None
        self._file.write(header + b"data\0\0\0\0")
        self._data_offset = len(header) + 8

    def write(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, np.float32)
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {samples.shape[1]}")
        data = encode_pcm(samples, self._sample_format)
        self._file.write(data)
        self._data_bytes += len(data)

    def close(self) -> None:
        if self._file.closed:
            return
        if self._data_bytes & 1:
            self._file.write(b"\0")  # RIFF chunks are padded to even sizes
        total = self._file.tell()
        self._file.seek(4)
        self._file.write(struct.pack("<I", total - 8))
        if self._fact_offset is not None:
            frames = self._data_bytes // (SAMPLE_WIDTHS[self._sample_format] * self.channels)
            self._file.seek(self._fact_offset)
            self._file.write(struct.pack("<I", frames))
        self._file.seek(self._data_offset - 4)
        self._file.write(struct.pack("<I", self._data_bytes))
        self._file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_wav(path: Path | str, samples: np.ndarray, rate: int, subtype: str = "pcm16",
              extensible: bool = False) -> None:
    """samples: float32 (frames,) or (frames, channels) in [-1, 1] (clipped).
    subtype: u8, pcm16, pcm24, pcm32, float32 or float64."""
    samples = np.asarray(samples, np.float32)
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with WavWriter(path, rate, channels, subtype, extensible) as writer:
        writer.write(samples)


class PrefixedStream:
    """A stream with bytes already read (a sniffed magic number) put back in front."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix, self._stream = prefix, stream

    def read(self, count: int = -1) -> bytes:
        if count < 0:
            part, self._prefix = self._prefix, b""
            return part + self._stream.read()
        if self._prefix:
            part, self._prefix = self._prefix[:count], self._prefix[count:]
            return part
        return self._stream.read(count)
