"""Time: the clocks the appliance follows (audio playback, capture or monotonic), the
scheduler that turns clock time into the frame to show next (and the frames to drop), and the
per-stage timer that measures each frame's wall and CPU cost.
"""
