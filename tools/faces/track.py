"""Face tracking for the avatar builder: every frame of a video (or a photo) at 25 fps, the
478-point mesh per frame, its checks (tools/faces/quality.py), smoothed in time.

    python -m tools.faces.track VIDEO|PHOTO [--out TRACK.npz]

Runs in the faces environment (mediapipe 0.10.14 + opencv, `pip install -e ".[faces]"`):
mediapipe's legacy face mesh with refine_landmarks (478 points), up to two faces looked for so
that a second person is noticed. Any source frame rate becomes 25 fps by taking, for each 40 ms
tick, the source frame showing at that time (the runtime's rate; no blending, which would
ghost a moving head).
"""
from __future__ import annotations

import argparse
import collections
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .quality import ADVICE, FaceLimits, FrameVerdict, check_frame, smooth_track

log = logging.getLogger(__name__)

FPS = 25.0
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: Below this share of usable frames the input is refused (the loop needs a clean stretch).
MIN_USABLE = 0.5


class TrackError(Exception):
    """An input the builder cannot use; the message is one line a person can act on."""


@dataclass(frozen=True)
class Track:
    source: str
    size: tuple[int, int]  # (width, height)
    points: np.ndarray  # (N, 478, 2) float32 pixels, smoothed; NaN where the frame is unusable
    raw: np.ndarray  # (N, 478, 2) as measured (NaN where no single face)
    faces: np.ndarray  # (N,) faces found per frame
    verdicts: tuple[FrameVerdict, ...] = field(default_factory=tuple)

    @property
    def usable(self) -> np.ndarray:
        return np.array([v.ok for v in self.verdicts], bool)

    def rejected(self) -> dict[str, int]:
        return dict(collections.Counter(v.reason for v in self.verdicts if not v.ok))


def frames_at_25fps(path: Path) -> Iterator[np.ndarray]:
    """RGB uint8 frames at 25 fps; a photo is one frame. TrackError if unreadable."""
    import cv2

    if not path.is_file():
        raise TrackError(f"{path}: no such file")
    if path.suffix.lower() in PHOTO_SUFFIXES:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise TrackError(f"{path}: not an image opencv can read (PNG, JPEG, BMP, WebP)")
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise TrackError(f"{path}: not a video ffmpeg/opencv can read")
    rate = capture.get(cv2.CAP_PROP_FPS) or FPS
    if not 1.0 <= rate <= 240.0:
        rate = FPS  # containers with no rate report 0 or nonsense: assume the runtime's
    shown = None
    source_index = -1
    tick = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            source_index += 1
            shown = bgr
            # Emit every 25 fps tick whose time falls before the next source frame.
            while tick / FPS < (source_index + 1) / rate - 1e-9:
                yield cv2.cvtColor(shown, cv2.COLOR_BGR2RGB)
                tick += 1
    finally:
        capture.release()
    if source_index < 0:
        raise TrackError(f"{path}: the video has no frames opencv can decode")


def mesh_points(landmarks, size: tuple[int, int]) -> np.ndarray:
    """(478, 2) float32 pixel coordinates of one face's mesh (mediapipe gives 0..1)."""
    width, height = size
    return np.array([(p.x * width, p.y * height) for p in landmarks], np.float32)


def track(path: Path, limits: FaceLimits = FaceLimits(), progress=None) -> tuple[Track, list[np.ndarray]]:
    """Track every frame; returns the track and the 25 fps RGB frames themselves."""
    import mediapipe as mp

    frames: list[np.ndarray] = []
    raw, faces, verdicts = [], [], []
    photo = path.suffix.lower() in PHOTO_SUFFIXES
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=photo, max_num_faces=2,
                                         refine_landmarks=True, min_detection_confidence=0.5,
                                         min_tracking_confidence=0.5) as mesh:
        for rgb in frames_at_25fps(path):
            frames.append(rgb)
            height, width = rgb.shape[:2]
            found = mesh.process(rgb).multi_face_landmarks or []
            faces.append(len(found))
            if len(found) != 1:
                raw.append(np.full((478, 2), np.nan, np.float32))
                verdicts.append(FrameVerdict(False, "none" if not found else "several",
                                             f"{len(found)} faces found"))
            else:
                points = mesh_points(found[0].landmark, (width, height))
                raw.append(points)
                verdicts.append(check_frame(points, rgb, limits))
            if progress is not None:
                progress(len(frames))
    raw_arr = np.stack(raw)
    usable = np.array([v.ok for v in verdicts], bool)
    smoothed = smooth_track(raw_arr, usable).astype(np.float32)
    result = Track(str(path), (frames[0].shape[1], frames[0].shape[0]), smoothed, raw_arr,
                   np.array(faces, np.int32), tuple(verdicts))
    return result, frames


def require_usable(result: Track, min_usable: float = MIN_USABLE) -> None:
    """TrackError naming the most common failure when too few frames can be used."""
    usable = result.usable
    if usable.mean() >= min_usable:
        return
    reasons = result.rejected()
    worst = max(reasons, key=reasons.get)
    example = next(v for v in result.verdicts if v.reason == worst)
    raise TrackError(f"{result.source}: {usable.sum()} of {len(usable)} frames usable; "
                     f"{reasons[worst]} rejected: {ADVICE[worst]} ({example.detail})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.faces.track", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path, help="a video or a photo")
    parser.add_argument("--out", type=Path, help="write the track here (.npz)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result, _ = track(args.video)
    except ImportError as err:
        print(f"tools.faces.track: needs mediapipe 0.10.14 and opencv ({err})", file=sys.stderr)
        return 1
    except TrackError as err:
        print(f"tools.faces.track: {err}", file=sys.stderr)
        return 1
    usable = result.usable
    print(f"{args.video}: {len(usable)} frames at 25 fps, {int(usable.sum())} usable; "
          f"rejected {result.rejected() or 'none'}")
    if args.out:
        np.savez_compressed(args.out, points=result.points, raw=result.raw, faces=result.faces,
                            usable=usable)
    try:
        require_usable(result)
    except TrackError as err:
        print(f"tools.faces.track: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
