"""Speech pushed by a local TTS engine over a unix stream socket.

Each connection is one utterance: a WAV stream (RIFF header; its format decides) or raw
PCM in the configured format. One client is decoded at a time, so utterances play in the
order their clients connected; the next few wait, connected, in threads of their own. A
waiting client pre-empts a stalled one: a client that has sent nothing for
`STALLED_CLIENT_S` while nothing of it is left to play is cut off, so a TTS engine that
hung mid-utterance (or a client that sends a byte now and then) cannot hold the socket.

`feed(stream)` decodes one utterance from any file-like object and queues it; the socket
acceptor calls it per connection, and a later HTTP door can call it with a request body
("one mechanism, two doors").
"""
from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from runtime.system.unix_socket import ensure_socket_dir, remove_stale_socket
from .chunk import AudioChunk
from .pcm import RAW_FORMATS, RawPcmDecoder, check_format
from .source import SILENT, AudioSource, AudioSourceError
from .speech_buffer import SpeechBuffer, Utterance
from .turns import ArrivalTurns
from .wav import MAX_RATE, MIN_RATE, PrefixedStream, WavError, read_wav_header

log = logging.getLogger(__name__)

#: Bytes asked of the client per read; small enough that back pressure bites early.
_READ_BYTES = 8192
_LISTEN_BACKLOG = 8
#: Clients connected and waiting for their turn; more are closed at once (with a log line).
MAX_WAITING_CLIENTS = 4
#: A client that has sent nothing for this long, with nothing of it left to play, gives way
#: to a waiting one.
STALLED_CLIENT_S = 3.0
#: How often a waiting client looks at the one being decoded.
_TURN_POLL_S = 0.1


class _Feed:
    """The utterance being received: how to cut its producer off on flush()/close()."""

    def __init__(self, ident: int, label: str, abort: Callable[[], None] | None,
                 generation: int) -> None:
        self.ident, self.label, self.abort = ident, label, abort
        self.generation = generation  # of the speech buffer: a later flush() refuses it
        self.cancelled = threading.Event()
        self.last_data = time.monotonic()  # when the client last sent something
        self.utterance: Utterance | None = None


class StreamSource(AudioSource):
    """read() hands out buffered speech at its native rate (utterance id = client number),
    SILENT when nothing is ready. `flush()` drops buffered speech and cuts the current
    client off. Audio beyond `max_buffer_s` is not read from the client until there is
    room (back pressure): nothing is ever dropped."""

    live = False

    def __init__(self, socket_path: Path | str, socket_mode: int = 0o660, raw_rate: int = 16000,
                 raw_format: str = "s16le", raw_channels: int = 1, prebuffer_ms: float = 100,
                 max_buffer_s: float = 60.0, chunk_ms: int = 20,
                 client_idle_timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 max_buffer_bytes: int = 16 * 2**20) -> None:
        if raw_format not in RAW_FORMATS:
            raise ValueError(f"raw_format {raw_format!r} not one of {', '.join(RAW_FORMATS)}")
        check_format(raw_format, raw_channels)
        if not MIN_RATE <= raw_rate <= MAX_RATE:
            raise ValueError(f"raw_rate {raw_rate} Hz outside {MIN_RATE} to {MAX_RATE}")
        self.socket_path = Path(socket_path)
        self.socket_mode = socket_mode
        self.raw_rate, self.raw_format, self.raw_channels = raw_rate, raw_format, raw_channels
        # A client silent this long (mid-header or mid-speech) is dropped so the next can play.
        self.client_idle_timeout_s = client_idle_timeout_s
        self._buffer = SpeechBuffer(max_buffer_s, prebuffer_ms / 1000, chunk_ms, clock,
                                    max_buffer_bytes)
        self._waiting = 0  # socket clients connected, waiting for their turn
        # One utterance at a time, whichever door, in the order the producers arrived.
        self._turns = ArrivalTurns()
        self._state_lock = threading.Lock()
        self._current: _Feed | None = None
        self._next_ident = 1
        self._listener: socket.socket | None = None
        self._socket_inode: int | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._acceptor: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        if self._listener is not None:
            return
        path = self.socket_path
        try:
            remove_stale_socket(path)
        except OSError as err:
            raise AudioSourceError(f"stream source: {err}") from None
        try:
            self._listener = self._bind()
        except OSError as exc:
            raise AudioSourceError(f"stream source: cannot listen on {path}: {exc}") from None
        self._wake_r, self._wake_w = os.pipe()
        self._stopping.clear()
        self._buffer.reopen()
        self._acceptor = threading.Thread(target=self._accept_loop, name="speech-socket",
                                          daemon=True)
        self._acceptor.start()
        log.info("stream source: listening on %s (mode %o)", path, self.socket_mode)

    def close(self) -> None:
        self._stopping.set()
        self._buffer.close()
        self._abort_current()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._acceptor is not None:
            self._acceptor.join(timeout=5.0)
            if self._acceptor.is_alive():
                log.warning("stream source: the socket thread did not stop")
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            self._unlink_own_socket()
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None

    def _unlink_own_socket(self) -> None:
        # Only our own socket: a new instance may already have bound the same path.
        with contextlib.suppress(OSError):
            if os.lstat(self.socket_path).st_ino == self._socket_inode:
                self.socket_path.unlink()

    # --- consumer side ---------------------------------------------------------------

    def read(self, timeout_s: float) -> AudioChunk | None | type[SILENT]:
        """The next chunk, SILENT when none is ready within timeout_s, None once closed."""
        chunk = self._buffer.take(timeout_s)
        if chunk is None:
            return None if self._buffer.closed else SILENT
        return chunk

    def flush(self) -> None:
        self._buffer.flush()  # also refuses the current feed's next begin()
        self._abort_current()

    def _abort_current(self) -> None:
        with self._state_lock:
            current = self._current
        if current is not None:
            current.cancelled.set()
            if current.abort is not None:
                current.abort()

    def active(self) -> bool:
        """True while an utterance is being received or is still buffered (not yet all read)."""
        head, _ = self._buffer.snapshot()
        with self._state_lock:
            return head is not None or self._current is not None

    def status(self) -> str:
        head, buffered_s = self._buffer.snapshot()
        with self._state_lock:
            current = self._current
        if head is not None and head.started:
            return f"stream: playing (client {head.ident}, {buffered_s:.1f} s buffered)"
        if head is not None or current is not None:
            ident = head.ident if head is not None else current.ident
            return f"stream: buffering (client {ident})"
        return "stream: idle"

    # --- producer side ---------------------------------------------------------------

    def feed(self, stream: BinaryIO, label: str | None = None,
             abort: Callable[[], None] | None = None) -> int:
        """Decode one utterance from `stream` (WAV or raw PCM) and queue it.

        Blocks until the stream ends, flush() cuts it off (then `abort` is called to unblock
        a pending read) or the source closes; waits for an earlier feed to finish first.
        Returns the utterance id. Errors in the data are logged, never raised.
        `label` names the producer in the log (default "client N", N = the utterance id).
        """
        return self._feed_in_turn(self._turns.take(), stream, label, abort)

    def _feed_in_turn(self, ticket: int, stream: BinaryIO, label: str | None,
                      abort: Callable[[], None] | None) -> int:
        """feed() with the ticket taken when the producer arrived; always releases it."""
        try:
            if not self._wait_turn(ticket):
                return 0  # the source closed while this one waited
            with self._state_lock:
                ident = self._next_ident
                self._next_ident += 1
                feed = _Feed(ident, label or f"client {ident}", abort, self._buffer.generation)
                self._current = feed
                # close() sets _stopping before it looks for a feed to abort: either it
                # saw this feed or this feed sees _stopping.
                if self._stopping.is_set():
                    feed.cancelled.set()
            label = feed.label
            try:
                self._decode_into_buffer(stream, feed)
            except WavError as exc:
                log.warning("stream source: %s: bad WAV header (%s); closing it", label, exc)
            except OSError as exc:
                if not feed.cancelled.is_set():
                    log.warning("stream source: %s: connection lost (%s)", label, exc)
            finally:
                with self._state_lock:
                    self._current = None
            return feed.ident
        finally:
            self._turns.release(ticket)

    def _wait_turn(self, ticket: int) -> bool:
        """Wait for the ticket's turn; meanwhile cut off a stalled client. False once closed."""
        while True:
            if self._turns.wait(ticket, _TURN_POLL_S):
                return True  # a close() meanwhile cancels the feed it starts
            if self._stopping.is_set():
                return False
            with self._state_lock:
                current = self._current
            if current is not None and self._stalled(current):
                log.warning("stream source: %s sent nothing for %.0f s and a new client is "
                            "waiting: cutting it off", current.label,
                            time.monotonic() - current.last_data)
                current.cancelled.set()
                if current.abort is not None:
                    current.abort()

    def _stalled(self, feed: _Feed) -> bool:
        if time.monotonic() - feed.last_data < STALLED_CLIENT_S:
            return False
        utterance = feed.utterance  # still playing what it sent: let it finish
        return utterance is None or utterance.buffered_s < 0.1

    def _decode_into_buffer(self, stream: BinaryIO, feed: _Feed) -> None:
        if feed.cancelled.is_set():
            return
        read_some = getattr(stream, "read1", None) or stream.read
        magic = b""
        while len(magic) < 4:
            part = stream.read(4 - len(magic))
            if not part:
                break
            magic += part
            feed.last_data = time.monotonic()
        if magic == b"RIFF":
            wav_format, data_left = read_wav_header(PrefixedStream(magic, stream), feed.label)
            decoder = RawPcmDecoder(wav_format.sample_format, wav_format.channels)
            rate, pending = wav_format.rate, b""
        else:
            decoder = RawPcmDecoder(self.raw_format, self.raw_channels)
            rate, pending, data_left = self.raw_rate, magic, None
        utterance: Utterance | None = None
        try:
            while not feed.cancelled.is_set():
                data = pending or read_some(_READ_BYTES if data_left is None
                                            else min(_READ_BYTES, data_left))
                pending = b""
                if not data:
                    break
                feed.last_data = time.monotonic()
                if data_left is not None:
                    data_left -= len(data)
                samples = decoder.decode(data)
                if len(samples):
                    if utterance is None:
                        utterance = self._buffer.begin(feed.ident, rate, decoder.channels,
                                                       feed.generation)
                        if utterance is None:
                            break  # flushed or closed while this client was connecting
                        feed.utterance = utterance
                        log.info("stream source: %s: utterance %d, %d Hz, %d ch, %s", feed.label,
                                 feed.ident, rate, decoder.channels, decoder.fmt)
                    if not self._buffer.put(utterance, samples):
                        break
                if data_left == 0:
                    break  # a WAV's declared data is complete; ignore trailing chunks
        finally:
            if utterance is not None:
                self._buffer.end(utterance)
        if decoder.pending_bytes:
            log.debug("stream source: %s: dropped %d bytes of a partial sample frame",
                      feed.label, decoder.pending_bytes)
        log.info("stream source: %s: end of utterance%s", feed.label,
                 " (flushed)" if feed.cancelled.is_set() else "")

    # --- the socket door -------------------------------------------------------------

    def _rebind_if_removed(self) -> None:
        """A deleted socket file (rm -r /run/edgemate/*) leaves no way in: bind it again."""
        try:
            if os.lstat(self.socket_path).st_ino == self._socket_inode:
                return
        except OSError:
            pass
        log.warning("stream source: %s was removed or replaced: creating it again",
                    self.socket_path)
        try:
            remove_stale_socket(self.socket_path)
            listener = self._bind()
        except OSError as exc:
            log.error("stream source: cannot create %s again (%s)", self.socket_path, exc)
            self._socket_inode = None  # do not try every second
            return
        old, self._listener = self._listener, listener
        old.close()

    def _bind(self) -> socket.socket:
        """A listening socket at socket_path with socket_mode; remembers its inode."""
        ensure_socket_dir(self.socket_path)  # /tmp/edgemate on a Mac: emptied at boot
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            os.chmod(self.socket_path, self.socket_mode)
            listener.listen(_LISTEN_BACKLOG)
        except OSError:
            listener.close()
            raise
        self._socket_inode = os.stat(self.socket_path).st_ino
        return listener

    def _accept_loop(self) -> None:
        wake_r = self._wake_r
        while not self._stopping.is_set():
            listener = self._listener
            readable, _, _ = select.select([listener, wake_r], [], [], 1.0)
            if wake_r in readable or self._stopping.is_set():
                break
            if not readable:
                if self._socket_inode is not None:
                    self._rebind_if_removed()
                continue
            try:
                connection, _ = listener.accept()
            except OSError as exc:
                log.warning("stream source: accept failed: %s", exc)
                time.sleep(0.05)  # EMFILE leaves the listener readable: do not spin
                continue
            with self._state_lock:
                full = self._waiting >= MAX_WAITING_CLIENTS
                if not full:
                    self._waiting += 1
            if full:
                log.warning("stream source: %d clients already wait for their turn: closing a "
                            "new one", MAX_WAITING_CLIENTS)
                connection.close()
                continue
            # The ticket is taken here, in the order the clients connected.
            ticket = self._turns.take()
            try:
                threading.Thread(target=self._serve_and_close, args=(connection, ticket),
                                 name="speech-client", daemon=True).start()
            except RuntimeError as exc:  # no thread to be had: this client loses, not the rest
                log.warning("stream source: cannot serve a new client (%s): closing it", exc)
                self._turns.release(ticket)
                connection.close()
                with self._state_lock:
                    self._waiting -= 1

    def _serve_and_close(self, connection: socket.socket, ticket: int) -> None:
        try:
            with connection:
                self._serve(connection, ticket)
        finally:
            self._turns.release(ticket)  # a refused client's turn passes on
            with self._state_lock:
                self._waiting -= 1

    def _serve(self, connection: socket.socket, ticket: int) -> None:
        from runtime.system.peer_access import peer_allowed
        # The same rule as the control socket's POST /say: a socket_mode of 0666 opens the
        # file to everyone, not the speaker.
        allowed, who = peer_allowed(connection)
        if not allowed:
            log.warning("stream source: refused %s (not root, our user or in our group)", who)
            return
        connection.settimeout(self.client_idle_timeout_s)

        def abort() -> None:
            # Wakes a recv() blocked in this thread; the client sees its connection closed.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

        with connection.makefile("rb") as stream:
            self._feed_in_turn(ticket, stream, None, abort)
