"""The streaming audio model: fbank frames in, six mouth parameters per 40 ms out."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import numpy as np

from runtime.models.ncnn_model import ModelError, NcnnModel, load_sidecar
from .features import FbankSettings


#: Mouth parameter names, in order (the contract in docs/ARCHITECTURE.md).
MOUTH_PARAMS = ("open", "wide", "round", "press", "bite", "teeth")


class AudioModel:
    """Carries the LSTM state across calls; `reset()` for barge-in.

    Sidecar contract (kind: audio_model): inputs `features` (frames_per_step, num_bins),
    `h` and `c` (the state); outputs `params` (6,), `h`, `c`. `audio.frames_per_step` fbank
    frames make one 40 ms step; the output of step n belongs to video frame
    n - `audio.lookahead_steps` (the model has seen that much audio past the frame).
    Optional `audio.open_curve` {knee, gain}: `open` above `knee` is stretched by `gain`
    (clipped at 1), below it left alone, so a shut mouth stays shut: how far the network's
    open reaches against real lips (tools/audio_model/calibrate.py).
    """

    def __init__(self, sidecar_path: Path, threads: int = 1, vulkan: bool = False,
                 ncnn_options: Mapping[str, bool] | None = None, open_curve: bool = True):
        """`ncnn_options` replaces the sidecar's (None: what it ships); only for measuring
        what the shipped ones buy on another CPU (tools/parity). `open_curve` False: the
        network's own `open` (for calibrating it)."""
        self.sidecar = load_sidecar(sidecar_path, kind="audio_model")
        if ncnn_options is not None:
            self.sidecar = dataclasses.replace(self.sidecar, options=dict(ncnn_options))
        audio = self.sidecar.extra.get("audio")
        where = f"{self.sidecar.path}: audio"
        if not isinstance(audio, dict):
            raise ModelError(f"{where}: missing (fbank options, frames_per_step, lookahead_steps)")
        try:
            self.fbank = FbankSettings.from_mapping(audio.get("fbank") or {})
            self.frames_per_step = int(audio["frames_per_step"])
            self.lookahead_steps = int(audio["lookahead_steps"])
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{where}: bad or missing value ({err})") from None
        self.open_knee, self.open_gain = _open_curve(audio.get("open_curve"), where)
        if not open_curve:
            self.open_gain = 1.0
        for role in ("features", "h", "c"):
            if role not in self.sidecar.inputs:
                raise ModelError(f"{self.sidecar.path}: inputs: missing role '{role}'")
        for role in ("params", "h", "c"):
            if role not in self.sidecar.outputs:
                raise ModelError(f"{self.sidecar.path}: outputs: missing role '{role}'")
        expected = (self.frames_per_step, self.fbank.num_bins)
        if self.sidecar.inputs["features"].shape != expected:
            raise ModelError(f"{self.sidecar.path}: inputs.features.shape: must be "
                             f"{list(expected)} (frames_per_step, fbank num_bins)")
        self._net = NcnnModel(self.sidecar, threads=threads, vulkan=vulkan)
        self._state_shapes = (self.sidecar.inputs["h"].shape, self.sidecar.inputs["c"].shape)
        self.reset()

    @property
    def step_ms(self) -> float:
        return self.frames_per_step * self.fbank.frame_shift_ms

    def reset(self) -> None:
        """Forget everything heard (barge-in, a new utterance after a flush)."""
        self._h = np.zeros(self._state_shapes[0], np.float32)
        self._c = np.zeros(self._state_shapes[1], np.float32)

    def step(self, features: np.ndarray) -> np.ndarray:
        """One 40 ms step: (frames_per_step, num_bins) -> six params clipped to [0, 1]."""
        out = self._net.run({"features": features, "h": self._h, "c": self._c},
                            ("params", "h", "c"))
        self._h = out["h"].reshape(self._state_shapes[0])
        self._c = out["c"].reshape(self._state_shapes[1])
        params = np.clip(out["params"].reshape(-1)[: len(MOUTH_PARAMS)], 0.0, 1.0)
        if self.open_gain != 1.0:
            params[0] = stretch_open(params[0], self.open_knee, self.open_gain)
        return params


def stretch_open(open_, knee: float, gain: float):
    """The open curve: above `knee` stretched by `gain` and clipped at 1, below it unchanged
    (a float or an array of them)."""
    return np.where(open_ > knee, np.minimum(1.0, knee + (open_ - knee) * gain), open_)


#: Limits of audio.open_curve: a gain outside them is a calibration gone wrong.
OPEN_GAIN_RANGE = (1.0, 3.0)


def _open_curve(curve, where: str) -> tuple[float, float]:
    """(knee, gain) from the sidecar's audio.open_curve; (0, 1) without one."""
    if curve is None:
        return 0.0, 1.0
    try:
        knee, gain = float(curve["knee"]), float(curve["gain"])
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{where}.open_curve: needs numbers knee and gain, got {curve!r}") from None
    low, high = OPEN_GAIN_RANGE
    if not (0.0 <= knee < 1.0 and low <= gain <= high):
        raise ModelError(f"{where}.open_curve: knee must be in [0, 1) and gain in "
                         f"[{low:g}, {high:g}], got knee {knee:g}, gain {gain:g}")
    return knee, gain
