"""WAV reading/writing and raw PCM decoding."""
from __future__ import annotations

import logging
import struct

import numpy as np
import pytest

from runtime.audio.pcm import RAW_FORMATS, encode_pcm
from runtime.audio.wav import (RawPcmDecoder, WavError, WavReader, decode_raw_pcm, read_wav,
                               write_wav)

# subtype -> largest error a round trip may add
TOLERANCE = {"u8": 1 / 128, "pcm16": 1 / 32768, "pcm24": 1 / 2 ** 23, "pcm32": 1e-7,
             "float32": 0.0, "float64": 0.0}


def _signal(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (frames, channels)).astype(np.float32)


def _fmt_body(tag=1, channels=1, rate=16000, bits=16, block_align=None) -> bytes:
    block_align = channels * bits // 8 if block_align is None else block_align
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block_align, block_align, bits)


def _riff(*chunks: tuple[bytes, bytes], pad: bool = True) -> bytes:
    body = b"WAVE"
    for chunk_id, data in chunks:
        body += chunk_id + struct.pack("<I", len(data)) + data
        if pad and len(data) & 1:
            body += b"\0"
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("subtype", sorted(TOLERANCE))
@pytest.mark.parametrize("extensible", [False, True])
@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip_every_format(tmp_path, subtype, extensible, channels):
    samples = _signal(1001, channels)  # odd length: u8 mono needs a pad byte
    path = tmp_path / "x.wav"
    write_wav(path, samples, 22050, subtype, extensible=extensible)
    decoded, rate = read_wav(path)
    assert rate == 22050
    assert decoded.dtype == np.float32 and decoded.shape == samples.shape
    assert np.max(np.abs(decoded - samples)) <= TOLERANCE[subtype] + 1e-7
    assert np.max(np.abs(decoded)) <= 1.0


@pytest.mark.parametrize("rate", [8000, 96000])
@pytest.mark.parametrize("subtype", ["pcm16", "float32"])
def test_rate_extremes(tmp_path, rate, subtype):
    samples = _signal(rate // 10, 2)
    write_wav(tmp_path / "x.wav", samples, rate, subtype, extensible=True)
    decoded, got_rate = read_wav(tmp_path / "x.wav")
    assert got_rate == rate and decoded.shape == samples.shape


def test_more_channels_are_kept(tmp_path):
    samples = _signal(100, 4)
    write_wav(tmp_path / "x.wav", samples, 16000)
    decoded, _ = read_wav(tmp_path / "x.wav")
    assert decoded.shape == (100, 4)


def test_streaming_blocks_equal_one_shot(tmp_path):
    samples = _signal(10_000, 2)
    write_wav(tmp_path / "x.wav", samples, 48000, "pcm24")
    whole, _ = read_wav(tmp_path / "x.wav")
    with WavReader(tmp_path / "x.wav") as reader:
        assert reader.frames == 10_000 and reader.channels == 2
        blocks = []
        while len(block := reader.read(777)):
            blocks.append(block)
    assert np.array_equal(np.concatenate(blocks), whole)


def test_float_file_is_clipped(tmp_path):
    path = tmp_path / "x.wav"
    data = np.array([1.5, -2.0, np.nan, 0.25], "<f4").tobytes()
    path.write_bytes(_riff((b"fmt ", _fmt_body(3, 1, 16000, 32)), (b"data", data)))
    decoded, _ = read_wav(path)
    assert decoded[:, 0].tolist() == [1.0, -1.0, 0.0, 0.25]


def test_odd_chunk_with_and_without_pad_byte(tmp_path):
    pcm = encode_pcm(_signal(50, 1), "s16le")
    for pad in (True, False):
        path = tmp_path / f"pad{pad}.wav"
        path.write_bytes(_riff((b"fmt ", _fmt_body()), (b"LIST", b"odd!!"), (b"data", pcm),
                               pad=pad))
        decoded, _ = read_wav(path)
        assert decoded.shape == (50, 1)


def test_streamed_size_reads_to_the_end_and_trailing_chunks_are_ignored(tmp_path):
    pcm = encode_pcm(_signal(64, 1), "s16le")
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(_riff((b"fmt ", _fmt_body())) + b"data" + struct.pack("<I", 0xFFFFFFFF)
                         + pcm)
    assert read_wav(streamed)[0].shape == (64, 1)
    trailing = tmp_path / "trailing.wav"
    trailing.write_bytes(_riff((b"fmt ", _fmt_body()), (b"data", pcm), (b"LIST", b"INFOabcd")))
    assert read_wav(trailing)[0].shape == (64, 1)


def test_short_data_chunk_plays_what_is_there(tmp_path, caplog):
    path = tmp_path / "cut.wav"
    write_wav(path, _signal(1000, 1), 16000)
    path.write_bytes(path.read_bytes()[:-500])  # an interrupted copy: 250 frames missing
    with caplog.at_level(logging.WARNING):
        decoded, _ = read_wav(path)
    assert decoded.shape == (750, 1)
    assert "cut.wav" in caplog.text and "declares" in caplog.text


def test_wrong_block_align_warns_and_reads(tmp_path, caplog):
    path = tmp_path / "x.wav"
    path.write_bytes(_riff((b"fmt ", _fmt_body(block_align=7)), (b"data", b"\0\0" * 10)))
    with caplog.at_level(logging.WARNING):
        assert read_wav(path)[0].shape == (10, 1)
    assert "block_align" in caplog.text


MALFORMED = {
    "empty": (b"", "empty"),
    "garbage": (b"hello, this is not audio at all" * 4, "not a RIFF"),
    "truncated": (None, "truncated"),
    "riff_nonsense": (b"RIFF" + bytes(range(200, 250)), "not WAVE"),
    "wrong_tag": (_riff((b"fmt ", _fmt_body(tag=2)), (b"data", b"\0" * 8)), "0x0002"),
    "zero_channels": (_riff((b"fmt ", _fmt_body(channels=0)), (b"data", b"")), "0 channels"),
    "rate_low": (_riff((b"fmt ", _fmt_body(rate=4000)), (b"data", b"")), "4000"),
    "rate_high": (_riff((b"fmt ", _fmt_body(rate=192000)), (b"data", b"")), "192000"),
    "bits_12": (_riff((b"fmt ", _fmt_body(bits=12, block_align=2)), (b"data", b"")), "12 bits"),
    "rifx": (b"RIFX" + b"\0" * 40, "RIFX"),
    "data_first": (_riff((b"data", b"\0\0"), (b"fmt ", _fmt_body())), "before the fmt"),
    "no_data": (_riff((b"fmt ", _fmt_body())), "no data chunk"),
    "garbage_chunk": (_riff((b"fmt ", _fmt_body())) + b"\x01\x02\x03\x04\0\0\0\0", "garbage"),
    "bad_subformat": (_riff((b"fmt ", struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 32000, 2, 16,
                                                  22, 16, 4) + b"\x01\x00" + b"\xff" * 14),
                            (b"data", b"")), "subformat"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_raise_one_line_naming_the_file(tmp_path, case):
    content, expected = MALFORMED[case]
    path = tmp_path / f"{case}.wav"
    if content is None:
        write_wav(path, _signal(100, 1), 16000)
        content = path.read_bytes()[:30]
    path.write_bytes(content)
    with pytest.raises(WavError) as error:
        read_wav(path)
    message = str(error.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(WavError, match="nope.wav: cannot open"):
        WavReader(tmp_path / "nope.wav")


@pytest.mark.parametrize("fmt", RAW_FORMATS + ("f64le",))
@pytest.mark.parametrize("channels", [1, 2])
def test_raw_decoder_keeps_partial_frames(fmt, channels):
    samples = _signal(301, channels, seed=3)
    data = encode_pcm(samples, fmt)
    whole = decode_raw_pcm(data, fmt, channels)
    assert whole.shape == (301, channels)
    decoder = RawPcmDecoder(fmt, channels)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.integers(0, len(data), 25))
    parts = [decoder.decode(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert decoder.pending_bytes == 0
    assert np.array_equal(np.concatenate(parts), whole)
    assert decoder.decode(data[:5]).shape[0] == 5 // decoder.frame_bytes
    assert decoder.pending_bytes == 5 % decoder.frame_bytes


def test_raw_values_are_exact():
    assert decode_raw_pcm(b"\x00\x80\xff\x7f", "s16le", 1)[:, 0].tolist() == [-1.0, 32767 / 32768]
    assert decode_raw_pcm(b"\x00\x80\xff", "u8", 1)[:, 0].tolist() == [-1.0, 0.0, 127 / 128]
    assert decode_raw_pcm(b"\x00\x00\x80\xff\xff\xff", "s24le", 1)[:, 0].tolist() == [
        -1.0, -1 / 8388608]
    with pytest.raises(ValueError):
        RawPcmDecoder("s8", 1)
