"""The pushed-speech socket source, against real AF_UNIX sockets."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.audio.pcm import encode_pcm
from runtime.audio.source import SILENT, AudioSourceError
from runtime.audio.stream import StreamSource
from runtime.audio.wav import write_wav


@pytest.fixture
def socket_path():
    # tmp_path can exceed the 108-byte AF_UNIX path limit; use a short directory.
    directory = Path(tempfile.mkdtemp(prefix="em-", dir="/tmp"))
    yield directory / "speech.sock"
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def make_source(socket_path):
    sources = []

    def make(**settings) -> StreamSource:
        settings.setdefault("prebuffer_ms", 0)
        source = StreamSource(socket_path, **settings)
        source.open()
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()
    assert not [t for t in threading.enumerate() if t.name == "speech-socket"]


def _connect(path: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    return client


def _ramp(frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.9, 0.9, (frames, channels)).astype(np.float32)


def _collect(source: StreamSource, idle_reads: int = 20, timeout_s: float = 0.05) -> list:
    """Chunks until `idle_reads` reads in a row came back SILENT (a second: a busy box can
    start a client's thread late)."""
    chunks, idle = [], 0
    deadline = time.monotonic() + 10
    while idle < idle_reads and time.monotonic() < deadline:
        chunk = source.read(timeout_s)
        if chunk is SILENT:
            idle += 1
        else:
            idle = 0
            chunks.append(chunk)
    return chunks


def _by_utterance(chunks) -> dict[int, tuple[int, np.ndarray]]:
    merged: dict[int, list] = {}
    for chunk in chunks:
        merged.setdefault(chunk.utterance, [chunk.rate, []])[1].append(chunk.samples)
    return {key: (rate, np.concatenate(parts)) for key, (rate, parts) in merged.items()}


def _wav_bytes(samples: np.ndarray, rate: int, subtype: str = "pcm16") -> bytes:
    buffer = io.BytesIO()
    directory = tempfile.mkdtemp()
    path = Path(directory) / "x.wav"
    write_wav(path, samples, rate, subtype)
    data = path.read_bytes()
    shutil.rmtree(directory)
    buffer.write(data)
    return buffer.getvalue()


def test_raw_then_wav_both_heard_then_silent(make_source, socket_path):
    source = make_source(raw_rate=16000, raw_format="s16le", raw_channels=1)
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660
    assert source.status() == "stream: idle"
    raw = _ramp(4800)
    wav = _ramp(4410, 2, seed=1)
    with _connect(socket_path) as client:
        # Mid-utterance disconnect: the last sample is cut in half.
        client.sendall(encode_pcm(raw, "s16le") + b"\x01")
    with _connect(socket_path) as client:
        client.sendall(_wav_bytes(wav, 22050, "pcm24"))
    heard = _by_utterance(_collect(source))
    assert sorted(heard) == [1, 2]
    rate, samples = heard[1]
    assert rate == 16000 and samples.shape == (4800, 1)
    assert np.max(np.abs(samples - raw)) <= 1 / 32768
    rate, samples = heard[2]
    assert rate == 22050 and samples.shape == (4410, 2)
    assert np.max(np.abs(samples - wav)) <= 1 / 2 ** 23 + 1e-7
    assert source.read(0.01) is SILENT
    source.close()
    assert not socket_path.exists()


def test_clients_queue_and_play_in_order(make_source, socket_path):
    source = make_source()
    first, second = _connect(socket_path), _connect(socket_path)
    second.sendall(encode_pcm(np.full(800, 0.25, np.float32), "s16le"))
    second.close()
    first.sendall(encode_pcm(np.full(1600, -0.5, np.float32), "s16le"))
    first.close()
    heard = _by_utterance(_collect(source))
    assert [len(heard[key][1]) for key in sorted(heard)] == [1600, 800]
    assert heard[1][1][0, 0] == -0.5 and heard[2][1][0, 0] == 0.25


def test_connection_order_holds_when_the_first_clients_thread_is_late(make_source, socket_path,
                                                                      monkeypatch):
    """Turns follow the order clients were accepted, not the order their threads run."""
    import runtime.system.peer_access as peer_access
    allowed, calls, second_checked = peer_access.peer_allowed, [], threading.Event()

    def first_one_late(connection):
        calls.append(None)
        if len(calls) == 1:  # the second client's thread gets ahead of the first's
            second_checked.wait(5)
        else:
            second_checked.set()
        return allowed(connection)

    monkeypatch.setattr(peer_access, "peer_allowed", first_one_late)
    source = make_source()
    first = _connect(socket_path)
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)  # accepted: its ticket is taken before the second connects
    second = _connect(socket_path)
    second.sendall(encode_pcm(np.full(800, 0.25, np.float32), "s16le"))
    second.close()
    first.sendall(encode_pcm(np.full(1600, -0.5, np.float32), "s16le"))
    first.close()
    heard = _by_utterance(_collect(source))
    assert [heard[key][1][0, 0] for key in sorted(heard)] == [-0.5, 0.25]


def test_arrival_turns_go_by_ticket_whatever_order_they_are_released_in():
    from runtime.audio.turns import ArrivalTurns
    turns = ArrivalTurns()
    tickets = [turns.take() for _ in range(4)]
    assert turns.wait(tickets[0], 0) and not turns.wait(tickets[1], 0)
    turns.release(tickets[2])  # given back early (a refused client): no turn skipped
    assert not turns.wait(tickets[1], 0) and not turns.wait(tickets[3], 0)
    turns.release(tickets[0])
    assert turns.wait(tickets[1], 0)
    turns.release(tickets[1])
    turns.release(tickets[1])  # twice: nothing more happens
    assert turns.wait(tickets[3], 0) and not turns.wait(turns.take(), 0)


def test_refused_client_gives_its_turn_to_the_next(make_source, socket_path, monkeypatch):
    import runtime.system.peer_access as peer_access
    allowed, calls = peer_access.peer_allowed, []

    def refuse_first(connection):
        calls.append(None)
        return (False, "pid 1 uid 12345") if len(calls) == 1 else allowed(connection)

    monkeypatch.setattr(peer_access, "peer_allowed", refuse_first)
    source = make_source()
    refused = _connect(socket_path)
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    with _connect(socket_path) as client:
        client.sendall(encode_pcm(np.full(800, 0.25, np.float32), "s16le"))
    refused.close()
    heard = _by_utterance(_collect(source))
    assert [len(samples) for _, samples in heard.values()] == [800]


def test_back_pressure_blocks_the_client_and_drops_nothing(make_source, socket_path):
    source = make_source(raw_rate=48000, raw_channels=2, max_buffer_s=0.25)
    samples = _ramp(48000 * 5, 2, seed=2)  # 960 kB: more than the socket buffers hold
    payload = encode_pcm(samples, "s16le")
    done = threading.Event()
    client = _connect(socket_path)

    def send() -> None:
        client.sendall(payload)
        client.close()
        done.set()

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.3)
    assert not done.is_set(), "the client should be held back, not drained into memory"
    _head, buffered_s = source._buffer.snapshot()
    assert buffered_s < 0.25 + 0.1
    assert "buffering" in source.status() or "playing" in source.status()
    heard = _by_utterance(_collect(source))
    sender.join(timeout=5)
    assert done.is_set()
    assert np.array_equal(heard[1][1], np.round(samples * 32768).clip(-32768, 32767) / 32768)


def test_prebuffer_holds_an_utterance_back(make_source, socket_path):
    source = make_source(prebuffer_ms=100)
    with _connect(socket_path) as client:
        client.sendall(encode_pcm(np.zeros(800), "s16le"))  # 50 ms
        time.sleep(0.05)
        assert source.read(0.05) is SILENT
        assert source.status() == "stream: buffering (client 1)"
        client.sendall(encode_pcm(np.zeros(1600), "s16le"))  # now 150 ms
        chunk = source.read(1.0)
        assert chunk is not SILENT and chunk.frames == 320
        assert source.status().startswith("stream: playing (client 1")
    # A short utterance plays once its client has closed, prebuffer or not.
    with _connect(socket_path) as client:
        client.sendall(encode_pcm(np.zeros(160), "s16le"))
    heard = _by_utterance(_collect(source))
    assert len(heard[2][1]) == 160


def test_flush_drops_buffered_audio_and_closes_the_client(make_source, socket_path):
    source = make_source(raw_rate=48000, raw_channels=2, max_buffer_s=0.25)
    client = _connect(socket_path)
    client.settimeout(5)
    errors = []

    def send() -> None:
        try:
            client.sendall(encode_pcm(_ramp(48000 * 5, 2), "s16le"))
        except OSError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert source.read(1.0) is not SILENT
    source.flush()
    sender.join(timeout=5)
    assert not sender.is_alive() and errors, "the flushed client must be cut off"
    client.close()
    assert source.read(0.05) is SILENT
    # The next client plays normally.
    with _connect(socket_path) as again:
        again.sendall(encode_pcm(np.full((480, 2), 0.5), "s16le"))
    heard = _by_utterance(_collect(source))
    assert list(heard) == [2] and len(heard[2][1]) == 480


def test_garbage_header_is_logged_and_the_next_client_plays(make_source, socket_path, caplog):
    source = make_source()
    with caplog.at_level(logging.WARNING):
        with _connect(socket_path) as client:
            client.sendall(b"RIFF" + bytes(range(256)))
            assert client.recv(10) == b""  # closed by the source
        with _connect(socket_path) as client:
            client.sendall(encode_pcm(np.zeros(320), "s16le"))
        heard = _by_utterance(_collect(source))
    assert "client 1: bad WAV header" in caplog.text
    assert list(heard) == [2]


def test_streamed_wav_with_unknown_size(make_source, socket_path):
    source = make_source()
    samples = _ramp(1000)
    header = bytearray(_wav_bytes(samples, 16000)[:44])
    header[40:44] = struct.pack("<I", 0xFFFFFFFF)
    with _connect(socket_path) as client:
        client.sendall(bytes(header))
        for start in range(0, 1000, 100):  # as a TTS engine streams while it speaks
            client.sendall(encode_pcm(samples[start:start + 100], "s16le"))
    heard = _by_utterance(_collect(source))
    assert heard[1][1].shape == (1000, 1)


def test_feed_takes_any_file_like_object(make_source):
    source = make_source()
    samples = _ramp(640, 2)
    ident = source.feed(io.BytesIO(_wav_bytes(samples, 8000, "float32")), label="http")
    heard = _by_utterance(_collect(source))
    assert heard[ident][0] == 8000 and np.array_equal(heard[ident][1], samples)


def test_stale_socket_is_replaced_and_a_live_one_refused(socket_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path))
    stale.close()  # the file stays behind, nobody listens: a crashed instance
    source = StreamSource(socket_path, socket_mode=0o600)
    source.open()
    try:
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        with pytest.raises(AudioSourceError, match="in use"):
            StreamSource(socket_path).open()
    finally:
        source.close()
    socket_path.write_text("not a socket")
    with pytest.raises(AudioSourceError, match="not a socket"):
        StreamSource(socket_path).open()


def test_close_while_a_client_is_blocked(socket_path):
    source = StreamSource(socket_path, raw_rate=48000, raw_channels=2, max_buffer_s=0.2,
                          prebuffer_ms=0)
    source.open()
    client = _connect(socket_path)
    client.settimeout(5)
    sender = threading.Thread(target=lambda: _send_quietly(client, b"\0" * 2_000_000))
    sender.start()
    time.sleep(0.1)
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < 1.0
    sender.join(timeout=5)
    client.close()
    assert not [t for t in threading.enumerate() if t.name == "speech-socket"]
    assert source.read(0.01) is None  # closed: buffered audio is gone


def _send_quietly(client: socket.socket, data: bytes) -> None:
    try:
        client.sendall(data)
    except OSError:
        pass


def test_bad_settings_are_rejected(socket_path):
    with pytest.raises(ValueError):
        StreamSource(socket_path, raw_format="mp3")
    with pytest.raises(ValueError):
        StreamSource(socket_path, raw_rate=4000)
    with pytest.raises(ValueError):
        StreamSource(socket_path, raw_channels=0)


def _played_utterances(source: StreamSource, want: int, within_s: float = 20.0) -> set:
    seen, deadline = set(), time.monotonic() + within_s
    while want not in seen and time.monotonic() < deadline:
        chunk = source.read(0.05)
        if chunk is not SILENT and chunk is not None:
            seen.add(chunk.utterance)
    return seen


def test_a_client_that_drips_bytes_gives_way_to_a_waiting_one(make_source, socket_path,
                                                              monkeypatch, caplog):
    from runtime.audio import stream as stream_module
    monkeypatch.setattr(stream_module, "STALLED_CLIENT_S", 0.3)
    source = make_source(client_idle_timeout_s=60.0)
    dripping = _connect(socket_path)
    stop = threading.Event()

    def drip():  # 2 bytes now and then: never idle long enough for the idle timeout
        with contextlib.suppress(OSError):
            while not stop.wait(0.6):
                dripping.sendall(b"\x00\x01")
    threading.Thread(target=drip, daemon=True).start()
    try:
        time.sleep(0.2)  # the dripping client has the turn
        good = _connect(socket_path)
        good.sendall(_wav_bytes(_ramp(8000), 16000))
        good.shutdown(socket.SHUT_WR)
        with caplog.at_level(logging.WARNING):
            seen = _played_utterances(source, want=2)
        assert 2 in seen, "the waiting client's speech never played"
        assert "client 1 sent nothing for" in caplog.text and "cutting it off" in caplog.text
        good.close()
    finally:
        stop.set()
        dripping.close()


def test_the_configured_idle_timeout_applies_to_the_speech_socket(tmp_path):
    from runtime.config.loader import load_config
    from runtime.pipeline.source_from_config import make_source as from_config
    config = load_config(None, ["audio.source=stream", "control.client_idle_timeout_s=2.5",
                                f"audio.stream.socket={tmp_path / 's.sock'}"])
    assert from_config(config.audio, config.control.client_idle_timeout_s) \
        .client_idle_timeout_s == 2.5


def test_a_header_only_client_is_dropped_after_the_idle_timeout(make_source, socket_path):
    source = make_source(client_idle_timeout_s=0.3)
    header_only = _connect(socket_path)
    wav = _wav_bytes(_ramp(16000), 16000)
    header_only.sendall(wav[:44])  # a header, then nothing ever
    later = _connect(socket_path)
    later.sendall(_wav_bytes(_ramp(1600), 16000))
    later.shutdown(socket.SHUT_WR)
    assert 2 in _played_utterances(source, want=2)
    header_only.close()
    later.close()


def test_the_pushed_buffer_is_bounded_in_bytes_and_empty_after_a_flush(make_source, socket_path):
    limit = 2 * 2**20
    source = make_source(max_buffer_s=600, max_buffer_bytes=limit, prebuffer_ms=5000)
    client = _connect(socket_path)
    # An endless 2-channel 96 kHz float stream: 600 s of it would be 460 MB.
    from runtime.service.control_http import wav_header
    header = wav_header(96000, "f32le", 2)  # no length: a stream that never ends
    stop = threading.Event()

    def push():
        block = np.full((4800, 2), 0.25, np.float32).tobytes()
        with contextlib.suppress(OSError):
            client.sendall(header)
            while not stop.is_set():
                client.sendall(block)
    threading.Thread(target=push, daemon=True).start()
    try:
        deadline = time.monotonic() + 10
        while source._buffer._bytes < limit and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # back pressure: the producer waits, the buffer does not grow
        held = source._buffer._bytes
        assert limit <= held <= limit + 2 * _READ_BYTES_MAX
        source.flush()
        assert source._buffer._bytes == 0
    finally:
        stop.set()
        client.close()


#: One read from the client is at most 8192 bytes of s16 (16384 bytes as float32) and a
#: float32 client's 8192 bytes stay 8192: the bound may be passed by one such read.
_READ_BYTES_MAX = 16384


def test_a_deleted_speech_socket_is_created_again(make_source, socket_path):
    source = make_source()
    os.unlink(socket_path)
    deadline = time.monotonic() + 20
    while not socket_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    client = _connect(socket_path)  # the way in is back
    client.sendall(_wav_bytes(_ramp(1600), 16000))
    client.close()
    assert 1 in _played_utterances(source, want=1)
