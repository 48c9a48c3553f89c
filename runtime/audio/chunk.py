"""The unit every audio source produces."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AudioChunk:
    """A block of audio as float32 in [-1, 1], shape (frames, channels).

    `timestamp` is `time.monotonic()` at which the first sample was captured (mic) or
    became available (files, stream). `utterance` changes whenever a new utterance starts
    (a new playlist item, a new stream client), so consumers can tell a boundary.
    """

    samples: np.ndarray
    rate: int
    timestamp: float
    utterance: int = 0

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate
