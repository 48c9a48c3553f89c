"""Template frames from an image pattern ("frames/%04d.png"), decoded once into a tile cache.

A template of 200 frames of 720x1280 is ~33 MB of PNG but 527 MiB decoded whole: too much RAM
on a Raspberry Pi, and slow to decode at every start. So the first load decodes the frames one
by one, keeps each tile once per version it takes (tile_template.py: 60 MiB for the default
avatar) and writes them into `<cache_dir>/templates/<key>.tiles` (runtime.system.paths.cache_dir);
every load maps that file read-only: the tiles live in the page cache, shared and reclaimable.

- key: sha256 over a format version, the tile tolerance, the decoder's version, the frame
  count and size and each frame file's sha256 (from the bundle's verified `template.sha256`
  entries, else hashed here), so a changed frame, size or decoder never maps a stale cache.
- never torn: written under a temp name, fsynced, then renamed into place (atomic); two
  processes racing each write their own temp file and the last rename wins, with the same
  bytes.
- never trusted blindly: a cache file whose header, byte size or tile indices are not exactly
  what these frames need is deleted and rebuilt.
- never fatal: a cache directory that cannot be written (read-only, permissions, disk full)
  gives one warning and the tiles are built in RAM instead.
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
from .tile_template import (TILE_H, TOLERANCE, TileBuilder, TileTemplate, grid_shape,
                            tile_template_in_ram, tile_width)

log = logging.getLogger(__name__)

#: Bump when the cache layout or decoding changes: old files then simply stop matching.
#: 1: every frame whole in a .npy; 2: tiles (tile_template.py) in a .tiles file.
CACHE_FORMAT = 2
CACHE_SUFFIX = ".tiles"
MAGIC = b"EDGEMATE-TILES\n"
HEADER_BYTES = 4096
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


def cache_key(frame_digests: list[str], size: tuple[int, int], tolerance: int = TOLERANCE) -> str:
    recipe = {"format": CACHE_FORMAT, "tolerance": tolerance, "decoder": _decoder_version(),
              "count": len(frame_digests),
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


def decode_in_ram(paths: list[Path], size: tuple[int, int], tolerance: int = TOLERANCE) -> TileTemplate:
    """The uncached way: the same tiles, held in RAM (never the whole decoded loop)."""
    return tile_template_in_ram(size, iter_frames(paths, size), tolerance)


def _header(raw: bytes) -> dict | None:
    if len(raw) < HEADER_BYTES or not raw.startswith(MAGIC):
        return None
    try:
        header = json.loads(raw[len(MAGIC):HEADER_BYTES].rstrip(b"\0 ").decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def open_cached(path: Path, size: tuple[int, int], count: int,
                tolerance: int = TOLERANCE) -> TileTemplate | None:
    """The cache file mapped read-only if it is exactly what we expect, else None."""
    try:
        with open(path, "rb") as handle:
            raw, length = handle.read(HEADER_BYTES), os.fstat(handle.fileno()).st_size
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None  # not there, or not ours to read: building it says why, once
    except OSError as err:
        log.warning("template cache %s is unreadable (%s): rebuilding it", path, err)
        return _discard(path)
    header = _header(raw)
    rows, cols, tw = grid_shape(size)
    expected = {"format": CACHE_FORMAT, "size": list(size), "count": count, "tile": [TILE_H, tw],
                "tolerance": tolerance}
    versions = header.get("versions") if header else None
    if (header is None or any(header.get(key) != value for key, value in expected.items())
            or not isinstance(versions, int) or versions < 1):
        log.warning("template cache %s is not a tile cache of %d %dx%d frames: rebuilding it",
                    path, count, *size)
        return _discard(path)
    tile_bytes = TILE_H * tw * 3
    map_offset = HEADER_BYTES + versions * tile_bytes
    if length != map_offset + count * rows * cols * 4:  # torn or padded: never trusted
        log.warning("template cache %s is %d bytes, expected %d: rebuilding it", path, length,
                    map_offset + count * rows * cols * 4)
        return _discard(path)
    try:
        tiles = np.memmap(path, np.uint8, "r", HEADER_BYTES, (versions, TILE_H, tw, 3))
        index_map = np.memmap(path, np.int32, "r", map_offset, (count, rows * cols))
    except (OSError, ValueError) as err:
        log.warning("template cache %s cannot be mapped (%s): rebuilding it", path, err)
        return _discard(path)
    if index_map.size and (int(index_map.min()) < 0 or int(index_map.max()) >= versions):
        log.warning("template cache %s names tiles it does not hold: rebuilding it", path)
        return _discard(path)
    return TileTemplate(size, index_map, tiles, tolerance, source=str(path))


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass  # the rebuild then fails too and says so once
    return None


def write_cache(path: Path, paths: list[Path], size: tuple[int, int],
                tolerance: int = TOLERANCE) -> None:
    """Decode, tile and write into a temp file beside `path`, then rename it into place.

    Layout: HEADER_BYTES of header (MAGIC + JSON, written last), the tile versions in order,
    then the (frames, tiles) int32 index map. Plain sequential writes, not a writable memory
    map: a mapped sparse file on a full disk kills the process with SIGBUS (checked on a full
    tmpfs), where write() raises ENOSPC.
    """
    free = shutil.disk_usage(path.parent).free
    budget = free - KEEP_FREE_BYTES - HEADER_BYTES  # bytes the tiles and the map may take
    if budget <= 0:  # say so now, not after decoding half the frames
        raise OSError(errno.ENOSPC, f"not enough space: {free / 1e6:.0f} MB free, "
                                    f"{KEEP_FREE_BYTES / 1e6:.0f} MB kept free")
    temp = path.with_name(f"{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "xb") as handle:
            handle.write(bytes(HEADER_BYTES))
            written = 0

            def emit(tiles: np.ndarray) -> None:
                nonlocal written
                written += tiles.nbytes
                if written > budget:
                    raise OSError(errno.ENOSPC, f"not enough space: the cache passed "
                                                f"{written / 1e6:.0f} MB with {free / 1e6:.0f} MB "
                                                f"free and {KEEP_FREE_BYTES / 1e6:.0f} MB kept free")
                handle.write(tiles.data)

            builder = TileBuilder(size, tolerance, emit)
            for frame in iter_frames(paths, size):
                builder.add(frame)
            handle.write(np.ascontiguousarray(builder.index_map(), np.int32).data)
            header = {"format": CACHE_FORMAT, "size": list(size), "count": len(paths),
                      "tile": [TILE_H, tile_width(size[0])], "tolerance": tolerance,
                      "versions": builder.versions}
            text = MAGIC + json.dumps(header).encode()
            handle.seek(0)
            handle.write(text.ljust(HEADER_BYTES, b" "))
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
                     if entry.suffix == CACHE_SUFFIX and entry != keep), reverse=True)
    doomed = [entry for _, entry in caches[KEEP_CACHES - 1:]]
    # Format 1 kept every frame whole (527 MiB for the default avatar): nothing reads it now.
    doomed += [entry for entry, _ in entries if entry.suffix == ".npy"]
    doomed += [entry for entry, mtime in entries if entry.suffix == ".tmp" and now - mtime > STALE_TEMP_S]
    for entry in doomed:
        try:
            entry.unlink()  # a process that has it mapped keeps its pages: safe on POSIX
            log.info("template cache: removed %s", entry)
        except OSError:
            pass


def load_image_frames(bundle_dir: Path, spec: str, count: int, size: tuple[int, int],
                      listed: Mapping[str, str], root: Path | None = None,
                      tolerance: int = TOLERANCE) -> TileTemplate:
    """(count, H, W, 3) uint8 frames as tiles: memory-mapped from the cache, or in RAM if the
    cache cannot be written. size is (width, height); tolerance 0: exactly the decoded frames
    (tools that compare with a generator's pixels)."""
    names = image_frame_names(spec, count)
    paths = [bundle_dir / name for name in names]
    root = root if root is not None else cache_dir() / "templates"
    path = root / f"{cache_key(frame_digests(bundle_dir, names, listed), size, tolerance)}{CACHE_SUFFIX}"
    frames = open_cached(path, size, count, tolerance)
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
        write_cache(path, paths, size, tolerance)
    except OSError as err:
        log.warning("template cache: cannot write %s (%s): decoding %d frames into RAM",
                    path, err.strerror or err, count)
        return decode_in_ram(paths, size, tolerance)
    tidy(root, keep=path)
    frames = open_cached(path, size, count, tolerance)
    if frames is None:  # deleted or replaced by something unusable between rename and map
        log.warning("template cache: %s vanished after writing: decoding into RAM", path)
        return decode_in_ram(paths, size, tolerance)
    log.info("template frames: decoded %d frames into %s in %.1f s (%.0f MB as tiles, "
             "%.0f MB whole)", count, path, time.monotonic() - started, frames.nbytes / 1e6,
             count * size[0] * size[1] * 3 / 1e6)
    return frames
