"""ffmpeg for the record sink: finding it, quoting its errors, and the last step, its video
parts and its audio WAV into the final MP4.

The encoder writes fragmented MP4 (a fragment a second), so a part whose ffmpeg was killed
or ran out of disk is still readable up to its last fragment. Each part is listed for the
concat demuxer with the duration its frames should last: where a killed encoder lost the
frames still in its pipe, the last picture before the loss holds, and sound and picture
stay in step after it. If the final file cannot be written (a full disk), nothing is
thrown away: the parts and the WAV are kept next to the target under plain names.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .sink import DisplayError

log = logging.getLogger(__name__)


#: x264's presets (display.record.preset), fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
FFMPEG_MISSING = ("record sink needs ffmpeg: install it (Debian: apt install ffmpeg, macOS: "
                  "brew install ffmpeg) or pip install imageio-ffmpeg")
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




def tail_of(log_file) -> str:
    try:
        log_file.seek(0)
        return last_lines(log_file.read())
    except (OSError, ValueError):  # ValueError: the file is already closed
        return ""


def check_encoder(exe: str) -> None:
    """Fail at open, not at the first frame, when the binary cannot encode H.264."""
    try:
        out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True,
                             timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DisplayError(f"record sink cannot run {exe}: {exc}") from None
    if b"libx264" not in out.stdout:
        raise DisplayError(f"record sink: {exe} has no H.264 encoder (libx264); "
                           f"{FFMPEG_MISSING.split(': ', 1)[1]}")


class MuxError(Exception):
    """The final file could not be made; the message says why in one line."""


@dataclass
class Part:
    path: Path
    frames: int = 0  # frames written into this part's encoder


def last_lines(data: bytes, lines: int = _STDERR_LINES) -> str:
    """The last non-empty lines of ffmpeg's error output, as one line."""
    kept = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def mux(exe: str, parts: list[Part], wav: Path | None, audio_rate: int | None, fps: int,
        out: Path, timeout_s: float) -> None:
    """Concatenate `parts` (each held to its written frame count) and add `wav`, into `out`."""
    frames = sum(part.frames for part in parts)
    listing = out.with_name(out.name + ".parts.txt")
    lines = ["ffconcat version 1.0"]
    for part in parts:
        if part.frames:
            lines += [f"file '{_quoted(part.path)}'", f"duration {part.frames / fps:.6f}"]
    listing.write_text("\n".join(lines) + "\n")
    cmd = [exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-f", "concat", "-safe", "0", "-i", str(listing)]
    if wav is not None and audio_rate:
        # Exactly the video's length of audio: pad with silence, or cut the rest.
        want = round(frames * audio_rate / fps)
        cmd += ["-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
                "-af", f"apad=whole_len={want},atrim=end_sample={want}",
                "-c:a", "aac", "-b:a", "128k", "-ar", "48000"]
    else:
        cmd += ["-map", "0:v:0"]
    cmd += ["-c:v", "copy", "-movflags", "+faststart", "-f", "mp4", str(out)]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise MuxError("muxing took too long") from None
    except OSError as exc:
        raise MuxError(f"cannot run {exe}: {exc.strerror or exc}") from None
    finally:
        listing.unlink(missing_ok=True)
    if done.returncode != 0:
        said = last_lines(done.stderr) or "no message"
        if "No space left" in said:
            raise MuxError(f"disk full while saving ({said})")
        raise MuxError(f"muxing failed (ffmpeg exit {done.returncode}): {said}")


def keep_parts(parts: list[Part], wav: Path | None, target: Path) -> list[Path]:
    """Rename what was recorded to plain names beside `target`; returns the kept files."""
    kept = []
    numbered = len([part for part in parts if part.frames]) > 1
    for n, part in enumerate((part for part in parts if part.frames), 1):
        name = f"{target.stem}.part{n}.mp4" if numbered else f"{target.stem}.video.mp4"
        kept.append(_rename(part.path, target.with_name(name)))
    if wav is not None and wav.exists() and wav.stat().st_size > 44:
        kept.append(_rename(wav, target.with_name(f"{target.stem}.audio.wav")))
    return [path for path in kept if path is not None]


def _rename(source: Path, destination: Path) -> Path | None:
    try:
        os.replace(source, destination)
        return destination
    except OSError as exc:
        log.error("recording: could not keep %s as %s: %s", source, destination, exc.strerror)
        return None


def _quoted(path: Path) -> str:
    return str(path.resolve()).replace("'", "'\\''")
