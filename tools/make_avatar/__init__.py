"""The avatar builder: an avatar bundle from a person's idle video or photo.

    python -m tools.make_avatar --video IDLE.mp4 | --photo FACE.jpg --out DIR

Face tracking and frame checks (tools/faces/track.py, quality.py), the template loop
(loop.py), the explicit mouth model (mouth_model.py, warp.py) posing each frame's mouth, the
dataset in the renderer's layout (source.py, tools/avatar/dataset.py), training and export
(tools/renderer), the bundle (build.py). Design and figures: docs/AVATAR_BUILDER.md.
Not yet: mouth shapes learnt from talking footage (--speech-video).
"""
