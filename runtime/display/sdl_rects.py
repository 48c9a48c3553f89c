"""Show only some rectangles of a window's surface (SDL_UpdateWindowSurfaceRects).

pygame-ce's Window.flip() sends the whole surface: on X11 an XShmPutImage of every pixel,
1.4 ms for 1080x1920 here, at every frame, though a tenth of the frame changed. SDL has the
call for a list of rectangles; pygame does not expose it for a Window, so it is called here
through ctypes on the SDL library pygame loaded (found in the process's own mappings, never
a second copy: a second copy would know no windows, and `available` is then False).
"""
from __future__ import annotations

import ctypes
import glob
import logging
import os
import sys

log = logging.getLogger(__name__)


class _Rect(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


def _loaded_sdl_paths() -> list[str]:
    """Paths of the SDL2 library this process has loaded (Linux), or pygame's own copy."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                if "libSDL2-2" in os.path.basename(path) or os.path.basename(path).startswith("libSDL2.so"):
                    if path not in paths:
                        paths.append(path)
    except OSError:
        pass
    if not paths:
        import pygame
        here = os.path.dirname(pygame.__file__)
        patterns = ("../pygame_ce.libs/libSDL2*", ".dylibs/libSDL2*", "SDL2.dll")
        for pattern in patterns:
            paths += sorted(glob.glob(os.path.join(here, pattern)))
    return paths


class WindowRects:
    """update(boxes) shows those (x, y, w, h) boxes of the window's surface; False (and
    nothing shown) where SDL's call is not reachable: the caller then flips it whole."""

    def __init__(self, window) -> None:
        self._lib = self._window = None
        if sys.platform == "win32":
            return  # not tried there; flip() it is
        for path in _loaded_sdl_paths():
            try:
                lib = ctypes.CDLL(path)
                lib.SDL_GetWindowFromID.restype = ctypes.c_void_p
                lib.SDL_GetWindowFromID.argtypes = (ctypes.c_uint32,)
                lib.SDL_UpdateWindowSurfaceRects.restype = ctypes.c_int
                lib.SDL_UpdateWindowSurfaceRects.argtypes = (ctypes.c_void_p, ctypes.c_void_p,
                                                             ctypes.c_int)
            except (OSError, AttributeError):
                continue
            handle = lib.SDL_GetWindowFromID(int(window.id))
            if handle:  # the copy pygame made the window with
                self._lib, self._window = lib, handle
                break
        if self._lib is None:
            log.debug("SDL_UpdateWindowSurfaceRects not reachable: whole-window updates")
        self._rects = (_Rect * 64)()

    @property
    def available(self) -> bool:
        return self._lib is not None

    def update(self, boxes) -> bool:
        if self._lib is None:
            return False
        count = len(boxes)
        if count > len(self._rects):
            self._rects = (_Rect * count)()
        rects = self._rects
        for i, (x, y, w, h) in enumerate(boxes):
            rect = rects[i]
            rect.x, rect.y, rect.w, rect.h = x, y, w, h
        return self._lib.SDL_UpdateWindowSurfaceRects(self._window, rects, count) == 0
