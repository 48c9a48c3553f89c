"""Mouth measurements of a face video, one row per frame, from mediapipe's 478-point mesh.

    python -m tools.faces.lips VIDEO [--out LIPS.json]

Runs in an environment with mediapipe 0.10.14 and opencv (not the runtime's): newer
mediapipe downloads its models at run time and cannot work offline. Every distance is in
units of the eye-corner distance (landmarks 33-263), so the figures do not depend on how far
the face is from the camera:

    gap    inner-lip opening: upper inner lip 13 to lower inner lip 14
    width  mouth corners 61 to 291
    ratio  gap / width (a round "o" is tall for its width; a smile is wide and flat)

A frame where no face is found gets null values (`found: false`), never a guess.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

UPPER_INNER, LOWER_INNER = 13, 14
LEFT_CORNER, RIGHT_CORNER = 61, 291
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 33, 263


def _distance(points, a: int, b: int, size: tuple[int, int]) -> float:
    w, h = size
    pa, pb = points[a], points[b]
    return float(((pa.x - pb.x) * w) ** 2 + ((pa.y - pb.y) * h) ** 2) ** 0.5


def measure_frame(landmarks, size: tuple[int, int]) -> dict:
    """Gap, width and ratio of one frame's mesh (pixel distances, the frame's aspect kept)."""
    eyes = _distance(landmarks, LEFT_EYE_OUTER, RIGHT_EYE_OUTER, size)
    gap = _distance(landmarks, UPPER_INNER, LOWER_INNER, size) / eyes
    width = _distance(landmarks, LEFT_CORNER, RIGHT_CORNER, size) / eyes
    return {"found": True, "gap": round(gap, 5), "width": round(width, 5),
            "ratio": round(gap / width, 5) if width > 0 else None}


def measure_video(path: Path) -> dict:
    import cv2
    import mediapipe as mp

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"{path}: cannot open the video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    rows: list[dict] = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1,
                                         refine_landmarks=True, min_detection_confidence=0.5,
                                         min_tracking_confidence=0.5) as mesh:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            h, w = bgr.shape[:2]
            found = mesh.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).multi_face_landmarks
            rows.append(measure_frame(found[0].landmark, (w, h)) if found else
                        {"found": False, "gap": None, "width": None, "ratio": None})
    capture.release()
    return {"video": path.name, "fps": round(float(fps), 3), "frames": len(rows),
            "found": sum(row["found"] for row in rows), "measure": "mediapipe "
            f"{mp.__version__} face mesh, refine_landmarks; distances / eye corners 33-263",
            "rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.faces.lips", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path)
    parser.add_argument("--out", type=Path, help="JSON file (default: VIDEO with .lips.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = measure_video(args.video)
    except ImportError as err:
        print(f"tools.faces.lips: needs mediapipe 0.10.14 and opencv ({err})", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"tools.faces.lips: {err}", file=sys.stderr)
        return 1
    out = args.out or args.video.with_suffix(".lips.json")
    out.write_text(json.dumps(result) + "\n")
    print(f"{out}: {result['found']} of {result['frames']} frames with a face")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
