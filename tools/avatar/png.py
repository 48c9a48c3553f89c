"""Minimal PNG writer (RGB8) in numpy + zlib: no image library needed to write frames/sheets.

Rows use the PNG "Paeth" filter, computed vectorised from the raw pixels (encoding only ever
needs the unfiltered neighbours), which shrinks the smooth shading of the character a lot.
"""
from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _paeth_filtered(img: np.ndarray) -> np.ndarray:
    """(h, w*3) uint8 rows -> (h, 1 + w*3) rows with filter type 4 (Paeth)."""
    x = img.astype(np.int16)
    a = np.zeros_like(x)
    a[:, 3:] = x[:, :-3]          # left (same channel)
    b = np.zeros_like(x)
    b[1:] = x[:-1]                # up
    c = np.zeros_like(x)
    c[1:, 3:] = x[:-1, :-3]       # up-left
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    out = np.empty((x.shape[0], x.shape[1] + 1), np.uint8)
    out[:, 0] = 4
    out[:, 1:] = ((x - pred) & 0xFF).astype(np.uint8)
    return out


def encode_png(rgb: np.ndarray, level: int = 6) -> bytes:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"encode_png: need (h, w, 3) uint8, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    rows = _paeth_filtered(np.ascontiguousarray(rgb).reshape(h, w * 3))
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b""))


def write_png(path: Path, rgb: np.ndarray, level: int = 6) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves a torn frame."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(encode_png(rgb, level))
    tmp.replace(path)
