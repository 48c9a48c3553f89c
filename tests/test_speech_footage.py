"""Mouth shapes from talking footage (tools/make_avatar/speech.py) and the six parameters
measured from a mesh (tools/faces/mouth_params.py), on synthetic meshes and frames: no face
tracker needed, so this runs everywhere."""
from __future__ import annotations

import numpy as np
import pytest

from tools.avatar.dataset import DatasetSpec, read_shard, shard_name, write_pairs
from tools.faces.mouth_params import OPEN_GAP, ROUND_SHIFT, WIDE_SHIFT, measure, rest_from
from tools.make_avatar.mouth_model import JAW
from tools.make_avatar.source import VideoMouthSource
from tools.make_avatar.speech import (RUN, STABLE, Footage, FootagePairs, SpeechTargets, apply,
                                      similarity)
from tools.faces.mouth_params import distances

SIZE = 400


def face_mesh(rng: np.random.Generator | None = None) -> np.ndarray:
    """(478, 2) points laid out like a frontal face: the landmarks the code reads placed where
    a face has them, the rest scattered over the upper face."""
    rng = rng or np.random.default_rng(0)
    points = np.column_stack([rng.uniform(140, 260, 478), rng.uniform(120, 230, 478)])
    fixed = {33: (150, 150), 133: (180, 152), 362: (220, 152), 263: (250, 150),
             98: (185, 235), 2: (200, 240), 327: (215, 235),
             61: (170, 270), 291: (230, 270), 78: (174, 270), 308: (226, 270),
             13: (200, 269), 14: (200, 271), 0: (200, 262), 17: (200, 280)}
    for index, xy in fixed.items():
        points[index] = xy
    for n, index in enumerate(JAW):  # a U from one jaw corner under the chin to the other
        angle = np.pi * n / (len(JAW) - 1)
        points[index] = (200 - 75 * np.cos(angle), 250 + 80 * np.sin(angle))
    return points


def test_measured_parameters_invert_the_mouth_models_geometry():
    rest_mesh = face_mesh()
    d = distances(rest_mesh[None])
    eyes = 100.0
    w0 = d["width"][0] * eyes  # px
    meshes = [rest_mesh.copy() for _ in range(5)]
    meshes[1][14, 1] += 0.5 * OPEN_GAP * w0  # open 0.5
    for mesh, sign, shift in ((meshes[2], 1, WIDE_SHIFT), (meshes[3], -1, ROUND_SHIFT)):
        mesh[61, 0] -= sign * 0.5 * shift * w0  # each corner half the model's shift
        mesh[291, 0] += sign * 0.5 * shift * w0
    meshes[4][0, 1] += 2.0  # lips 4 px thinner of 16 (7 + 9): pressed
    meshes[4][17, 1] -= 2.0
    meshes.append(np.full_like(rest_mesh, np.nan))  # no face: no guess
    params = measure(np.stack(meshes), rest_from(np.stack(meshes[:1] * 3)))
    assert np.allclose(params[0], 0, atol=1e-6)
    assert params[1, 0] == pytest.approx(0.5, abs=1e-3)
    assert params[2, 1] == pytest.approx(0.5, abs=1e-3) and params[2, 2] == 0
    assert params[3, 2] == pytest.approx(0.5, abs=1e-3) and params[3, 1] == 0
    assert params[4, 3] == pytest.approx((4 / 16) / 0.40, abs=1e-3) and params[4, 0] == 0
    assert np.isnan(params[5]).all() and np.all(params[:5, 4:] == 0)
    assert ((params[:5] >= 0) & (params[:5] <= 1)).all()


def test_rest_is_the_most_closed_frames():
    mesh = face_mesh()
    meshes = np.repeat(mesh[None], 20, axis=0)
    meshes[:15, 14, 1] += np.linspace(5, 30, 15)[:, None].ravel()  # talking frames
    rest = rest_from(meshes)
    assert rest.gap == pytest.approx(distances(mesh[None])["gap"][0]) and rest.frames == 3


def test_similarity_recovers_rotation_scale_and_shift():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (17, 2))
    angle, scale, shift = 0.2, 1.3, np.array([12.0, -7.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    matrix = similarity(src, dst)
    assert np.allclose(apply(matrix, src), dst, atol=1e-9)
    assert np.allclose(matrix[:, :2], scale * rot) and np.allclose(matrix[:, 2], shift)


def _scene(rng, frames: int, shift=(0.0, 0.0), mouth: float = 0.0) -> tuple[list, np.ndarray]:
    """Frames of a textured face moved by `shift`, with a red mouth `mouth` px tall."""
    base = (rng.uniform(90, 160, (SIZE, SIZE, 3))).astype(np.uint8)
    mesh = face_mesh() + shift
    out = []
    for _ in range(frames):
        frame = np.roll(base, (int(shift[1]), int(shift[0])), axis=(0, 1)).copy()
        if mouth:
            cy, cx = int(mesh[13, 1]), int(mesh[13, 0])
            frame[cy:cy + int(mouth), cx - 25:cx + 25] = (200, 20, 20)
        out.append(frame)
    return out, np.repeat(mesh[None], frames, axis=0)


def _footage(rng, frames: int = 3 * RUN) -> Footage:
    images, points = _scene(rng, frames, shift=(6.0, -4.0), mouth=14.0)
    usable = np.ones(frames, bool)
    params = np.tile(np.array([0.6, 0.1, 0, 0, 0, 0], np.float32), (frames, 1))
    rest = rest_from(face_mesh()[None].repeat(3, axis=0))
    return Footage("synthetic", images, points, params, usable, rest, distances(points))


def test_a_target_is_the_talking_mouth_aligned_into_the_template_box_and_the_template_elsewhere():
    rng = np.random.default_rng(2)
    frames, points = _scene(rng, 2)
    template = VideoMouthSource(frames, points)
    targets = SpeechTargets(_footage(rng), template)
    box = template.render_box(0, None)
    made = targets.target(0, 0)
    x, y = (int(v) for v in template.crop_boxes()[0])
    size = template.box_size
    assert made.shape == box.shape and made.dtype == np.uint8
    # The footage's face moved by (6, -4): the alignment undoes it, so its red mouth lands
    # just under the template's upper lip.
    cy, cx = int(points[0, 13, 1]) - y, int(points[0, 13, 0]) - x
    red = made[cy + 2:cy + 12, cx - 15:cx + 15].astype(int)
    assert (red[..., 0] - red[..., 1] > 120).mean() > 0.9
    # Far from the lower face (the box's top corners) the template is kept exactly.
    assert np.array_equal(made[:20, :20], box[:20, :20])
    assert np.array_equal(made[:20, -20:], box[:20, -20:])
    assert made.shape[0] == size


def test_footage_rows_come_in_runs_with_their_own_targets_and_feed_the_dataset(tmp_path):
    rng = np.random.default_rng(3)
    frames, points = _scene(rng, 6)
    template = VideoMouthSource(frames, points)
    source = FootagePairs(template, _footage(rng), share=0.5)
    index, params, sequence, given = source.sample_rows(np.random.default_rng(4), 48, 6,
                                                        DatasetSpec("x", 0, (SIZE, SIZE), 256, 6).mix)
    assert len(index) == len(params) == len(sequence) == 48
    speech_rows = sorted(given)
    assert len(speech_rows) == 24 and speech_rows == list(range(24, 48))
    runs = sequence[24:].reshape(-1, RUN)
    assert all(len(set(run)) == 1 for run in runs) and len({run[0] for run in runs}) == len(runs)
    assert not set(runs[:, 0]) & set(sequence[:24][sequence[:24] >= 0])  # ids never shared
    for run_index in index[24:].reshape(-1, RUN):  # consecutive video frames of a forward loop
        assert set(np.diff(run_index) % 6) == {1}
    assert np.allclose(params[24:], [0.6, 0.1, 0, 0, 0, 0])
    spec = DatasetSpec("synthetic footage", 0, (SIZE, SIZE), template.box_size, 6, pairs=32,
                       shard_size=16)
    write_pairs(tmp_path, spec, source)
    shard = read_shard(tmp_path / shard_name(0))
    assert shard["target_crop"].shape == (16, template.box_size, template.box_size, 3)
    rows = np.flatnonzero(np.isclose(shard["params"][:, 0], 0.6) & np.isclose(shard["params"][:, 1], 0.1))
    assert len(rows) == 8  # half of 16, one run
    for row in rows:
        k = int(shard["template_index"][row])
        assert np.array_equal(shard["template_crop"][row], template.render_box(k, None))
        assert not np.array_equal(shard["target_crop"][row], shard["template_crop"][row])


def test_footage_without_a_clean_run_is_refused():
    rng = np.random.default_rng(5)
    frames, points = _scene(rng, 2)
    footage = _footage(rng)
    footage.usable[::RUN - 1] = False
    with pytest.raises(ValueError, match="consecutive frames"):
        FootagePairs(VideoMouthSource(frames, points), footage, share=0.5)


def test_stable_points_are_not_mouth_or_jaw_points():
    from tools.make_avatar.mouth_model import INNER_LOWER, INNER_UPPER, OUTER_LOWER, OUTER_UPPER
    moving = set(JAW) | set(OUTER_UPPER) | set(OUTER_LOWER) | set(INNER_UPPER) | set(INNER_LOWER)
    assert not set(STABLE) & moving


def test_truth_scores_psnr_and_ssim():
    from tools.make_avatar.truth import psnr, ssim
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8)
    assert psnr(a, a) == 100.0 and 34.1 < psnr(a, b) < 34.5  # MSE a little under 25 (clipped at 255)
    pytest.importorskip("cv2")  # the faces environment (eval_avatar) has it
    assert ssim(a, a) == pytest.approx(1.0) and ssim(a, 255 - a) < 0.1
