"""RecordSink: frames and the timeline audio into an MP4 (H.264 + AAC) through ffmpeg.

Frames go through a few preallocated buffers to a writer thread that feeds an ffmpeg
subprocess, so a slow encoder never stalls the frame loop: when every buffer is busy the
frame is dropped and counted. The writer holds the video to the clock by frame index: any
index that never arrived (skipped by the scheduler or dropped here) is filled by repeating
the previous picture, so video frame k always shows audio time k/fps.
Audio goes to a temporary WAV as it comes; close() muxes both into the target file.
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np

from runtime import FPS, SAMPLE_RATE
from runtime.display.sink import DisplayError, DisplaySink

log = logging.getLogger(__name__)

FFMPEG_MISSING = ("record sink needs ffmpeg: install it (Debian: apt install ffmpeg) "
                  "or pip install imageio-ffmpeg")
#: How long close() waits for the writer thread and for ffmpeg to finish the video (s).
_FINISH_TIMEOUT_S = 60.0
#: Lines of ffmpeg's own error output quoted when it fails.
_STDERR_LINES = 3


def find_ffmpeg(setting: str = "auto") -> str:
    """The ffmpeg binary: 'auto' = PATH, then the imageio-ffmpeg package; else a path or name."""
    if setting != "auto":
        exe = shutil.which(os.path.expanduser(setting))
        if exe is None:
            raise DisplayError(f"record sink: ffmpeg {setting!r} is not an executable file; "
                               f"{FFMPEG_MISSING.split(': ', 1)[1]}")
        return exe
    exe = shutil.which("ffmpeg")
    if exe is not None:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):  # RuntimeError: package present, binary missing
        raise DisplayError(FFMPEG_MISSING) from None


def _last_lines(data: bytes, lines: int = _STDERR_LINES) -> str:
    """The last non-empty lines of ffmpeg's error output, as one line."""
    kept = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _tail(log_file) -> str:
    try:
        log_file.seek(0)
        return _last_lines(log_file.read())
    except (OSError, ValueError):  # ValueError: the file is already closed
        return ""


class RecordSink(DisplaySink):
    """Writes an MP4 to `path`. crf/preset: x264 quality and speed; fps: video frame rate.

    queue_frames: frames that may wait for the encoder before new ones are dropped.
    """

    name = "record"

    def __init__(self, path: Path, ffmpeg: str = "auto", crf: int = 23, preset: str = "veryfast",
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
        self._video_tmp: Path | None = None
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
        self._check_encoder(exe)
        folder = self.path.parent
        if not folder.is_dir():
            raise DisplayError(f"record sink: folder {folder} does not exist")
        try:
            self._video_tmp = self._temp(".video.mp4")
            self._wav_tmp = self._temp(".audio.wav")
        except OSError as exc:
            self._remove_temps()
            raise DisplayError(f"record sink cannot write to {folder}: {exc.strerror}") from None
        cmd = [exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-framerate", str(self.fps), "-i", "pipe:0"]
        if width % 2 or height % 2:
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]  # yuv420p needs even sides
        cmd += ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
                "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(self._video_tmp)]
        self._stderr = tempfile.TemporaryFile()
        try:
            # A session of its own: Ctrl-C in a terminal reaches only us, and close()
            # still finishes the file cleanly instead of ffmpeg dying halfway.
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=self._stderr, start_new_session=True)
        except OSError as exc:
            self._remove_temps()
            raise DisplayError(f"record sink cannot start {exe}: {exc.strerror}") from None
        self._exe = exe
        self.frame_size = (width, height)
        # queue_frames waiting + one being written + the last one kept for repeats.
        for _ in range(self.queue_frames + 2):
            self._free.put(np.empty((height, width, 3), np.uint8))
        self._writer = threading.Thread(target=self._write_loop, name="record-writer", daemon=True)
        self._writer.start()
        log.info("recording %dx%d at %d fps to %s (ffmpeg: %s)", width, height, self.fps,
                 self.path, exe)

    def _temp(self, suffix: str) -> Path:
        # Next to the target: same filesystem, so the final rename is atomic.
        fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=suffix,
                                    dir=self.path.parent)
        os.close(fd)
        return Path(name)

    @staticmethod
    def _check_encoder(exe: str) -> None:
        """Fail at open, not at the first frame, when the binary cannot encode H.264."""
        try:
            out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True,
                                 timeout=20, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DisplayError(f"record sink cannot run {exe}: {exc}") from None
        if b"libx264" not in out.stdout:
            raise DisplayError(f"record sink: {exe} has no H.264 encoder (libx264); "
                               f"{FFMPEG_MISSING.split(': ', 1)[1]}")

    # -- frames -------------------------------------------------------------------------

    def present(self, frame: np.ndarray, index: int,
                dirty: tuple[int, int, int, int] | None = None) -> None:
        if self._proc is None:
            raise DisplayError("record sink is not open")
        if self._closed or self._failure is not None:
            return  # recording stopped; the appliance keeps running
        width, height = self.frame_size
        if frame.shape != (height, width, 3):
            raise ValueError(f"frame {frame.shape}: expected ({height}, {width}, 3) uint8")
        self._last_index = max(self._last_index, int(index))
        try:
            buf = self._free.get_nowait()
        except queue.Empty:
            self.drop_count += 1  # the writer repeats the previous picture for this index
            return
        np.copyto(buf, frame)
        self._work.put((int(index), buf))

    def _write_frame(self, buf: np.ndarray) -> None:
        self._proc.stdin.write(buf.data)
        self.frames_written += 1

    def _write_loop(self) -> None:
        last: np.ndarray | None = None
        next_index = 0  # the video frame number the file needs next
        while True:
            index, buf = self._work.get()
            if buf is None:
                # The end: frames dropped after the last written one still count.
                if last is not None and self._failure is None:
                    try:
                        for _ in range(index + 1 - next_index):
                            self._write_frame(last)
                    except (OSError, ValueError) as exc:
                        self._fail(self._write_failure(exc))
                break
            if self._failure is not None or index < next_index:
                self._free.put(buf)  # stopped, or an index seen before: nothing to write
                continue
            try:
                # Indices next_index..index-1 never came: hold the previous picture (the
                # first picture also stands in for any frames before it).
                filler = last if last is not None else buf
                for _ in range(index - next_index):
                    self._write_frame(filler)
                self._write_frame(buf)
                next_index = index + 1
            except (OSError, ValueError) as exc:  # ValueError: stdin closed by a kill
                self._fail(self._write_failure(exc))
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
            said = _tail(self._stderr) or "no message"
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
        if code != 0:
            self._fail(f"ffmpeg stopped (exit {code}): {_tail(self._stderr) or 'no message'}")
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
        if code != 0 or frames == 0:
            return f"recording failed: {self._failure or 'no frames'}; nothing saved"
        try:
            self._mux(frames)
        except DisplayError as exc:
            return f"recording failed: {exc}; nothing saved"
        plural = "s" if frames != 1 else ""
        saved = f"{self.path} ({frames} frame{plural}, {frames / self.fps:.1f} s)"
        if self._failure is not None:
            return f"recording stopped early ({self._failure}); saved to {saved}"
        return f"recording saved to {saved}"

    def _mux(self, frames: int) -> None:
        try:
            part = self._temp(".part.mp4")
        except OSError as exc:
            raise DisplayError(f"saving {self.path} failed: {exc.strerror or exc}") from None
        cmd = [self._exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-i", str(self._video_tmp)]
        if self.audio_samples:
            # Exactly the video's length of audio: pad with silence, or cut the rest.
            want = round(frames * self._audio_rate / self.fps)
            cmd += ["-i", str(self._wav_tmp), "-map", "0:v:0", "-map", "1:a:0",
                    "-af", f"apad=whole_len={want},atrim=end_sample={want}",
                    "-c:a", "aac", "-b:a", "128k", "-ar", "48000"]
        else:
            cmd += ["-map", "0:v:0"]
        cmd += ["-c:v", "copy", "-movflags", "+faststart", "-f", "mp4", str(part)]
        try:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=120 + frames / self.fps / 10)
            if done.returncode != 0:
                raise DisplayError(f"muxing failed (ffmpeg exit {done.returncode}): "
                                   f"{_last_lines(done.stderr) or 'no message'}")
            # mkstemp made it 0600; the recording is for whoever runs the box: give it the
            # mode any new file gets (0666 less the umask), as ffmpeg writing it directly would.
            os.chmod(part, 0o666 & ~_umask())
            os.replace(part, self.path)
        except subprocess.TimeoutExpired:
            raise DisplayError("muxing took too long") from None
        except OSError as exc:
            raise DisplayError(f"saving {self.path} failed: {exc.strerror or exc}") from None
        finally:
            part.unlink(missing_ok=True)

    def _remove_temps(self) -> None:
        for temp in (self._video_tmp, self._wav_tmp):
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
