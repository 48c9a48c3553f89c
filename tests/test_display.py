"""Display sinks: null, window (SDL dummy driver), letterbox math, factory and fallback."""
from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from runtime.display import make_sink, open_with_fallback
from runtime.display.null import NullSink
from runtime.display.sink import DisplayError
from runtime.display.sink import NO_BOX, Picture
from runtime.display.window import WindowSink, clip_box, fit_window, letterbox

pygame = pytest.importorskip("pygame")

FRAME = (160, 288)  # (width, height)


def solid(rgb) -> np.ndarray:
    frame = np.empty((FRAME[1], FRAME[0], 3), np.uint8)
    frame[:] = rgb
    return frame


@pytest.fixture()
def no_desktop(monkeypatch):
    """No X11 or Wayland session, whatever the machine running the tests has."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["texture", "surface"])
def window(request):
    """Window sinks on SDL's dummy driver, through each screen path in turn."""
    sinks = []

    def make(**kwargs):
        kwargs.setdefault("driver", "dummy")
        kwargs.setdefault("path", request.param)
        sink = WindowSink(**kwargs)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


# -- null ---------------------------------------------------------------------------------

def test_null_sink_counts_frames():
    sink = NullSink()
    sink.open(FRAME)
    for k in range(5):
        sink.present(Picture(solid((1, 2, 3))), k)
    assert sink.frame_count == 5
    assert not sink.poll_quit()
    assert sink.close() is None


# -- pure geometry -------------------------------------------------------------------------

def test_letterbox_keeps_the_aspect_ratio():
    assert letterbox((160, 288), (160, 288)) == (0, 0, 160, 288)
    assert letterbox((160, 288), (320, 576)) == (0, 0, 320, 576)
    x, y, w, h = letterbox((160, 288), (400, 400))  # portrait frame in a square: side bars
    assert (y, h) == (0, 400) and w == 222 and x == (400 - 222) // 2
    x, y, w, h = letterbox((720, 1280), (1920, 1080))
    assert (y, h, w) == (0, 1080, 608) and x == (1920 - 608) // 2
    x, y, w, h = letterbox((1280, 720), (1080, 1920))  # landscape frame on a portrait screen
    assert (x, w, h) == (0, 1080, 608) and y == (1920 - 608) // 2


def test_fit_window_shrinks_only_frames_larger_than_the_desktop():
    assert fit_window((160, 288), (1920, 1080)) == (160, 288)
    assert fit_window((720, 1280), None) == (720, 1280)
    w, h = fit_window((720, 1280), (1920, 1080))
    assert h == int(1080 * 0.9) and abs(w / h - 720 / 1280) < 0.01


def test_clip_box():
    assert clip_box(None, FRAME) == (0, 0, 160, 288)
    assert clip_box((-10, -5, 30, 20), FRAME) == (0, 0, 20, 15)
    assert clip_box((150, 280, 30, 20), FRAME) == (150, 280, 10, 8)
    assert clip_box((500, 0, 10, 10), FRAME)[2] == 0


# -- window (SDL dummy driver) --------------------------------------------------------------

def test_window_shows_template_and_patch_and_redraws_only_the_patches_on_the_same_template(window):
    sink = window()  # window size = frame size: the screenshot is the frame, pixel for pixel
    sink.open(FRAME)
    red = solid((200, 30, 40))
    patch = np.full((48, 64, 3), (20, 220, 60), np.uint8)
    box = (40, 100, 64, 48)
    sink.present(Picture(red, patch, box, template_key=0), 0)
    assert np.array_equal(sink.screenshot(), Picture(red, patch, box).composed())
    # The same template frame (key 0), the patch moved: the old box is the template again.
    moved = (60, 150, 64, 48)
    sink.present(Picture(red, patch, moved, template_key=0), 1)
    assert np.array_equal(sink.screenshot(), Picture(red, patch, moved).composed())
    # A stale template array under the same key is not redrawn outside the patch boxes:
    # the key is the sink's licence to skip, so only the two patch boxes were uploaded.
    blue = solid((10, 10, 250))
    sink.present(Picture(blue, None, NO_BOX, template_key=0), 2)
    shot = sink.screenshot()
    x, y, w, h = moved
    assert np.array_equal(shot[y:y + h, x:x + w], blue[y:y + h, x:x + w])
    outside = np.ones(shot.shape[:2], bool)
    outside[y:y + h, x:x + w] = False
    assert np.array_equal(shot[outside], red[outside])
    # Another template frame: all of it is drawn.
    sink.present(Picture(blue, patch, box, template_key=1), 3)
    assert np.array_equal(sink.screenshot(), Picture(blue, patch, box).composed())
    sink.present(Picture(blue, None, NO_BOX, template_key=1), 4)
    sink.present(Picture(blue, None, NO_BOX, template_key=1), 5)  # nothing changed: no work
    assert np.array_equal(sink.screenshot(), blue)
    assert sink.frame_count == 5
    assert sink.close() is None


def test_window_letterboxes_into_a_window_of_another_shape(window):
    sink = window(window_size=(400, 400))
    sink.open(FRAME)
    sink.present(Picture(solid((250, 250, 250))), 0)
    x, y, w, h = sink.shown_at
    assert (x, y, w, h) == letterbox(FRAME, (400, 400))
    shot = sink.screenshot()
    assert shot.shape == (400, 400, 3)
    assert shot[:, : x - 1].max() == 0 and shot[:, x + w + 1:].max() == 0  # black bars
    assert shot[y + 5:y + h - 5, x + 5:x + w - 5].min() >= 245  # scaled picture


@pytest.mark.parametrize("scale_filter", ["smooth", "fast"])
def test_a_scaled_frame_keeps_its_picture_through_either_filter(window, scale_filter):
    sink = window(window_size=(320, 576), scale_filter=scale_filter)  # twice the frame
    sink.open(FRAME)
    frame = solid((200, 30, 40))
    frame[:, FRAME[0] // 2:] = (10, 200, 30)  # left red, right green
    patch = np.full((40, 40, 3), (0, 0, 250), np.uint8)
    sink.present(Picture(frame, patch, (20, 20, 40, 40), template_key=0), 0)
    shot = sink.screenshot().astype(int)
    assert shot.shape == (576, 320, 3)
    assert np.abs(shot[300, 60] - (200, 30, 40)).max() <= 3
    assert np.abs(shot[300, 260] - (10, 200, 30)).max() <= 3
    assert np.abs(shot[80, 80] - (0, 0, 250)).max() <= 3  # the patch, scaled with the frame


def test_auto_path_takes_the_surface_without_a_gpu_and_says_why(monkeypatch):
    from runtime.display import screen_paths
    sink = WindowSink(driver="dummy")
    try:
        sink.open(FRAME)
        assert sink.screen_path == "surface" and "dummy" in sink.screen_path_reason
    finally:
        sink.close()

    class FakePg:
        error = RuntimeError

        class display:
            @staticmethod
            def get_driver():
                return "x11"

        class Window:
            def __init__(self, *args, **kwargs):
                pass

            def destroy(self):
                pass

    class FakeVideo:
        @staticmethod
        def Renderer(window):
            return object()

        @staticmethod
        def get_drivers():
            return []

    for gl, wanted in (("llvmpipe (LLVM 15.0.6, 256 bits)", "surface"),
                       ("V3D 4.2", "texture"), ("Mesa Intel(R) UHD Graphics", "texture")):
        monkeypatch.setattr(screen_paths, "_gl_renderer_name", lambda gl=gl: gl)
        path, why = screen_paths.choose_path(FakePg, FakeVideo, "auto")
        assert path == wanted and gl in why
    assert screen_paths.choose_path(FakePg, FakeVideo, "texture") == ("texture", "display.path: texture")


def test_a_driver_without_a_window_surface_falls_back_to_the_texture(monkeypatch):
    from runtime.display import window as window_module

    def no_surface(*args, **kwargs):
        raise pygame.error("Window framebuffer support not available")

    monkeypatch.setattr(window_module, "SurfacePath", no_surface)
    sink = WindowSink(driver="dummy", path="surface")
    try:
        sink.open(FRAME)
        assert sink.screen_path == "texture" and "no window surface" in sink.screen_path_reason
        frame = solid((30, 60, 90))
        sink.present(Picture(frame, None, NO_BOX, template_key=0), 0)
        assert np.array_equal(sink.screenshot(), frame)
    finally:
        sink.close()


def test_unknown_path_or_filter_is_rejected_early():
    with pytest.raises(ValueError, match="allowed are auto, texture, surface"):
        WindowSink(path="gpu")
    with pytest.raises(ValueError, match="allowed are smooth, fast"):
        WindowSink(scale_filter="cubic")


def test_fullscreen_fills_the_desktop_and_hides_the_pointer(window):
    sink = window(fullscreen=True)
    sink.open(FRAME)
    desktop = tuple(pygame.display.get_desktop_sizes()[0])
    assert sink.shown_at == letterbox(FRAME, desktop)
    assert not pygame.mouse.get_visible()
    sink.close()


def test_poll_quit_on_escape_q_and_window_close(window):
    sink = window()
    sink.open(FRAME)
    assert not sink.poll_quit()
    for event in (pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE),
                  pygame.event.Event(pygame.KEYDOWN, key=pygame.K_q),
                  pygame.event.Event(pygame.QUIT)):
        pygame.event.post(event)
        assert sink.poll_quit()
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_SPACE))
    assert not sink.poll_quit()


def test_present_rejects_a_frame_of_another_size(window):
    sink = window()
    sink.open(FRAME)
    with pytest.raises(ValueError):
        sink.present(Picture(np.zeros((10, 10, 3), np.uint8)), 0)


@pytest.mark.parametrize("driver", ["x11", "wayland"])
def test_unavailable_driver_gives_a_one_line_display_error(no_desktop, driver):
    sink = WindowSink(driver=driver)
    with pytest.raises(DisplayError) as caught:
        sink.open(FRAME)
    reason = str(caught.value)
    assert driver in reason and "\n" not in reason and reason.startswith("no display (SDL")
    assert "SDL_VIDEODRIVER" not in os.environ  # the environment is given back
    assert sink.close() is None


def test_unknown_driver_name_is_rejected_early():
    with pytest.raises(ValueError, match="allowed are"):
        WindowSink(driver="x12")


def test_driver_environment_is_restored_after_close(window, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "offscreen")
    sink = window()
    sink.open(FRAME)
    assert pygame.display.get_driver() == "dummy"
    sink.close()
    assert os.environ["SDL_VIDEODRIVER"] == "offscreen"


# -- factory and fallback ------------------------------------------------------------------

def test_make_sink_kinds(tmp_path):
    assert isinstance(make_sink("null"), NullSink)
    assert isinstance(make_sink("window", driver="dummy"), WindowSink)
    assert make_sink("record", record_path=tmp_path / "x.mp4").path == tmp_path / "x.mp4"
    with pytest.raises(ValueError):
        make_sink("tv")


def test_a_working_window_needs_no_fallback(window):
    sink, note = open_with_fallback(window(), "null", NullSink, FRAME)
    assert isinstance(sink, WindowSink) and note is None


def test_failing_window_falls_back_to_null(no_desktop):
    sink, note = open_with_fallback(WindowSink(driver="x11"), "null", NullSink, FRAME)
    assert isinstance(sink, NullSink) and sink.frame_size == FRAME
    assert note.startswith("no display (SDL driver x11") and "null sink" in note


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_failing_window_falls_back_to_record(no_desktop, tmp_path):
    target = tmp_path / "fallback.mp4"
    sink, note = open_with_fallback(WindowSink(driver="x11"), "record",
                                    lambda: make_sink("record", record_path=target), FRAME)
    try:
        assert sink.name == "record"
        assert note.endswith(f"recording to {target} instead") and "x11" in note
    finally:
        sink.close()


def test_fallback_exit_reraises(no_desktop):
    with pytest.raises(DisplayError, match="x11"):
        open_with_fallback(WindowSink(driver="x11"), "exit", NullSink, FRAME)


def test_failing_fallback_names_both_reasons(no_desktop):
    class Broken(NullSink):
        def open(self, frame_size):
            raise DisplayError("broken too")

    with pytest.raises(DisplayError, match="x11.*fallback null failed too: broken too"):
        open_with_fallback(WindowSink(driver="x11"), "null", Broken, FRAME)


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="Linux only: elsewhere a desktop needs no DISPLAY")
def test_auto_without_a_screen_is_no_display(no_desktop):
    # SDL would quietly pick its invisible offscreen driver; the fallback must take over.
    with pytest.raises(DisplayError, match="no display"):
        WindowSink(driver="auto").open(FRAME)
