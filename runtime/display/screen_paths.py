"""How the window sink gets a frame onto the screen: a GPU texture, or the CPU into SDL's window surface.

texture  The frame goes into a streaming SDL texture and SDL's renderer scales it on the GPU.
         Cheapest where GL is hardware (a Pi's V3D under KMSDRM, a desktop GPU, Metal).
surface  The frame is blitted (and scaled, where the screen is larger) by the CPU into the
         window's own surface, shown with SDL's plain framebuffer update
         (SDL_FRAMEBUFFER_ACCELERATION=0: on X11 an XShm image). Where GL is software
         (llvmpipe, Xvfb, a VM) every texture upload and draw is CPU work too, and costs 5-10
         times more: measured 11.3 ms against 2.4 ms per 1080x1920 frame here.
         (runtime/display/surface_path.py)

`choose_path` picks one for "auto" and says why (`edgemate check` and the status show it).
Both paths take the frame as the template plus the patch (runtime/display/sink.py) and make
one pass over the frame each.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

import numpy as np

from .dirty import Redraw
from .sink import Box, Picture

log = logging.getLogger(__name__)

#: Values of display.path.
PATHS = ("auto", "texture", "surface")
#: Values of display.scale_filter (the surface path's CPU scaling).
SCALE_FILTERS = ("smooth", "fast")
#: Substrings of GL_RENDERER that mean rendering on the CPU.
SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "software", "swiftshader", "lavapipe")
_BLACK = (0, 0, 0, 255)
_GL_RENDERER = 0x1F01


def _gl_renderer_name() -> str | None:
    """GL_RENDERER of the current context (SDL's renderer made it current), or None."""
    names = ("GL", "GLESv2") if sys.platform != "darwin" else ()
    for name in names:
        path = ctypes.util.find_library(name)
        if path is None:
            continue
        try:
            lib = ctypes.CDLL(path)
            lib.glGetString.restype = ctypes.c_char_p
            lib.glGetString.argtypes = (ctypes.c_uint,)
            value = lib.glGetString(_GL_RENDERER)
        except (OSError, AttributeError):
            continue
        if value:
            return value.decode(errors="replace")
    return None


def choose_path(pg, video, wanted: str) -> tuple[str, str]:
    """(path, why) for display.path `wanted` on the SDL driver in use (display initialised)."""
    driver = pg.display.get_driver()
    if wanted != "auto":
        return wanted, f"display.path: {wanted}"
    if driver in ("dummy", "offscreen"):
        return "surface", f"SDL driver {driver} has no GPU"
    if driver == "kmsdrm":
        # SDL2's KMSDRM backend draws through EGL/GLES: its renderer is the GPU's.
        return "texture", "KMSDRM renders through the GPU (GLES)"
    # A hidden window of its own: the real one must not carry a renderer (or a GL context)
    # when its plain surface is wanted.
    probe = renderer = None
    try:
        probe = pg.Window("EdgeMate probe", size=(16, 16), hidden=True)
        renderer = video.Renderer(probe)  # makes SDL's GL context current, where it uses GL
        gl = _gl_renderer_name()
        drivers = [str(info.name) for info in video.get_drivers()]
    except pg.error as exc:
        return "surface", f"no SDL renderer ({' '.join(str(exc).split())})"
    finally:
        del renderer
        if probe is not None:
            probe.destroy()
    if gl is not None and any(mark in gl.lower() for mark in SOFTWARE_GL):
        return "surface", f"GL is software ({gl})"
    if gl is not None:
        return "texture", f"GL renderer {gl}"
    if drivers == ["software"]:
        return "surface", "SDL has only its software renderer here"
    return "texture", f"SDL renderers {', '.join(drivers)} (GL renderer unknown: assumed GPU)"


def blit_picture(pg, target, picture: Picture, frame_size: tuple[int, int],
                 boxes: list[Box] | None = None, at: tuple[int, int] = (0, 0)) -> None:
    """The template (all of it, or the `boxes` of it) and then the patch into `target` at
    `at`, converted to the target's pixel format on the way; no copy of the frame is made."""
    ax, ay = at
    source = pg.image.frombuffer(picture.template, frame_size, "RGB")  # a view, not a copy
    if boxes is None:
        target.blit(source, at)
    else:
        target.blits([(source, (ax + x, ay + y), (x, y, w, h)) for x, y, w, h in boxes],
                     doreturn=False)
    if picture.patch is not None:
        px, py, pw, ph = picture.box
        target.blit(pg.image.frombuffer(picture.patch, (pw, ph), "RGB"), (ax + px, ay + py))


class TexturePath:
    """A streaming ARGB texture scaled to the window by SDL's renderer (GPU)."""

    name = "texture"
    redraw_mode = "changed boxes, each uploaded; the texture drawn whole"

    def __init__(self, pg, video, window, frame_size: tuple[int, int], dst: Box) -> None:
        self._pg = pg
        self._renderer = video.Renderer(window)
        self._texture = video.Texture(self._renderer, frame_size, streaming=True,
                                      scale_quality=video.SCALEQUALITY_LINEAR)
        # The surface carries an alpha byte to match the texture's ARGB8888 format (no
        # conversion on upload); blending is off so that byte is never used.
        self._texture.blend_mode = 0
        self._surface = pg.Surface(frame_size, pg.SRCALPHA, 32)
        self._surface.fill(_BLACK)
        self._scratch = np.empty(frame_size[0] * frame_size[1] * 3, np.uint8)
        self._frame = np.zeros((frame_size[1], frame_size[0], 3), np.uint8)
        self.frame_size, self.dst = frame_size, dst
        self._upload((0, 0, *frame_size))
        self.redraw()

    def draw(self, picture: Picture, redraw: Redraw) -> None:
        """Repaint what `redraw` names: the changed boxes uploaded one by one (where the
        outline of a swaying head changes, one box around them all is most of the frame),
        else one box around everything."""
        boxes = redraw.partial_boxes()
        if boxes:
            self._draw_boxes(picture, boxes)
            return
        pg, frame = self._pg, self._frame
        x, y, w, h = box = redraw.bounds()
        if (w, h) == self.frame_size:
            picture.paint_into(frame)  # the template, then the patch: one pass
            region = frame
        else:
            frame[y:y + h, x:x + w] = picture.template[y:y + h, x:x + w]
            if picture.patch is not None:
                px, py, pw, ph = picture.box
                frame[py:py + ph, px:px + pw] = picture.patch
            # frombuffer needs contiguous rows; a slice of the preallocated scratch avoids
            # a new array per frame.
            region = self._scratch[: w * h * 3].reshape(h, w, 3)
            np.copyto(region, frame[y:y + h, x:x + w])
        # Blitting into the surface converts RGB -> ARGB reading a buffer still in cache.
        self._surface.blit(pg.image.frombuffer(region, (w, h), "RGB"), (x, y))
        self._upload(box)
        self.redraw()

    def _draw_boxes(self, picture: Picture, boxes: list[Box]) -> None:
        # RGB -> ARGB in the surface for the boxes alone; frames drawn whole or by one box
        # write their region of _frame first, so it need not follow these.
        blit_picture(self._pg, self._surface, picture, self.frame_size, boxes)
        for box in boxes:
            self._upload(box)
        self.redraw()

    def _upload(self, box: Box) -> None:
        # A subsurface shares the parent's pixels and pitch: SDL uploads just that box.
        self._texture.update(self._surface.subsurface(box), box)

    def redraw(self, show: bool = True) -> None:
        # The whole texture is drawn every time (a GPU copy): after present() the back
        # buffer's contents are undefined, so only the upload can be limited to the box.
        self._renderer.draw_color = _BLACK
        self._renderer.clear()  # the letterbox bars
        self._texture.draw(dstrect=self.dst)
        if show:
            self._renderer.present()

    def reset(self) -> None:
        """Some backends (Direct3D, lost GL contexts) drop texture contents: re-upload."""
        self._upload((0, 0, *self.frame_size))
        self.redraw()

    def screenshot(self) -> np.ndarray:
        # Read the back buffer before present(): after it, its contents are undefined.
        self.redraw(show=False)
        surf = self._renderer.to_surface()
        self._renderer.present()
        return self._pg.surfarray.array3d(surf).transpose(1, 0, 2).copy()

    def close(self) -> None:
        self._texture = self._renderer = self._surface = None
