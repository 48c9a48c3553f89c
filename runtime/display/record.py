"""RecordSink: frames and the timeline audio into an MP4 (H.264 + AAC) through ffmpeg.

Frames go through a few preallocated buffers to a writer thread that feeds an ffmpeg
subprocess, so a slow encoder never stalls the frame loop: when every buffer is busy the
frame is dropped and counted. The writer holds the video to the clock by frame index: any
index that never arrived (skipped by the scheduler or dropped here) is filled by repeating
the previous picture, so video frame k always shows audio time k/fps.
Audio goes to a temporary WAV as it comes; close() muxes both into the target file.

Nothing recorded is thrown away: the encoder writes fragmented MP4, so a part whose ffmpeg
dies is readable up to that point; a dead encoder is restarted into a new part (up to
MAX_RESTARTS times; `incident` and the appliance's last_error say so); close() joins the
parts (record_ffmpeg.py), and where even that fails the parts and the audio are kept.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np

from runtime import FPS, SAMPLE_RATE
from .record_ffmpeg import (MuxError, Part, check_encoder, find_ffmpeg,  # noqa: F401
                                           keep_parts, mux, tail_of)
from .sink import DisplayError, DisplaySink, Picture

log = logging.getLogger(__name__)

#: How long close() waits for the writer thread and for ffmpeg to finish the video (s).
_FINISH_TIMEOUT_S = 60.0
#: Encoder restarts after ffmpeg dies; then recording stops (something keeps killing it).
MAX_RESTARTS = 3

class RecordSink(DisplaySink):
    """Writes an MP4 to `path`. crf/preset: x264 quality and speed; fps: video frame rate.

    queue_frames: frames that may wait for the encoder before new ones are dropped.
    """

    name = "record"
    wants_audio = True  # the MP4 carries the sound the frames were timed to

    def __init__(self, path: Path, ffmpeg: str = "auto", crf: int = 25, preset: str = "superfast",
                 fps: int = FPS, queue_frames: int = 3) -> None:
        if not 0 <= int(crf) <= 51:
            raise ValueError(f"crf {crf}: allowed 0 (best) to 51 (worst)")
        if fps <= 0 or queue_frames < 1:
            raise ValueError("fps and queue_frames must be positive")
        self.path = Path(path)
        self.ffmpeg = ffmpeg
        self.crf = int(crf)
        self.preset = preset
        self.fps = fps
        self.queue_frames = int(queue_frames)
        self.frame_size: tuple[int, int] | None = None
        self.frames_written = 0   # video frames in the file, repeats included (writer thread)
        self.repeats_written = 0  # of those, repeats standing in for indices never shown
        self.drop_count = 0       # frames present() dropped because the encoder lagged
        self.audio_samples = 0
        self._last_index = -1     # highest index present() saw, dropped or not
        self._exe: str | None = None
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._writer: threading.Thread | None = None
        self._work: queue.Queue = queue.Queue()
        self._free: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._failure: str | None = None
        self._wav: wave.Wave_write | None = None
        self._audio_rate: int | None = None
        self._parts: list[Part] = []  # encoder outputs, one per ffmpeg run
        self._encode_cmd: list[str] = []
        self.restarts = 0
        self.incident: str | None = None  # the last encoder death recording survived
        self._wav_tmp: Path | None = None
        self._closed = False
        self._message: str | None = None

    @property
    def failure(self) -> str | None:
        """Why recording stopped early, or None while it works."""
        return self._failure

    # -- open ---------------------------------------------------------------------------

    def open(self, frame_size: tuple[int, int]) -> None:
        if self._proc is not None or self._closed:
            raise DisplayError("record sink can be opened once")
        width, height = int(frame_size[0]), int(frame_size[1])
        exe = find_ffmpeg(self.ffmpeg)
        check_encoder(exe)
        folder = self.path.parent
        if not folder.is_dir():
            raise DisplayError(f"record sink: folder {folder} does not exist")
        cmd = [exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-framerate", str(self.fps), "-i", "pipe:0"]
        if width % 2 or height % 2:
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]  # yuv420p needs even sides
        # A keyframe and a fragment every second: a killed encoder loses at most that.
        cmd += ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
                "-pix_fmt", "yuv420p", "-g", str(self.fps), "-flush_packets", "1",
                "-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-f", "mp4"]
        self._encode_cmd = cmd
        try:
            self._wav_tmp = self._temp(".audio.wav")
            self._start_encoder()
        except OSError as exc:
            self._remove_temps()
            raise DisplayError(f"record sink cannot write to {folder} or start {exe}: "
                               f"{exc.strerror}") from None
        self._exe = exe
        self.frame_size = (width, height)
        # queue_frames waiting + one being written + the last one kept for repeats.
        for _ in range(self.queue_frames + 2):
            self._free.put(np.empty((height, width, 3), np.uint8))
        self._writer = threading.Thread(target=self._write_loop, name="record-writer", daemon=True)
        self._writer.start()
        log.info("recording %dx%d at %d fps to %s (ffmpeg: %s)", width, height, self.fps,
                 self.path, exe)

    def _start_encoder(self) -> None:
        """A new ffmpeg writing a new part (the first at open, more after a death)."""
        part = Part(self._temp(f".video{len(self._parts) + 1}.mp4"))
        self._parts.append(part)
        self._stderr = tempfile.TemporaryFile()
        # A session of its own: Ctrl-C in a terminal reaches only us, and close() still
        # finishes the file cleanly instead of ffmpeg dying halfway.
        self._proc = subprocess.Popen([*self._encode_cmd, str(part.path)], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=self._stderr,
                                      start_new_session=True)

    def _restart_encoder(self, reason: str) -> bool:
        """After ffmpeg died: a new one into a new part. False when recording must stop."""
        if self.restarts >= MAX_RESTARTS:
            return False
        old = self._proc
        with contextlib.suppress(OSError, ValueError):
            old.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            old.wait(5)
        self._stderr.close()
        try:
            self._start_encoder()
        except OSError as exc:
            self._fail(f"{reason}; restarting ffmpeg failed: {exc.strerror or exc}")
            return True
        self.restarts += 1
        at = self.frames_written / self.fps
        self.incident = (f"{reason} at {at:.1f} s; recording goes on in part "
                         f"{len(self._parts)} (restart {self.restarts} of {MAX_RESTARTS})")
        log.error("recording: %s", self.incident)
        return True

    def _temp(self, suffix: str) -> Path:
        # Next to the target: same filesystem, so the final rename is atomic.
        fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=suffix,
                                    dir=self.path.parent)
        os.close(fd)
        return Path(name)

    # -- frames -------------------------------------------------------------------------

    def present(self, picture: Picture, index: int) -> None:
        if self._proc is None:
            raise DisplayError("record sink is not open")
        if self._closed or self._failure is not None:
            return  # recording stopped; the appliance keeps running
        width, height = self.frame_size
        if picture.template.shape != (height, width, 3):
            raise ValueError(f"frame {picture.template.shape}: expected ({height}, {width}, 3) uint8")
        self._last_index = max(self._last_index, int(index))
        try:
            buf = self._free.get_nowait()
        except queue.Empty:
            self.drop_count += 1  # the writer repeats the previous picture for this index
            return
        picture.paint_into(buf)  # the template, then the patch: one pass over the frame
        self._work.put((int(index), buf))

    def _write_frame(self, buf: np.ndarray) -> None:
        self._proc.stdin.write(buf.data)
        self.frames_written += 1
        self._parts[-1].frames += 1

    def _write_copies(self, buf: np.ndarray, count: int, repeats: bool) -> bool:
        """`count` copies of a picture (`repeats`: standing in for frames not shown); a dead
        ffmpeg is replaced on the way. False once recording has stopped."""
        for _ in range(count):
            try:
                self._write_frame(buf)
            except (OSError, ValueError) as exc:  # ValueError: stdin closed by a kill
                self._write_or_restart(buf, exc)
                if self._failure is not None:
                    return False
            if repeats:
                self.repeats_written += 1
        return True

    def _write_or_restart(self, buf: np.ndarray, exc: Exception) -> None:
        """A write failed: a disk full stops recording; a dead ffmpeg is replaced and the
        frame written to the new one."""
        reason = self._write_failure(exc)
        if not reason.startswith("disk full") and self._restart_encoder(reason):
            if self._failure is None:
                try:
                    self._write_frame(buf)
                    return
                except (OSError, ValueError) as again:
                    reason = self._write_failure(again)
        self._fail(reason)

    def _write_loop(self) -> None:
        last: np.ndarray | None = None
        next_index = 0  # the video frame number the file needs next
        while True:
            index, buf = self._work.get()
            if buf is None:
                # The end: frames dropped after the last written one still count.
                if last is not None and self._failure is None:
                    self._write_copies(last, index + 1 - next_index, repeats=True)
                break
            if self._failure is not None or index < next_index:
                self._free.put(buf)  # stopped, or an index seen before: nothing to write
                continue
            # Indices next_index..index-1 never came: hold the previous picture (the first
            # picture also stands in for any frames before it).
            filler = last if last is not None else buf
            if self._write_copies(filler, index - next_index, repeats=True):
                self._write_copies(buf, 1, repeats=False)
            next_index = index + 1
            if last is not None:
                self._free.put(last)
            last = buf
        if last is not None:
            self._free.put(last)

    def _write_failure(self, exc: Exception) -> str:
        if getattr(exc, "errno", None) == errno.ENOSPC:
            return f"disk full while recording ({exc.strerror})"
        if isinstance(exc, BrokenPipeError) or self._proc.poll() is not None:
            try:
                code = self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            said = tail_of(self._stderr) or "no message"
            if "No space left" in said:
                return f"disk full while recording (ffmpeg: {said})"
            return f"ffmpeg stopped (exit {code}): {said}"
        return f"writing to ffmpeg failed: {getattr(exc, 'strerror', None) or exc}"

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self._failure is not None:
                return
            self._failure = reason
        log.error("recording stopped: %s (the appliance keeps running)", reason)

    # -- audio --------------------------------------------------------------------------

    def feed_audio(self, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
        """Timeline audio in order, float32 mono in [-1, 1]; sample 0 is video frame 0's time."""
        if self._proc is None or self._closed or self._failure is not None:
            return
        pcm = (np.clip(np.asarray(samples, np.float32).reshape(-1), -1.0, 1.0) * 32767.0
               ).astype("<i2")
        reason = None
        with self._lock:  # _fail() takes the lock too: decide here, report after
            try:
                if self._wav is None:
                    self._wav = wave.open(str(self._wav_tmp), "wb")
                    self._wav.setnchannels(1)
                    self._wav.setsampwidth(2)
                    self._wav.setframerate(int(rate))
                    self._audio_rate = int(rate)
                elif int(rate) != self._audio_rate:
                    raise ValueError(f"audio rate changed from {self._audio_rate} to {rate} Hz")
                self._wav.writeframesraw(pcm)
                self.audio_samples += pcm.size
            except OSError as exc:
                reason = (self._write_failure(exc) if exc.errno == errno.ENOSPC
                          else f"writing audio failed: {exc.strerror or exc}")
        if reason is not None:
            self._fail(reason)

    # -- close --------------------------------------------------------------------------

    def close(self) -> str | None:
        """Finish the video, mux in the audio; safe to call after errors and more than once."""
        if self._closed:
            return self._message
        self._closed = True
        if self._proc is None:
            return None
        try:
            self._message = self._finish()
        except Exception as exc:  # noqa: BLE001 - shutdown must go on and say what happened
            log.exception("recording: close failed")
            self._message = f"recording failed: {exc}; nothing saved"
        finally:
            self._remove_temps()
        log.debug("%s", self._message)
        return self._message

    def _finish(self) -> str:
        self._work.put((self._last_index, None))
        self._writer.join(_FINISH_TIMEOUT_S)
        if self._writer.is_alive():
            self._fail("ffmpeg stopped taking frames")
            self._proc.kill()
            self._writer.join(5)
        try:
            self._proc.stdin.close()
        except OSError:
            pass  # ffmpeg already gone; its exit code and stderr tell why
        try:
            code = self._proc.wait(_FINISH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        if code != 0 and self._failure is None:
            # Killed at the very end: what it wrote is still there (fragmented MP4).
            self.incident = f"ffmpeg stopped (exit {code}): {tail_of(self._stderr) or 'no message'}"
            log.error("recording: %s", self.incident)
        self._stderr.close()
        with self._lock:
            wav, self._wav = self._wav, None
        if wav is not None:
            try:
                wav.close()
            except OSError as exc:
                self._fail(f"writing audio failed: {exc.strerror or exc}")
        if self.drop_count:
            log.info("recording: %d frames dropped (encoder busy), filled by repeats",
                     self.drop_count)
        frames = self.frames_written
        if frames == 0:
            return f"recording failed: {self._failure or 'no frames'}; nothing saved"
        try:
            self._mux()
        except MuxError as exc:
            kept = keep_parts(self._parts, self._wav_tmp if self.audio_samples else None,
                              self.path)
            if not kept:
                return f"recording failed: {exc}; nothing could be kept"
            return (f"recording could not be saved as {self.path} ({exc}); what was recorded "
                    f"is kept: {', '.join(str(path) for path in kept)}")
        plural = "s" if frames != 1 else ""
        # The file holds every frame index from 0 on; those the appliance did not show
        # (before the first frame, skipped by the scheduler, dropped here) repeat a picture.
        repeats = f"; {self.repeats_written} repeat the previous picture for frames not shown" \
            if self.repeats_written else ""
        saved = (f"{self.path} ({frames} frame{plural}, {frames / self.fps:.1f} s: "
                 f"{frames - self.repeats_written} shown{repeats})")
        if self._failure is not None:
            return f"recording stopped early ({self._failure}); saved to {saved}"
        if self.restarts:
            return (f"recording saved to {saved}, in {len(self._parts)} parts joined: ffmpeg "
                    f"died {self.restarts} time{'s' if self.restarts != 1 else ''}")
        return f"recording saved to {saved}"

    def _mux(self) -> None:
        try:
            out = self._temp(".part.mp4")
        except OSError as exc:
            raise MuxError(f"cannot write next to {self.path}: {exc.strerror or exc}") from None
        try:
            mux(self._exe, self._parts, self._wav_tmp if self.audio_samples else None,
                self._audio_rate, self.fps, out, 120 + self.frames_written / self.fps / 10)
            # mkstemp made it 0600; the recording is for whoever runs the box: give it the
            # mode any new file gets (0666 less the umask), as ffmpeg writing it directly would.
            os.chmod(out, 0o666 & ~_umask())
            os.replace(out, self.path)
        except OSError as exc:
            raise MuxError(f"saving {self.path} failed: {exc.strerror or exc}") from None
        finally:
            out.unlink(missing_ok=True)

    def _remove_temps(self) -> None:
        for temp in [part.path for part in self._parts] + [self._wav_tmp]:
            if temp is not None:
                try:
                    temp.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("could not remove %s: %s", temp, exc.strerror)


def _umask() -> int:
    """The process umask (only readable by setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
