"""Template frames from an image pattern ("frames/%04d.png"), decoded once into a cached .npy.

A template of 200 frames of 720x1280 is ~33 MB of PNG but ~550 MB decoded: too much RAM on a
Raspberry Pi 4, and slow to decode at every start. So the first load decodes the frames one
by one into `<cache_dir>/templates/<key>.npy` (runtime.system.paths.cache_dir), and every load maps
that file read-only: the frames live in the page cache, shared and reclaimable, and the
process's own (anonymous) memory stays small.

- key: sha256 over a format version, the decoder's version, the frame count and size and each
  frame file's sha256 (from the bundle's verified `template.sha256` entries, else hashed
  here), so a changed frame, size or decoder never maps a stale cache.
- never torn: written under a temp name, fsynced, then renamed into place (atomic); two
  processes racing each write their own temp file and the last rename wins, with the same
  bytes.
- never trusted blindly: a cache file that does not parse as a C-order uint8 .npy of exactly
  the expected shape and byte size is deleted and rebuilt.
- never fatal: a cache directory that cannot be written (read-only, permissions, disk full)
  gives one warning and the frames are decoded into RAM as before.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from runtime.models.ncnn_model import ModelError, sha256_file
from runtime.system.cores import allowed_cores
from runtime.system.paths import cache_dir

log = logging.getLogger(__name__)

#: Bump when the cache layout or decoding changes: old files then simply stop matching.
CACHE_FORMAT = 1
#: Cache files kept (most recently used first); an avatar update leaves its old one behind.
KEEP_CACHES = 3
#: Free space a new cache must leave on its filesystem: on an appliance that is often the root
#: filesystem, and the journal and logs need room more than we need a cache.
KEEP_FREE_BYTES = 200 * 1024 * 1024
#: A temp file untouched for this long belongs to a builder that died (a live one writes a
#: frame every few tens of milliseconds).
STALE_TEMP_S = 600.0


class TemplateError(ModelError):
    """A template frame cannot be used; bundle.py reports it as a BundleError."""


def image_frame_names(spec: str, count: int) -> list[str]:
    """Relative file names of an image pattern; TemplateError if it is not one."""
    try:
        names = [spec % index for index in range(count)]
    except (TypeError, ValueError):
        names = []
    if count < 1 or len(set(names)) != count:
        raise TemplateError(f"template.frames: {spec!r} must be a .npy file or an image "
                            f"pattern with a frame number, like frames/%04d.png")
    return names


def _decoder_version() -> str:
    import pygame  # decodes PNG/JPEG; a runtime dependency anyway (display)
    sdl_image = ".".join(map(str, pygame.image.get_sdl_image_version() or ()))
    return f"pygame {pygame.version.ver} SDL_image {sdl_image}"


def cache_key(frame_digests: list[str], size: tuple[int, int]) -> str:
    recipe = {"format": CACHE_FORMAT, "decoder": _decoder_version(), "count": len(frame_digests),
              "size": list(size), "frames": frame_digests}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:40]


def frame_digests(bundle_dir: Path, names: list[str], listed: Mapping[str, str]) -> list[str]:
    """Each frame file's sha256: the bundle's entry (load_bundle verified it) or hashed now."""
    known = {Path(str(name)): str(digest) for name, digest in listed.items()}
    digests = []
    for name in names:
        digest = known.get(Path(name))
        if digest is None:
            try:
                digest = sha256_file(bundle_dir / name)
            except OSError as err:
                raise TemplateError(f"{bundle_dir / name}: cannot read template frame: "
                                    f"{err.strerror or err}") from None
        digests.append(digest)
    return digests


def decode_frame(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One image as (H, W, 3) uint8 RGB; TemplateError if unreadable or not W x H."""
    import pygame

    try:
        surface = pygame.image.load(str(path))
    except (pygame.error, OSError) as err:
        raise TemplateError(f"{path}: cannot read template frame: {err}") from None
    if surface.get_size() != tuple(size):
        width, height = surface.get_size()
        raise TemplateError(f"{path}: template frame is {width}x{height}, frame_size is "
                            f"{size[0]}x{size[1]}")
    rgb = pygame.image.tobytes(surface, "RGB")  # row-major, no alpha: (H, W, 3) as is
    return np.frombuffer(rgb, np.uint8).reshape(size[1], size[0], 3)


#: Set by the service on SIGTERM: a cold decode (seconds on a Pi) stops at the next frame
#: instead of making the shutdown wait for it (Service.stop, Service.run clear it).
STOP_DECODING = threading.Event()


def _decode_threads() -> int:
    """Threads decoding frames at once on a cold start: SDL_image decodes without the GIL, so
    a 4-core Pi decodes four at a time. The cores this process may use, not the machine's:
    pinned to one core, threads only add switching (2.4 s against 2.2 s here)."""
    return max(1, min(4, allowed_cores()))


DECODE_THREADS = _decode_threads()


def iter_frames(paths: list[Path], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Frames in order, decoded DECODE_THREADS at a time: at most that many more are held."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="template-decode") as pool:
        pending: deque = deque()
        try:
            for path in paths:
                if STOP_DECODING.is_set():
                    raise TemplateError("stopped while decoding the template frames (shutdown)")
                pending.append(pool.submit(decode_frame, path, size))
                if len(pending) >= DECODE_THREADS:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def decode_in_ram(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    """The uncached way: one preallocated array (no list of frames plus a stacked copy)."""
    frames = np.empty((len(paths), size[1], size[0], 3), np.uint8)
    for index, frame in enumerate(iter_frames(paths, size)):
        frames[index] = frame
    return frames


def open_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cache file mapped read-only if it is exactly what we expect, else None."""
    try:
        frames = np.load(path, mmap_mode="r", allow_pickle=False)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None  # not there, or not ours to read: building it says why, once
    except (OSError, ValueError, EOFError) as err:  # truncated, garbage header, I/O error
        log.warning("template cache %s is unreadable (%s): rebuilding it", path, err)
        return _discard(path)
    try:  # exact length: numpy refuses a short file but maps a longer one without complaint
        size_ok = isinstance(frames, np.memmap) and path.stat().st_size == frames.offset + frames.nbytes
    except OSError:
        size_ok = False
    if frames.shape != shape or frames.dtype != np.uint8 or not frames.flags.c_contiguous or not size_ok:
        log.warning("template cache %s holds %s %s, expected %s uint8: rebuilding it",
                    path, frames.shape, frames.dtype, shape)
        return _discard(path)
    return frames


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass  # the rebuild then fails too and says so once
    return None


def write_cache(path: Path, paths: list[Path], size: tuple[int, int]) -> None:
    """Decode into a temp .npy beside `path`, then rename it into place.

    Plain sequential writes, not a writable memory map: a mapped sparse file on a full disk
    kills the process with SIGBUS (checked on a full tmpfs), where write() raises ENOSPC.
    """
    shape = (len(paths), size[1], size[0], 3)
    needed, free = int(np.prod(shape)) + 4096, shutil.disk_usage(path.parent).free
    if free < needed + KEEP_FREE_BYTES:  # say so now, not after decoding half the frames
        raise OSError(errno.ENOSPC, f"not enough space: {needed / 1e6:.0f} MB needed, "
                                    f"{free / 1e6:.0f} MB free, {KEEP_FREE_BYTES / 1e6:.0f} MB kept free")
    temp = path.with_name(f"{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "xb") as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                         "fortran_order": False, "shape": shape})
            for frame in iter_frames(paths, size):
                handle.write(frame.data)
            handle.flush()
            # On disk before the name appears: a power cut must not leave a short file under
            # the final name (it would be caught and rebuilt, but at the next start).
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def tidy(root: Path, keep: Path) -> None:
    """Remove temp files of dead builders and all but the KEEP_CACHES most recent caches."""
    now = time.time()
    try:
        entries = [(entry, entry.stat().st_mtime) for entry in root.iterdir()]
    except OSError:
        return
    caches = sorted(((mtime, entry) for entry, mtime in entries
                     if entry.suffix == ".npy" and entry != keep), reverse=True)
    doomed = [entry for _, entry in caches[KEEP_CACHES - 1:]]
    doomed += [entry for entry, mtime in entries if entry.suffix == ".tmp" and now - mtime > STALE_TEMP_S]
    for entry in doomed:
        try:
            entry.unlink()  # a process that has it mapped keeps its pages: safe on POSIX
            log.info("template cache: removed %s", entry)
        except OSError:
            pass


def load_image_frames(bundle_dir: Path, spec: str, count: int, size: tuple[int, int],
                      listed: Mapping[str, str], root: Path | None = None) -> np.ndarray:
    """(count, H, W, 3) uint8: a read-only memory map of the cache, or a RAM array if the
    cache cannot be written. size is (width, height)."""
    names = image_frame_names(spec, count)
    paths = [bundle_dir / name for name in names]
    root = root if root is not None else cache_dir() / "templates"
    path = root / f"{cache_key(frame_digests(bundle_dir, names, listed), size)}.npy"
    shape = (count, size[1], size[0], 3)
    frames = open_cached(path, shape)
    if frames is not None:
        log.info("template frames: mapped %s", path)
        try:
            os.utime(path)  # most recently used: tidy() keeps it
        except OSError:
            pass
        return frames
    started = time.monotonic()
    try:
        root.mkdir(parents=True, exist_ok=True)
        write_cache(path, paths, size)
    except OSError as err:
        log.warning("template cache: cannot write %s (%s): decoding %d frames into RAM "
                    "(%.1f MB)", path, err.strerror or err, count, np.prod(shape) / 1e6)
        return decode_in_ram(paths, size)
    log.info("template frames: decoded %d frames into %s in %.1f s", count, path,
             time.monotonic() - started)
    tidy(root, keep=path)
    frames = open_cached(path, shape)
    if frames is None:  # deleted or replaced by something unusable between rename and map
        log.warning("template cache: %s vanished after writing: decoding into RAM", path)
        return decode_in_ram(paths, size)
    return frames
