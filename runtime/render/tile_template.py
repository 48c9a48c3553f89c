"""A template loop held as tiles, each stored once per version it really takes.

A talking-head loop is mostly still: in the default avatar's 200 frames of 720x1280 only a
quarter of the pixels ever change, and from one frame to the next about a tenth of the 16 px
tiles do. Decoded whole, the loop is 527 MiB (40% of a 2 GB Raspberry Pi, and an 8 s loop
read at 69 MB/s that thrashes an SD card under memory pressure). Held as tiles it is 60 MiB.

The frame is cut into tiles of TILE_H rows x `tile_w` columns (`tile_w` divides the width, so
a frame is a plain C-contiguous (H, W, 3) array; the last tile row may reach below the frame
and is padded). Reading the frames in loop order, a tile gets a new version when some pixel of
it differs from the tile's current version by more than `tolerance` grey levels; otherwise the
frame reuses the current version. So every pixel of every frame is within `tolerance` of the
decoded frame, a seam between tiles is at most `tolerance` levels, and with tolerance 0 the
loop is exact. TOLERANCE = 1: the drawn character's loop carries one-level noise in every
tile (dithered gradients); dropping it takes the loop from 211 MiB (exact) to 60 MiB, and an
idle video from 104 to 86 MiB (measured on idle_man: docs/PERFORMANCE.md).

Frames are made on demand: `frame(k)` updates the frame path's canvas in place, copying only
the tiles whose version differs from what it shows (a tenth of the frame from one loop frame to
the next: 0.13 ms here), and returns a read-only view of it, valid until `frame` is asked for
another frame (the frame path prepares, shows and forgets one frame at a time). `tiles[k]` and
`np.asarray(tiles)` paint a canvas of their own and return new arrays, for code that keeps
frames (tools, tests); they never disturb the frame path's canvas.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

TILE_H = 16
#: Grey levels a stored tile may differ from the decoded one (see the module docstring).
TOLERANCE = 1
_TILE_WIDTHS = (16, 12, 10, 8, 6, 5, 4, 3, 2, 1)


def tile_width(width: int) -> int:
    """The widest tile of at most 16 columns that divides the frame width."""
    return next(w for w in _TILE_WIDTHS if width % w == 0)


def grid_shape(size: tuple[int, int]) -> tuple[int, int, int]:
    """(tile rows, tile columns, tile width) for a frame of size (width, height)."""
    width, height = size
    tw = tile_width(width)
    return -(-height // TILE_H), width // tw, tw


class TileBuilder:
    """Frames in loop order in, tile versions out (to `emit`, in order) and the index map."""

    def __init__(self, size: tuple[int, int], tolerance: int,
                 emit: Callable[[np.ndarray], None]) -> None:
        self.size, self.tolerance, self._emit = size, int(tolerance), emit
        self._rows, self._cols, self._tw = grid_shape(size)
        self._current: np.ndarray | None = None  # (rows * TILE_H, W, 3): each tile's version
        self._version: np.ndarray | None = None  # (P,) int32: its index in the store
        self.versions = 0
        self.rows: list[np.ndarray] = []

    def _padded(self, frame: np.ndarray) -> np.ndarray:
        missing = self._rows * TILE_H - frame.shape[0]
        return np.pad(frame, ((0, missing), (0, 0), (0, 0)), mode="edge") if missing else frame

    def add(self, frame: np.ndarray) -> None:
        rows, cols, tw = self._rows, self._cols, self._tw
        frame = self._padded(np.asarray(frame, np.uint8))
        if self._current is None:
            new = np.arange(rows * cols)
            self._current, self._version = frame.copy(), np.zeros(rows * cols, np.int32)
        else:
            # |frame - current| in uint8 without wrapping, then the largest per tile: first
            # across a tile's rows (whole-row maxima, vectorised), then along its columns.
            # About 1 ms a 720x1280 frame, a fifth of the int16 way: it is on the cold start.
            diff = np.maximum(frame, self._current)
            np.subtract(diff, np.minimum(frame, self._current), out=diff)
            worst = diff.reshape(rows, TILE_H, cols * tw * 3).max(axis=1)
            new = np.flatnonzero(worst.reshape(rows * cols, tw * 3).max(axis=1) > self.tolerance)
        if new.size:
            r, c = new // cols, new % cols
            tiles = frame.reshape(rows, TILE_H, cols, tw, 3)[r, :, c]  # (n, TILE_H, tw, 3), a copy
            self._current.reshape(rows, TILE_H, cols, tw, 3)[r, :, c] = tiles
            self._version[new] = np.arange(self.versions, self.versions + new.size, dtype=np.int32)
            self._emit(tiles)
            self.versions += int(new.size)
        self.rows.append(self._version.copy())

    def index_map(self) -> np.ndarray:
        """(frames, P) int32: the version each frame shows at each tile."""
        return np.stack(self.rows) if self.rows else np.zeros((0, 0), np.int32)


class TileTemplate:
    """(N, H, W, 3) uint8 frames from `index_map` (N, P) int32 and `tiles` (V, TILE_H, tw, 3).

    Both arrays may be read-only memory maps (the template cache); they are never written."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, size: tuple[int, int], index_map: np.ndarray, tiles: np.ndarray,
                 tolerance: int, source: str | None = None) -> None:
        rows, cols, tw = grid_shape(size)
        if index_map.ndim != 2 or index_map.shape[1] != rows * cols or tiles.shape[1:] != (TILE_H, tw, 3):
            raise ValueError(f"tile template: map {index_map.shape} and tiles {tiles.shape} do not "
                             f"fit {size[0]}x{size[1]} frames")
        self.size, self.index_map, self.tiles = size, index_map, tiles
        self.tolerance, self.source = int(tolerance), source  # source: the cache file, if any
        self._grid = (rows, cols, tw)
        self._shown = self._Canvas(rows, cols, tw)  # the frame path's
        self._shown_view = self._shown.pixels[: size[1]]  # what frame() hands out, read-only
        self._shown_view.flags.writeable = False
        self._copies = self._Canvas(rows, cols, tw)  # __getitem__'s, painted then copied
        self._lock = threading.Lock()  # a tool thread may read frames beside the frame thread

    class _Canvas:
        def __init__(self, rows: int, cols: int, tw: int) -> None:
            self.pixels = np.empty((rows * TILE_H, cols * tw, 3), np.uint8)
            self.tiles = self.pixels.reshape(rows, TILE_H, cols, tw, 3)  # a view, for scatter
            self.shows: np.ndarray | None = None  # the version at each tile, None: nothing yet
            self.number = -1

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.index_map), self.size[1], self.size[0], 3)

    @property
    def tile_grid(self) -> tuple[int, int, int, int]:
        """(tile rows, tile columns, tile width, tile height): the layout changed_tiles counts in."""
        rows, cols, tw = self._grid
        return rows, cols, tw, TILE_H

    def changed_tiles(self, before: int, after: int) -> np.ndarray:
        """Flat indices (row * columns + column) of the tiles frame `after` shows differently
        from frame `before`: all a sink showing `before` must redraw to show `after`."""
        index_map = self.index_map
        return np.flatnonzero(index_map[int(before)] != index_map[int(after)])

    @property
    def nbytes(self) -> int:
        """What the loop holds in memory: the tile store and the index map."""
        return int(self.tiles.nbytes + self.index_map.nbytes)

    def __len__(self) -> int:
        return len(self.index_map)

    def frame(self, number: int) -> np.ndarray:
        """Frame `number` as a read-only (H, W, 3) view of the frame path's canvas, valid
        until `frame` is asked for another frame. Painted forward from the frame it showed:
        one loop step copies a tenth of the tiles (two canvases taking turns copied twice
        that, for a guarantee nothing on the frame path needs)."""
        with self._lock:
            if self._shown.number != number:
                self._paint(self._shown, int(number))
        return self._shown_view

    def _paint(self, canvas: "_Canvas", number: int) -> None:
        wanted = self.index_map[number]
        if canvas.shows is None:
            changed = np.arange(wanted.size)
        else:
            changed = np.flatnonzero(canvas.shows != wanted)
            canvas.shows = None  # half painted if the copy below fails: repaint it all next time
        cols = self._grid[1]
        canvas.tiles[changed // cols, :, changed % cols] = self.tiles[wanted[changed]]
        canvas.shows, canvas.number = np.array(wanted), number

    def __getitem__(self, number) -> np.ndarray:
        """A new (H, W, 3) array of frame `number` (an int), kept by nobody else."""
        if not isinstance(number, (int, np.integer)):
            raise TypeError("a tile template is indexed by one frame number")
        if not -len(self) <= number < len(self):
            raise IndexError(f"frame {number} of a {len(self)}-frame template")
        with self._lock:
            self._paint(self._copies, int(number) % len(self))
            return np.array(self._copies.pixels[: self.size[1]])

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, np.uint8)
        with self._lock:
            for k in range(len(self)):
                self._paint(self._copies, k)
                out[k] = self._copies.pixels[: self.size[1]]
        return out if dtype is None else out.astype(dtype)


def tile_template_in_ram(size: tuple[int, int], frames, tolerance: int = TOLERANCE) -> TileTemplate:
    """Tiles from an iterable of (H, W, 3) frames, held in RAM (no cache file)."""
    store: list[np.ndarray] = []
    builder = TileBuilder(size, tolerance, store.append)
    for frame in frames:
        builder.add(frame)
    rows, cols, tw = grid_shape(size)
    tiles = np.concatenate(store) if store else np.zeros((0, TILE_H, tw, 3), np.uint8)
    return TileTemplate(size, builder.index_map(), tiles, tolerance)
