"""The avatar builder's frame checks (tools/faces/quality.py) and tracking (tools/faces/track.py):
a frontal face passes; small, cut, rolled, turned, pitched, dark and blurred ones fail with the
reason; smoothing never bridges a gap. With mediapipe and the external footage: every frame
of the real clips passes, and degraded copies of a real frame fail for the right reason."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tools.faces.quality import (CHIN, LEFT_CORNER, LEFT_EYE_OUTER, LOWER_INNER, NOSE_TIP,
                                 RIGHT_CORNER, RIGHT_EYE_OUTER, UPPER_INNER, FaceLimits,
                                 check_frame, head_pose, smooth_track)

EXTERNAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "external"
#: The synthetic face has no lips drawn: its tests leave the lip check to the real footage.
NO_LIPS = FaceLimits(min_lip_contrast=-1.0)


def frontal_face(cx=256.0, cy=256.0, eyes=120.0) -> np.ndarray:
    """478 points: an oval outline of the face and the landmarks the checks read."""
    angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    points = np.stack([cx + 0.9 * eyes * np.cos(angles), cy + 1.2 * eyes * np.sin(angles)], 1)
    half = eyes / 2
    points[LEFT_EYE_OUTER], points[RIGHT_EYE_OUTER] = (cx - half, cy - 0.3 * eyes), (cx + half, cy - 0.3 * eyes)
    points[NOSE_TIP] = (cx, cy + 0.05 * eyes)
    points[UPPER_INNER], points[LOWER_INNER] = (cx, cy + 0.45 * eyes), (cx, cy + 0.47 * eyes)
    points[LEFT_CORNER], points[RIGHT_CORNER] = (cx - 0.35 * eyes, cy + 0.46 * eyes), (cx + 0.35 * eyes, cy + 0.46 * eyes)
    points[CHIN] = (cx, cy + 1.2 * eyes)
    return points.astype(np.float32)


def textured(size=512, level=140.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(level + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)


def rotated(points: np.ndarray, degrees: float, about=(256.0, 256.0)) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    centre = np.array(about)
    return ((points - centre) @ np.array([[c, s], [-s, c]]) + centre).astype(np.float32)


def test_a_frontal_face_passes_and_its_pose_is_level():
    points = frontal_face()
    assert check_frame(points, textured(), NO_LIPS).ok
    roll, yaw, pitch = head_pose(points)
    assert abs(roll) < 1e-6 and abs(yaw) < 1e-6 and 0.3 < pitch < 0.8


@pytest.mark.parametrize("make, reason", [
    (lambda: (frontal_face(eyes=40), textured()), "small"),
    (lambda: (frontal_face(cx=20), textured()), "edge"),
    (lambda: (rotated(frontal_face(), 25), textured()), "tilted"),
    (lambda: (frontal_face() + np.where(np.arange(478)[:, None] == NOSE_TIP, [40.0, 0.0], 0.0).astype(np.float32),
              textured()), "turned"),
    (lambda: (frontal_face() + np.where(np.arange(478)[:, None] == NOSE_TIP, [0.0, -45.0], 0.0).astype(np.float32),
              textured()), "tilted"),
    (lambda: (frontal_face(), textured(level=20)), "dark"),
    (lambda: (frontal_face(), np.full((512, 512, 3), 140, np.uint8)), "blurred"),
])
def test_each_unusable_face_fails_for_its_own_reason(make, reason):
    points, rgb = make()
    verdict = check_frame(points, rgb, NO_LIPS)
    assert not verdict.ok and verdict.reason == reason, verdict
    assert verdict.detail  # with the measured value and the limit


def test_a_roll_inside_the_limit_is_measured_not_refused():
    points = rotated(frontal_face(), 10)
    roll, yaw, pitch = head_pose(points)
    assert abs(roll) == pytest.approx(10, abs=1e-3) and abs(yaw) < 1e-3
    assert check_frame(points, textured(), NO_LIPS).ok


def test_smoothing_takes_out_jitter_keeps_motion_and_never_bridges_a_gap():
    rng = np.random.default_rng(1)
    n = 120
    motion = np.linspace(0, 30, n)[:, None, None] * np.array([1.0, 0.5])  # a slow drift
    noisy = (motion + rng.normal(0, 1.0, (n, 3, 2))).astype(np.float32)
    valid = np.ones(n, bool)
    valid[50:55] = False
    out = smooth_track(noisy, valid)
    assert np.isnan(out[50:55]).all() and not np.isnan(out[valid]).any()
    err_raw = np.sqrt(np.mean((noisy[valid] - motion[valid]) ** 2))
    err_smooth = np.sqrt(np.mean((out[valid] - motion[valid]) ** 2))
    assert err_smooth < 0.5 * err_raw
    # No lag: the smoothed drift is centred on the true one (zero-phase), ends included.
    assert abs(float(np.mean(out[valid] - motion[valid]))) < 0.1
    assert np.abs(out[[0, -1]] - motion[[0, -1]]).max() < 1.5


# --- with mediapipe and the real footage -------------------------------------------------
def _mediapipe_or_skip():
    pytest.importorskip("mediapipe")
    pytest.importorskip("cv2")
    if not (EXTERNAL / "idle_man_720x1080_25fps.mp4").is_file():
        pytest.skip("external footage absent")


def test_every_frame_of_the_real_clips_passes():
    _mediapipe_or_skip()
    from tools.faces.track import require_usable, track
    for name in ("idle_man_720x1080_25fps.mp4", "talk_aoc_512_25fps.mp4"):
        result, frames = track(EXTERNAL / name)
        assert len(frames) == len(result.verdicts) > 150
        assert result.usable.all(), result.rejected()
        require_usable(result)


def test_degraded_copies_of_a_real_frame_fail_for_the_right_reason(tmp_path):
    _mediapipe_or_skip()
    import cv2
    from tools.faces.track import TrackError, require_usable, track
    capture = cv2.VideoCapture(str(EXTERNAL / "talk_aoc_512_25fps.mp4"))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    h, w = bgr.shape[:2]
    degraded = {
        "dark": (bgr * 0.15).astype(np.uint8),
        "blurred": cv2.GaussianBlur(bgr, (0, 0), 6),
        "small": cv2.resize(cv2.resize(bgr, (w // 4, h // 4)), (w // 4, h // 4)),
        "tilted": cv2.warpAffine(bgr, cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0), (w, h)),
        "several": np.concatenate([bgr, bgr], axis=1),
    }
    # The mouth covered (mediapipe still places a mesh there): by skin from the cheek, and
    # by a grey microphone-like block.
    from tools.faces.track import track as track_frames
    cv2.imwrite(str(tmp_path / "clean.png"), bgr)
    points = track_frames(tmp_path / "clean.png")[0].raw[0]
    x0, y0 = (points[[61, 13]].min(axis=0) - (8, 14)).astype(int)
    x1, y1 = (points[[291, 14]].max(axis=0) + (8, 14)).astype(int)
    covered = bgr.copy()
    cheek = bgr[y0 - 3 * (y1 - y0) // 2: y0 - (y1 - y0) // 2, x0:x1]  # skin above the lip line
    covered[y0:y0 + cheek.shape[0], x0:x1] = cheek
    degraded["hidden"] = covered
    microphone = bgr.copy()
    microphone[y0:y1, x0:x1] = (90, 90, 90)
    degraded["hidden "] = microphone
    for reason, image in degraded.items():
        photo = tmp_path / f"{reason.strip()}{len(reason)}.png"
        cv2.imwrite(str(photo), image)
        result, _ = track(photo)
        assert [v.reason for v in result.verdicts] == [reason.strip()], (reason, result.verdicts)
        with pytest.raises(TrackError, match=f"{photo}: 0 of 1 frames usable"):
            require_usable(result)
    assert track(tmp_path / "clean.png")[0].usable.all()
    with pytest.raises(TrackError, match="not an image"):
        (tmp_path / "junk.png").write_bytes(b"junk")
        track(tmp_path / "junk.png")
