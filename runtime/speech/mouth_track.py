"""Speech to mouth parameters: fbank -> audio model -> a track indexed by video frame."""
from __future__ import annotations

import threading

import numpy as np

from runtime import SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.schedule.stage_timer import StageTimer
from .audio_model import MOUTH_PARAMS, AudioModel
from .features import StreamingFbank

#: The track keeps this many frames (20 s): far more than lead + lateness ever need.
TRACK_FRAMES = 512
#: A missing frame just past the newest computed one holds it (the model is a little late);
#: further on, the mouth closes (nothing is being said that we know of).
HOLD_FRAMES = 2


class MouthTrack:
    """Thread-safe ring of six parameters per video frame index."""

    def __init__(self, capacity: int = TRACK_FRAMES):
        self._params = np.zeros((capacity, len(MOUTH_PARAMS)), np.float32)
        self._index = np.full(capacity, -1, np.int64)
        self._newest = -1
        self._lock = threading.Lock()
        self.missing = 0  # frames asked for before they were computed

    def put(self, frame: int, params: np.ndarray) -> None:
        slot = frame % len(self._index)
        with self._lock:
            self._params[slot] = params
            self._index[slot] = frame
            self._newest = max(self._newest, frame)

    def get(self, frame: int) -> np.ndarray:
        """Params for `frame`: computed, held from a frame or two before, or closed (zeros)."""
        with self._lock:
            slot = frame % len(self._index)
            if self._index[slot] == frame:
                return self._params[slot].copy()
            self.missing += 1
            newest = self._newest
            if 0 <= frame - newest <= HOLD_FRAMES:
                return self._params[newest % len(self._index)].copy()
            return np.zeros(len(MOUTH_PARAMS), np.float32)

    def close_from(self, frame: int, count: int) -> None:
        """Barge-in: frames [frame, frame + count) show a closed mouth."""
        for k in range(frame, frame + count):
            self.put(k, np.zeros(len(MOUTH_PARAMS), np.float32))

    @property
    def newest(self) -> int:
        return self._newest


class MouthAnalyzer:
    """Consumes the 16 kHz timeline from a frame boundary on, fills a MouthTrack.

    Model step n (frames_per_step fbank frames after the segment start) yields the params of
    frame `base + n - lookahead_steps`; the first `lookahead_steps` outputs have no frame.
    """

    def __init__(self, model: AudioModel, track: MouthTrack, timer: StageTimer | None = None):
        self.model = model
        self.track = track
        self.timer = timer or StageTimer()
        self._fbank = StreamingFbank(model.fbank)
        self._pending = np.zeros((0, model.fbank.num_bins), np.float32)
        self._base_frame = 0
        self._steps = 0

    def reset(self, at_frame: int) -> None:
        """Start a new segment at video frame `at_frame` (its first sample comes next)."""
        self._fbank.reset()
        self.model.reset()
        self._pending = self._pending[:0]
        self._base_frame = at_frame
        self._steps = 0

    def accept(self, samples: np.ndarray) -> None:
        with self.timer.measure("features"):
            self._fbank.accept(samples)
            frames = self._fbank.pop_frames()
        if frames.size:
            self._pending = np.concatenate([self._pending, frames]) if self._pending.size else frames
        step = self.model.frames_per_step
        while len(self._pending) >= step:
            with self.timer.measure("audio_model"):
                params = self.model.step(self._pending[:step])
            self._pending = self._pending[step:]
            frame = self._base_frame + self._steps - self.model.lookahead_steps
            self._steps += 1
            if frame >= self._base_frame:
                self.track.put(frame, params)

    @property
    def latency_s(self) -> float:
        """Audio needed past a frame's end before its params exist (look-ahead + window)."""
        fb = self.model.fbank
        window_extra = (fb.frame_length_ms - fb.frame_shift_ms) / 1000
        return self.model.lookahead_steps * SAMPLES_PER_FRAME / SAMPLE_RATE + window_extra
