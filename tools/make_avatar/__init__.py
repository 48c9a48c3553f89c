"""The avatar builder: an avatar bundle from a person's idle video, talking video or photo.

Built so far (issue 13): face tracking and frame checks (tools/faces/track.py, quality.py)
and the template loop (loop.py). Still to come: the explicit mouth model, the dataset from
talking footage, training through tools/renderer, the bundle and `python -m tools.make_avatar`.
"""
