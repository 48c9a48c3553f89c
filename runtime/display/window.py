"""WindowSink: frames on screen through pygame-ce (a desktop window, or the whole screen).

The frame is letterboxed into the window by one of two paths (runtime/display/screen_paths.py):
a GPU texture where GL is hardware, or the CPU into SDL's plain window surface where GL is
software; display.path "auto" picks, and `screen_path` / `screen_path_reason` say which and why. When
the template frame is the one already shown (a still template), only the old and new patch
boxes are redrawn; when it is another frame of a tiled template, the tiles that differ too.
The same code drives a desktop (x11, wayland, macOS), a console kiosk (kmsdrm) and the
headless test driver (dummy).
"""
from __future__ import annotations

import logging
import os

import numpy as np

from runtime.system.quiet import quiet_stderr
from .dirty import Redraw, merge_overlapping
from .screen_paths import PATHS, SCALE_FILTERS, TexturePath, choose_path
from .sink import NO_BOX, DisplayError, DisplaySink, Picture
from .surface_path import SurfacePath

log = logging.getLogger(__name__)

#: Values of display.driver; "auto" leaves the choice to SDL (and to $SDL_VIDEODRIVER).
DRIVERS = ("auto", "x11", "wayland", "kmsdrm", "dummy")
#: A window that would not fit the desktop is shrunk to this share of it.
_DESKTOP_SHARE = 0.9
#: SDL drivers that show nothing; "auto" must not settle for them.
_INVISIBLE = ("offscreen", "dummy")


def letterbox(frame_size: tuple[int, int], out_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the largest box with the frame's aspect ratio, centred in out_size."""
    fw, fh = frame_size
    ow, oh = out_size
    scale = min(ow / fw, oh / fh)
    w = max(1, min(ow, round(fw * scale)))
    h = max(1, min(oh, round(fh * scale)))
    return (ow - w) // 2, (oh - h) // 2, w, h


def fit_window(frame_size: tuple[int, int], desktop: tuple[int, int] | None) -> tuple[int, int]:
    """Window size for window_size: null: the frame size, shrunk to fit the desktop."""
    if desktop is None or (frame_size[0] <= desktop[0] and frame_size[1] <= desktop[1]):
        return frame_size
    limit = (int(desktop[0] * _DESKTOP_SHARE), int(desktop[1] * _DESKTOP_SHARE))
    _, _, w, h = letterbox(frame_size, limit)
    return w, h


def clip_box(box: tuple[int, int, int, int] | None,
             frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box clipped to the frame; None means the whole frame. May be empty (w or h 0)."""
    fw, fh = frame_size
    if box is None:
        return 0, 0, fw, fh
    x, y, w, h = (int(v) for v in box)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(fw, x + w), min(fh, y + h)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def _import_pygame():
    # pygame prints a banner on import unless told not to; the journal does not need it.
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
        from pygame._sdl2 import video
    except ImportError as exc:
        raise DisplayError(f"no display (pygame is not installed: pip install pygame-ce; "
                           f"{exc})") from None
    return pygame, video


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or "unknown SDL error"


def probe_path(driver: str = "auto", path: str = "auto") -> tuple[str, str, str]:
    """(SDL driver, screen path, why) that a window sink would take here, for `edgemate
    check`; opens no visible window. DisplayError with a one-line reason if there is no screen."""
    pg, video = _import_pygame()
    before = os.environ.get("SDL_VIDEODRIVER")
    if driver != "auto":
        os.environ["SDL_VIDEODRIVER"] = driver
    initialised = False
    try:
        if not pg.display.get_init():
            with quiet_stderr():
                pg.display.init()
            initialised = True
        chosen = pg.display.get_driver()
        if driver == "auto" and chosen in _INVISIBLE and before is None:
            raise DisplayError(f"no display (no screen found, SDL would fall back to its "
                               f"{chosen} driver)")
        return (chosen, *choose_path(pg, video, path))
    except pg.error as exc:
        raise DisplayError(f"no display (SDL driver {driver}: {_one_line(exc)})") from None
    finally:
        if initialised:
            pg.display.quit()
        if driver != "auto":
            if before is None:
                os.environ.pop("SDL_VIDEODRIVER", None)
            else:
                os.environ["SDL_VIDEODRIVER"] = before


class WindowSink(DisplaySink):
    """A window (or the whole screen) showing the frames, letterboxed to keep the aspect ratio.

    fullscreen: fill the desktop and hide the pointer (kmsdrm is always fullscreen: a console
    has no desktop). driver: SDL video driver, one of DRIVERS. window_size: (width, height)
    of the window, or None for the frame size (shrunk to fit the desktop). path: one of
    screen_paths.PATHS; scale_filter: how the surface path scales (SCALE_FILTERS).
    """

    name = "window"

    def __init__(self, fullscreen: bool = False, driver: str = "auto",
                 window_size: tuple[int, int] | None = None, title: str = "EdgeMate",
                 path: str = "auto", scale_filter: str = "smooth") -> None:
        if driver not in DRIVERS:
            raise ValueError(f"display driver {driver!r}: allowed are {', '.join(DRIVERS)}")
        if path not in PATHS:
            raise ValueError(f"display path {path!r}: allowed are {', '.join(PATHS)}")
        if scale_filter not in SCALE_FILTERS:
            raise ValueError(f"scale filter {scale_filter!r}: allowed are {', '.join(SCALE_FILTERS)}")
        self.wanted_path, self.scale_filter = path, scale_filter
        #: The path in use once open ("texture" or "surface"), and why it was chosen.
        self.screen_path: str | None = None
        self.screen_path_reason: str | None = None
        if window_size is not None and (len(window_size) != 2 or min(window_size) < 1):
            raise ValueError(f"window_size {window_size!r}: need [width, height], both >= 1")
        self.fullscreen = bool(fullscreen) or driver == "kmsdrm"
        self.driver = driver
        self.window_size = (None if window_size is None
                            else (int(window_size[0]), int(window_size[1])))
        self.title = title
        self.frame_size: tuple[int, int] | None = None
        self.frame_count = 0
        self._pg = None
        self._window = None
        self._screen: TexturePath | SurfacePath | None = None
        # The template frame on screen and the patch box over it (what the next frame undoes).
        self._shown_key: object = None
        self._shown_tiles: object = None  # the tiled template that key belongs to, if any
        self._shown_box = NO_BOX
        self._dst: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._env_before: str | None = None
        self._env_set = False
        self._we_initialised = False

    # -- open / close -------------------------------------------------------------------

    def open(self, frame_size: tuple[int, int]) -> None:
        if self._window is not None:
            raise DisplayError("window sink is already open")
        fw, fh = int(frame_size[0]), int(frame_size[1])
        if fw < 1 or fh < 1:
            raise DisplayError(f"window sink: bad frame size {fw}x{fh}")
        pg, video = _import_pygame()
        self._pg = pg
        self._set_driver()
        try:
            self._create(pg, video, (fw, fh))
        except (pg.error, OSError, ValueError) as exc:
            self._teardown()
            raise DisplayError(
                f"no display (SDL driver {self.driver}: {_one_line(exc)})") from None
        log.info("window open: SDL driver %s, window %dx%d%s, frame %dx%d shown at %s; "
                 "path %s (%s); redraws %s", pg.display.get_driver(), *self._window.size,
                 " fullscreen" if self.fullscreen else "", fw, fh, self._dst, self.screen_path,
                 self.screen_path_reason, self.redraw_mode)

    def _set_driver(self) -> None:
        """Point SDL at the configured driver; it reads $SDL_VIDEODRIVER at display.init()."""
        if self.driver == "auto":
            return
        self._env_before = os.environ.get("SDL_VIDEODRIVER")
        os.environ["SDL_VIDEODRIVER"] = self.driver
        self._env_set = True

    def _create(self, pg, video, frame_size: tuple[int, int]) -> None:
        if (pg.display.get_init() and self.driver != "auto"
                and pg.display.get_driver() != self.driver):
            # An earlier user initialised another driver; SDL only switches on a fresh init.
            pg.display.quit()
        if not pg.display.get_init():
            with quiet_stderr():  # libwayland's probing noise; SDL's own errors raise
                pg.display.init()
            self._we_initialised = True
        chosen = pg.display.get_driver()
        if self.driver == "auto" and chosen in _INVISIBLE and "SDL_VIDEODRIVER" not in os.environ:
            # SDL falls back to an invisible driver when it finds no screen: that is "no
            # display" for us, so the configured fallback (e.g. record) takes over.
            raise ValueError(f"no screen found, SDL would fall back to its {chosen} driver")
        self.screen_path, self.screen_path_reason = choose_path(pg, video, self.wanted_path)
        desktops = pg.display.get_desktop_sizes()
        desktop = tuple(desktops[0]) if desktops else None
        if self.fullscreen:
            # The desktop's own mode, as set_mode((0, 0), FULLSCREEN) would pick: no mode switch.
            self._window = pg.Window(self.title, size=desktop or frame_size,
                                     fullscreen_desktop=True)
            pg.mouse.set_visible(False)
        else:
            size = self.window_size or fit_window(frame_size, desktop)
            self._window = pg.Window(self.title, size=size, position=pg.WINDOWPOS_CENTERED,
                                     resizable=True)
        self.frame_size = frame_size
        self.frame_count = 0
        self._shown_key, self._shown_tiles, self._shown_box = None, None, NO_BOX
        self._dst = letterbox(frame_size, self._window.size)
        if self.screen_path == "surface":
            try:
                self._screen = SurfacePath(pg, self._window, frame_size, self._dst, self.scale_filter)
            except pg.error as exc:
                # Some backends have no plain window surface (SDL2's Wayland without a
                # framebuffer): the texture path still shows the frames, only dearer.
                log.warning("window surface unavailable (%s): drawing through a texture",
                            _one_line(exc))
                self.screen_path = "texture"
                self.screen_path_reason = f"no window surface on this driver ({_one_line(exc)})"
        if self._screen is None:
            self._screen = TexturePath(pg, video, self._window, frame_size, self._dst)
        self._screen.redraw()

    def close(self) -> str | None:
        if self._pg is None:
            return None
        log.debug("window closed after %d frames", self.frame_count)
        self._teardown()
        return None

    def _teardown(self) -> None:
        pg = self._pg
        if self._screen is not None:
            self._screen.close()
            self._screen = None
        if self._window is not None:
            try:
                self._window.destroy()
            except pg.error:
                pass
            self._window = None
        if pg is not None and self._we_initialised:
            pg.display.quit()  # also brings the pointer back
        self._we_initialised = False
        if self._env_set:
            # Give the environment back so a later sink (or child process) sees the old value.
            if self._env_before is None:
                os.environ.pop("SDL_VIDEODRIVER", None)
            else:
                os.environ["SDL_VIDEODRIVER"] = self._env_before
            self._env_set = False
        self._pg = None

    # -- per frame ----------------------------------------------------------------------

    def present(self, picture: Picture, index: int) -> None:
        if self._window is None:
            raise DisplayError("window sink is not open")
        fw, fh = self.frame_size
        template = picture.template
        if template.shape != (fh, fw, 3) or template.dtype != np.uint8:
            raise ValueError(f"frame {template.shape} {template.dtype}: expected ({fh}, {fw}, 3) uint8")
        redraw = self._what_changed(picture)
        self._shown_key, self._shown_tiles = picture.template_key, picture.template_tiles
        self._shown_box = picture.box
        if redraw.empty:
            return  # nothing changed: the screen already shows this frame
        try:
            self._screen.draw(picture, redraw)
        except self._pg.error as exc:
            raise DisplayError(f"window: SDL error while drawing: {_one_line(exc)}") from None
        self.frame_count += 1

    def _what_changed(self, picture: Picture) -> Redraw:
        """Against the frame on screen: the old and new patch boxes where the template frame
        is the same; also the tiles that differ where both are frames of one tiled template;
        else everything."""
        key, tiles = picture.template_key, picture.template_tiles
        if key is None or self._shown_key is None or tiles is not self._shown_tiles:
            return Redraw(self.frame_size)
        patches = merge_overlapping(clip_box(self._shown_box, self.frame_size),
                                    clip_box(picture.box, self.frame_size))
        if key == self._shown_key:
            return Redraw(self.frame_size, whole=False, boxes=patches)
        if tiles is None:
            return Redraw(self.frame_size)
        return Redraw(self.frame_size, whole=False, tiles=tiles.changed_tiles(self._shown_key, key),
                      grid=tiles.tile_grid, boxes=patches)

    def poll_quit(self) -> bool:
        if self._window is None:
            return False
        pg = self._pg
        wanted = False
        for event in pg.event.get():
            if event.type in (pg.QUIT, pg.WINDOWCLOSE):
                wanted = True
            elif event.type == pg.KEYDOWN and event.key in (pg.K_ESCAPE, pg.K_q):
                wanted = True
            elif event.type in (pg.WINDOWSIZECHANGED, pg.WINDOWRESIZED):
                self._dst = letterbox(self.frame_size, self._window.size)
                self._screen.dst = self._dst
                if isinstance(self._screen, SurfacePath):
                    self._screen.resized(self._window, self._dst)
                    self._shown_key = None  # the new surface is blank: draw a whole frame next
                self._screen.redraw()
            elif event.type in (pg.RENDER_TARGETS_RESET, pg.RENDER_DEVICE_RESET):
                self._screen.reset()
        return wanted

    @property
    def redraw_mode(self) -> str | None:
        """What each frame redraws on this screen path (None before open)."""
        return self._screen.redraw_mode if self._screen is not None else None

    @property
    def shown_at(self) -> tuple[int, int, int, int]:
        """Where the frame is drawn in the window, (x, y, w, h) in window pixels."""
        return self._dst

    def screenshot(self) -> np.ndarray:
        """The window's current pixels as (H, W, 3) uint8 RGB (for tests and `edgemate check`)."""
        if self._window is None:
            raise DisplayError("window sink is not open")
        return self._screen.screenshot()
