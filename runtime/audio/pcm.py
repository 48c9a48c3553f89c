"""Sample codecs: little-endian PCM bytes <-> float32 frames, for WAV files and pushed streams."""
from __future__ import annotations

import numpy as np

#: Sample format name -> bytes per sample. f64le only occurs inside WAV files.
SAMPLE_WIDTHS = {"u8": 1, "s16le": 2, "s24le": 3, "s32le": 4, "f32le": 4, "f64le": 8}
#: Formats a client may push as headerless PCM (audio.stream.raw_format).
RAW_FORMATS = ("s16le", "s24le", "s32le", "f32le", "u8")
#: More channels than this in a header is taken as garbage, not as a real layout.
MAX_CHANNELS = 8


def check_format(fmt: str, channels: int) -> None:
    """Raises ValueError naming what is allowed."""
    if fmt not in SAMPLE_WIDTHS:
        raise ValueError(f"unknown sample format {fmt!r}; known: {', '.join(SAMPLE_WIDTHS)}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"channels must be 1 to {MAX_CHANNELS}, not {channels}")


def decode_raw_pcm(data: bytes | bytearray | memoryview, fmt: str, channels: int) -> np.ndarray:
    """Whole frames of PCM -> float32 (frames, channels) in [-1, 1].

    A trailing partial frame is ignored; `RawPcmDecoder` keeps it for the next call.
    """
    check_format(fmt, channels)
    width = SAMPLE_WIDTHS[fmt]
    frames = len(data) // (width * channels)
    count = frames * channels
    if fmt == "s16le":
        ints = np.frombuffer(data, "<i2", count=count)
        samples = ints.astype(np.float32) * np.float32(1 / 32768)
    elif fmt == "s24le":
        # Widen each 3-byte sample to 4 bytes with a zero low byte, then an arithmetic
        # shift sign-extends it: one vectorised pass instead of per-byte arithmetic.
        raw = np.frombuffer(data, np.uint8, count=count * 3).reshape(-1, 3)
        wide = np.zeros((count, 4), np.uint8)
        wide[:, 1:] = raw
        ints = wide.view("<i4").reshape(-1) >> 8
        samples = ints.astype(np.float32) * np.float32(1 / 8388608)
    elif fmt == "s32le":
        ints = np.frombuffer(data, "<i4", count=count)
        samples = (ints * (1 / 2147483648)).astype(np.float32)
    elif fmt == "u8":
        ints = np.frombuffer(data, np.uint8, count=count)
        samples = (ints.astype(np.float32) - np.float32(128)) * np.float32(1 / 128)
    else:
        floats = np.frombuffer(data, "<f4" if fmt == "f32le" else "<f8", count=count)
        # Float files may hold NaN or overshoot; everything downstream assumes [-1, 1].
        samples = np.clip(np.nan_to_num(floats.astype(np.float32)), -1.0, 1.0)
    return samples.reshape(frames, channels)


def encode_pcm(samples: np.ndarray, fmt: str) -> bytes:
    """float32 (frames, channels) or (frames,) -> interleaved little-endian PCM bytes."""
    check_format(fmt, 1)
    flat = np.clip(np.asarray(samples, np.float64).reshape(-1), -1.0, 1.0)
    if fmt == "u8":
        return np.clip(np.round(flat * 128) + 128, 0, 255).astype(np.uint8).tobytes()
    if fmt == "s16le":
        return np.clip(np.round(flat * 32768), -32768, 32767).astype("<i2").tobytes()
    if fmt == "s24le":
        ints = np.clip(np.round(flat * 8388608), -8388608, 8388607).astype("<i4")
        return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    if fmt == "s32le":
        return np.clip(np.round(flat * 2147483648), -2147483648, 2147483647).astype("<i4").tobytes()
    return flat.astype("<f4" if fmt == "f32le" else "<f8").tobytes()


class RawPcmDecoder:
    """Decodes a byte stream cut at arbitrary points; a partial frame waits for the next call."""

    def __init__(self, fmt: str, channels: int) -> None:
        check_format(fmt, channels)
        self.fmt = fmt
        self.channels = channels
        self.frame_bytes = SAMPLE_WIDTHS[fmt] * channels
        self._pending = b""

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame held back (dropped if the stream ends here)."""
        return len(self._pending)

    def decode(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        if self._pending:
            data = self._pending + bytes(data)
        usable = len(data) - len(data) % self.frame_bytes
        self._pending = bytes(data[usable:])
        return decode_raw_pcm(memoryview(data)[:usable], self.fmt, self.channels)

    def reset(self) -> None:
        self._pending = b""
