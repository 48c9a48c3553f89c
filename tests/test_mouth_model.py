"""The explicit mouth model (tools/make_avatar/mouth_model.py) on a synthetic face: zero
parameters give the template exactly, the box edge never moves, `open` opens a cavity that
grows with it and `press` shuts it, `wide` widens the lips. With mediapipe and the idle
video: the face mesh, run on the synthesised frames, sees the inner-lip gap follow `open`
(r >= 0.95, monotonic), the mouth width follow `wide` (r >= 0.9) and `press` close the lips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tools.make_avatar.mouth_model import (FIXED, INNER_LOWER, INNER_UPPER, JAW, OUTER_LOWER,
                                           OUTER_UPPER, MouthModel, polygon_mask)
from tools.make_avatar.source import mouth_box

EXTERNAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "external"


def synthetic_face(size=400, cx=200.0, mouth_y=250.0, width=80.0):
    """A skin-coloured frame with red lips and a mesh whose mouth, jaw and anchors sit where
    mediapipe would put them (other points on the face oval)."""
    points = np.zeros((478, 2))
    angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    points[:] = np.stack([cx + 1.3 * width * np.cos(angles), 200 + 1.7 * width * np.sin(angles)], 1)
    half = width / 2

    def arc(indices, y_mid, bulge):
        u = np.linspace(-1, 1, len(indices))
        for i, t in zip(indices, u):
            points[i] = (cx + half * t, y_mid + bulge * (1 - t * t))

    arc(OUTER_UPPER, mouth_y, -0.16 * width)
    arc((61,) + OUTER_LOWER + (291,), mouth_y, 0.20 * width)
    arc(INNER_UPPER, mouth_y - 0.5, -0.02 * width)
    arc((78,) + INNER_LOWER + (308,), mouth_y + 0.5, 0.02 * width)
    points[78], points[308] = (cx - 0.9 * half, mouth_y), (cx + 0.9 * half, mouth_y)
    points[13], points[14] = (cx, mouth_y - 0.5), (cx, mouth_y + 0.5)
    jaw_u = np.linspace(-1, 1, len(JAW))
    for i, t in zip(JAW, jaw_u):
        points[i] = (cx + 1.2 * width * t, mouth_y + 0.4 * width + 0.5 * width * (1 - t * t))
    for n, i in enumerate(FIXED):
        points[i] = (cx + (n % 8 - 3.5) * 0.25 * width, mouth_y - 0.8 * width - 0.1 * width * (n // 8))
    rng = np.random.default_rng(0)
    frame = np.clip(np.array([205.0, 160, 140]) + rng.normal(0, 6, (size, size, 3)), 0, 255)
    lips = polygon_mask(np.array([points[i] for i in OUTER_UPPER + OUTER_LOWER[::-1]]), size, 1)
    frame = frame * (1 - lips[..., None]) + np.array([190.0, 90, 95]) * lips[..., None]
    return frame.astype(np.uint8), points


@pytest.fixture(scope="module")
def model():
    frame, points = synthetic_face()
    return MouthModel(frame, points, mouth_box(points, (400, 400)))


def _dark(crop):
    return int((crop.astype(int).sum(axis=2) < 250).sum())


def test_zero_parameters_give_the_template_exactly_and_the_box_edge_never_moves(model):
    x, y, size = model.box
    template = model.frame[y:y + size, x:x + size]
    assert np.array_equal(model.render(np.zeros(6)), template)
    rng = np.random.default_rng(1)
    for params in [np.ones(6), *rng.uniform(0, 1, (6, 6))]:
        crop = model.render(params).astype(int)
        ring = np.ones((size, size), bool)
        ring[2:-2, 2:-2] = False
        assert np.abs(crop[ring] - template[ring]).max() <= 2  # no visible box edge


def test_open_opens_a_cavity_that_grows_with_it_and_press_shuts_it(model):
    dark = [_dark(model.render(np.array([v, 0, 0, 0, 0, 0]))) for v in np.linspace(0, 1, 6)]
    assert dark[0] == 0 and all(b > a for a, b in zip(dark, dark[1:]))
    assert _dark(model.render(np.array([1.0, 0, 0, 1.0, 0, 0]))) == 0
    # teeth show in an open mouth where asked: light pixels inside the cavity
    open_teeth = model.render(np.array([0.8, 0, 0, 0, 0, 1.0])).astype(int)
    x, y, size = model.box
    template = model.frame[y:y + size, x:x + size].astype(int)
    assert ((open_teeth.min(axis=2) > 200) & (template.min(axis=2) < 180)).sum() > 20


def test_wide_widens_and_round_narrows_the_lips(model):
    def lip_extent(crop):
        red = (crop[..., 0].astype(int) - crop[..., 1]) > 80
        cols = np.where(red.sum(axis=0) >= 3)[0]
        return cols.max() - cols.min()
    rest = lip_extent(model.render(np.array([0.001, 0, 0, 0, 0, 0])))
    assert lip_extent(model.render(np.array([0, 1.0, 0, 0, 0, 0]))) > rest + 10
    assert lip_extent(model.render(np.array([0, 0, 1.0, 0, 0, 0]))) < rest - 10


def test_the_face_mesh_sees_the_parameters_on_real_frames():
    mp = pytest.importorskip("mediapipe")
    pytest.importorskip("cv2")
    if not (EXTERNAL / "idle_man_720x1080_25fps.mp4").is_file():
        pytest.skip("external footage absent")
    from tools.faces.track import track
    result, frames = track(EXTERNAL / "idle_man_720x1080_25fps.mp4")
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                           refine_landmarks=True)

    def measure(image):
        found = mesh.process(image).multi_face_landmarks
        h, w = image.shape[:2]
        p = np.array([(q.x * w, q.y * h) for q in found[0].landmark])
        eyes = np.linalg.norm(p[263] - p[33])
        return np.linalg.norm(p[13] - p[14]) / eyes, np.linalg.norm(p[61] - p[291]) / eyes

    sweep = np.linspace(0, 1, 11)
    for k in (10, 100):
        frame, points = frames[k], result.points[k]
        box = mouth_box(points, result.size)
        m = MouthModel(frame, points, box)

        def shown(params):
            out = frame.copy()
            x, y, size = box
            out[y:y + size, x:x + size] = m.render(np.array(params, float))
            return out

        gaps = [measure(shown([v, 0, 0, 0, 0, 0.5]))[0] for v in sweep]
        widths = [measure(shown([0.2, v, 0, 0, 0, 0.3]))[1] for v in sweep]
        assert np.corrcoef(sweep, gaps)[0, 1] >= 0.95 and np.all(np.diff(gaps) > -0.005), gaps
        assert np.corrcoef(sweep, widths)[0, 1] >= 0.9, widths
        assert gaps[-1] > 0.18  # as far as real lips open (aoc's reach about 0.25)
        assert measure(shown([0.5, 0, 0, 1.0, 0, 0.3]))[0] < 0.02  # press closes the lips


def test_the_video_source_gives_one_box_size_in_fine_stage_multiples_and_rest_is_the_template():
    from tools.make_avatar.source import VideoMouthSource, box_size_for, crop_boxes
    frame, points = synthetic_face()
    frames = [frame, np.roll(frame, 3, axis=1)]
    tracks = np.stack([points, points + (3.0, 0.0)])
    source = VideoMouthSource(frames, tracks)
    assert source.box_size % 128 == 0 and source.box_size >= 2.2 * 80
    boxes = source.crop_boxes()
    assert boxes.dtype == np.int32 and (boxes[1] - boxes[0]).tolist() == [3, 0]  # follows the face
    x, y = boxes[0]
    assert np.array_equal(source.render_box(0), frame[y:y + source.box_size, x:x + source.box_size])
    assert np.array_equal(source.render_box(0, np.zeros(6)), source.render_box(0))
    assert not np.array_equal(source.render_box(1, np.array([1.0, 0, 0, 0, 0, 0])), source.render_box(1))
    # a box never leaves the frame; a frame smaller than one box is a clear error
    assert (crop_boxes(tracks + (-500.0, 0.0), 256, (400, 400))[:, 0] == 0).all()
    with pytest.raises(ValueError, match="smaller than one 128 px mouth box"):
        box_size_for(tracks, (100, 100))
