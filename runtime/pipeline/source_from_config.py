"""Config -> audio source."""
from __future__ import annotations

from runtime.audio.source import AudioSource
from runtime.config.schema import AudioConfig


def make_stream_source(audio: AudioConfig, idle_timeout_s: float):
    """The pushed-speech queue: the `stream` source, and the queue POST /say feeds over a
    files or mic source (whose socket is then never opened). One constructor for both."""
    from runtime.audio.stream import StreamSource
    s = audio.stream
    return StreamSource(socket_path=s.socket, socket_mode=s.socket_mode, raw_rate=s.raw_rate,
                        raw_format=s.raw_format, raw_channels=s.raw_channels,
                        prebuffer_ms=s.prebuffer_ms, max_buffer_s=s.max_buffer_s,
                        max_buffer_bytes=int(s.max_buffer_mb * 2**20),
                        client_idle_timeout_s=idle_timeout_s)


def make_source(audio: AudioConfig, idle_timeout_s: float = 10.0) -> AudioSource:
    """`idle_timeout_s`: how long a speech-socket client may send nothing
    (control.client_idle_timeout_s)."""
    if audio.source == "files":
        from runtime.audio.files import FilesSource
        f = audio.files
        return FilesSource(playlist=f.playlist, loop=f.loop, gap_s=f.gap_s)
    if audio.source == "stream":
        return make_stream_source(audio, idle_timeout_s)
    if audio.source == "mic":
        from runtime.audio.mic import MicSource
        m = audio.mic
        return MicSource(device=m.device, rate=m.rate, channels=m.channels, chunk_ms=m.chunk_ms,
                         stall_timeout_s=m.stall_timeout_s, reopen_backoff_s=m.reopen_backoff_s,
                         reopen_backoff_max_s=m.reopen_backoff_max_s)
    raise ValueError(f"unknown audio source {audio.source!r}")  # the config validator prevents this
