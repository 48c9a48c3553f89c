"""The procedural default character (tools/avatar): exactness, loop, locality, continuity, dataset.

Everything runs at scale 0.25 (a 180x320 frame, 64 px mouth box): same code paths as the
product size, a sixteenth of the pixels.
"""
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.avatar.dataset import DatasetError, DatasetSpec, read_shard, shard_name, write_pairs
from tools.avatar.scene import AvatarSettings, DefaultAvatar
from tools.avatar.sheets import blink_frame

SCALE = 0.25


@pytest.fixture(scope="module")
def avatar():
    return DefaultAvatar(AvatarSettings(seed=0, scale=SCALE))


def _box(avatar, frame, k):
    x, y = avatar.crop_box(k)
    b = avatar.settings.box
    return frame[y:y + b, x:x + b]


def test_same_seed_same_bytes_other_seed_differs(avatar):
    again = DefaultAvatar(AvatarSettings(seed=0, scale=SCALE))
    params = [0.4, 0.2, 0.1, 0.0, 0.3, 0.5]
    assert avatar.render_frame(17, params).tobytes() == again.render_frame(17, params).tobytes()
    assert np.array_equal(avatar.crop_boxes(), again.crop_boxes())
    other = DefaultAvatar(AvatarSettings(seed=5, scale=SCALE))
    assert not np.array_equal(avatar.render_frame(17), other.render_frame(17))


@pytest.mark.parametrize("k", [0, 33, 120, 199])
def test_all_zero_params_is_exactly_the_template(avatar, k):
    template = avatar.render_frame(k)
    assert np.array_equal(avatar.render_frame(k, [0.0] * 6), template)
    # The cheap box-only path gives the very same pixels as the full frame.
    assert np.array_equal(avatar.render_box(k, [0.0] * 6), _box(avatar, template, k))
    params = [0.7, 0.1, 0.3, 0.0, 0.2, 0.4]
    assert np.array_equal(avatar.render_box(k, params), _box(avatar, avatar.render_frame(k, params), k))


def test_loop_is_seamless(avatar):
    n = avatar.count
    frames = {k: avatar.render_frame(k).astype(np.int16) for k in (n - 3, n - 2, n - 1, 0, 1, 2)}
    step = [np.abs(frames[b] - frames[a]).mean() for a, b in ((n - 3, n - 2), (n - 2, n - 1), (0, 1), (1, 2))]
    wrap = np.abs(frames[0] - frames[n - 1]).mean()
    assert wrap <= 1.5 * max(step) + 0.01
    boxes = avatar.crop_boxes()
    assert np.abs(np.diff(np.vstack([boxes, boxes[:1]]), axis=0)).max() <= 1


def test_loop_breathes_blinks_and_sways(avatar):
    n = avatar.count
    poses = [avatar.pose(k) for k in range(n)]
    closed = [k for k in range(n) if poses[k].blink == 1.0]  # the middle frame of each blink
    assert len(closed) == 3
    assert max(p.blink for p in poses[:3] + poses[-3:]) == 0.0  # no blink across the loop point
    assert np.ptp([p.lift for p in poses]) > 1.5 and np.ptp([p.tilt for p in poses]) > 0.02
    b = blink_frame(n)
    eyes_open, eyes_shut = avatar.render_frame(b - 12), avatar.render_frame(b)
    assert np.abs(eyes_open.astype(int) - eyes_shut.astype(int)).max() > 60


@pytest.mark.parametrize("i", range(6))
def test_each_parameter_changes_only_the_inner_box(avatar, i):
    k = 40
    params = [1.0 if j == i else 0.0 for j in range(6)]
    diff = np.abs(avatar.render_frame(k, params).astype(int) - avatar.render_frame(k).astype(int)).max(axis=2)
    x, y = avatar.crop_box(k)
    b = avatar.settings.box
    inside = diff[y:y + b, x:x + b].copy()
    assert inside.max() > 40, "the parameter must visibly change the mouth"
    outside = diff.copy()
    outside[y:y + b, x:x + b] = 0
    assert outside.max() == 0
    # ... and nothing in the outer 3/32 of the box, which the runtime's soft mask feathers
    # (the default bundle's 24 px at 256; the mouth drifts a few pixels in the fixed box).
    m = 3 * b // 32
    inside[m:b - m, m:b - m] = 0
    assert inside.max() == 0


@pytest.mark.parametrize("i", range(6))
def test_parameters_change_the_picture_continuously(avatar, i):
    rng = np.random.default_rng(i)
    base = rng.random(6) * 0.5
    prev, steps = None, []
    for value in np.linspace(0.0, 1.0, 41):
        p = base.copy()
        p[i] = value
        img = avatar.render_box(60, p).astype(np.int16)
        if prev is not None:
            steps.append(np.abs(img - prev).mean())
        prev = img
    assert max(steps) <= 4.0 * np.mean(steps) + 0.05, f"a pop: steps {np.round(steps, 3)}"
    tiny = np.zeros(6)
    tiny[i] = 1e-3
    assert np.abs(avatar.render_box(60, tiny).astype(int) - avatar.render_box(60).astype(int)).max() <= 2


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6), k=st.integers(0, 199))
def test_any_combination_renders_inside_the_box(avatar, params, k):
    frame = avatar.render_frame(k, params)
    template = avatar.render_frame(k)
    x, y = avatar.crop_box(k)
    b, m = avatar.settings.box, 3 * avatar.settings.box // 32
    diff = np.abs(frame.astype(int) - template.astype(int)).max(axis=2)
    diff[y + m:y + b - m, x + m:x + b - m] = 0
    assert diff.max() == 0
    assert np.array_equal(avatar.render_box(k, params), _box(avatar, frame, k))


def _spec(**over):
    base = dict(source="procedural default character", seed=3, frame_size=(180, 320), box_size=64,
                frames=200, pairs=10, shard_size=4)
    base.update(over)
    return DatasetSpec(**base)


def test_dataset_round_trip_and_resume(avatar, tmp_path):
    spec = _spec()
    done = write_pairs(tmp_path, spec, avatar)
    assert sorted(done) == [0, 1, 2]
    doc = yaml.safe_load((tmp_path / "dataset.yaml").read_text())
    assert doc["schema"] == 1 and doc["complete"] and doc["count"] == 10
    assert [s["count"] for s in doc["shards"]] == [4, 4, 2]
    rows = [read_shard(tmp_path / shard_name(i)) for i in range(3)]
    assert sum(len(r["params"]) for r in rows) == 10
    shard = rows[0]
    assert shard["params"].dtype == np.float32 and shard["params"].shape == (4, 6)
    assert shard["template_crop"].shape == (4, 64, 64, 3) and shard["target_crop"].dtype == np.uint8
    for j in range(4):
        k = int(shard["template_index"][j])
        assert np.array_equal(shard["template_crop"][j], _box(avatar, avatar.render_frame(k), k))
        assert np.array_equal(shard["target_crop"][j], avatar.render_box(k, shard["params"][j]))

    first = (tmp_path / shard_name(0)).stat().st_mtime_ns
    (tmp_path / shard_name(1)).unlink()
    (tmp_path / shard_name(2)).write_bytes(b"torn")
    again = write_pairs(tmp_path, spec, avatar)
    assert again == done  # same bytes as the clean run
    assert (tmp_path / shard_name(0)).stat().st_mtime_ns == first  # finished shards are kept
    with pytest.raises(DatasetError, match="seed"):
        write_pairs(tmp_path, _spec(seed=4), avatar)


def test_cli_writes_template_boxes_and_dataset(tmp_path):
    import pygame

    from tools.avatar.make_default import main

    out = tmp_path / "av"
    argv = ["--out", str(out), "--scale", str(SCALE), "--frames", "6", "--pairs", "3", "--shard-size", "2",
            "--preview", str(tmp_path / "p.png")]
    assert main(argv) == 0
    small = DefaultAvatar(AvatarSettings(scale=SCALE, frames=6))
    boxes = np.load(out / "crop_boxes.npy")
    assert boxes.shape == (6, 2) and np.array_equal(boxes, small.crop_boxes())
    decoded = pygame.surfarray.array3d(pygame.image.load(str(out / "frames" / "0003.png"))).transpose(1, 0, 2)
    assert np.array_equal(decoded, small.render_frame(3))  # our PNG writer, read by the runtime's decoder
    assert yaml.safe_load((out / "dataset.yaml").read_text())["complete"]
    assert main(argv) == 0  # a second run resumes: nothing left to do


def test_progress_without_a_known_total_counts_instead_of_showing_zero(monkeypatch, capsys):
    import sys
    from tools.avatar.make_default import _Progress
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain stderr line, not tqdm
    bar = _Progress(0, "talking frames")  # a container that does not say its frame count
    for _ in range(120):
        bar(1)
    bar.close()
    err = capsys.readouterr().err
    assert "talking frames: 120" in err and "0it" not in err and "/0" not in err
    known = _Progress(40, "pairs")
    for _ in range(40):
        known(1)
    assert "pairs: 40/40 (100%)" in capsys.readouterr().err
