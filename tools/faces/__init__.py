"""Real faces, measured: mouth shape per video frame from mediapipe's face mesh (offline,
0.10.14, whose models ship inside the wheel). The yardstick that does not come from our own
training targets: used to judge the audio model against real talking footage, and the
renderer on its own rendered frames.
"""
