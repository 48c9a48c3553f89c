"""Bilinear upscaling of a renderer stage's change to the mouth box, in ncnn's Interp layer.

The same resampling as `resize.resize_chw` (pixel centres aligned, like align_corners=False;
max difference 2e-7 on [0, 1] data), but in ncnn's C++ kernel instead of numpy gathers:
0.16 ms against 0.75 ms for 3x128x128 -> 256x256 on one x86 core. The upscale was the most
expensive step of a frame. The net is a two-layer param text made here (no weights, no
file); fp16 is off because ncnn turns on fp16 storage and arithmetic by default on ARM,
and a Pi would then draw a different mouth than the x86 box the avatar was checked on.
"""
from __future__ import annotations

import logging

import numpy as np

from .resize import resize_chw

log = logging.getLogger(__name__)

_PARAM = "7767517\n2 2\nInput in0 0 1 in0\nInterp up 1 1 in0 out0 0=2 3={side} 4={side}\n"
_FP32 = ("use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed")


class Upscaler:
    """(c, h, w) float32 -> (c, side, side) float32, bilinear."""

    def __init__(self, side: int, threads: int = 1):
        self.side = side
        self._net = None
        try:
            import ncnn
            net = ncnn.Net()
            net.opt.num_threads = threads  # options before load_param, or they are ignored
            net.opt.use_vulkan_compute = False
            for option in _FP32:
                setattr(net.opt, option, False)
            if net.load_param_mem(_PARAM.format(side=side)) != 0:
                raise RuntimeError("ncnn could not parse the Interp param")
            self._net, self._mat = net, ncnn.Mat
        except (ImportError, RuntimeError, AttributeError) as exc:
            # Not expected with the pinned wheel; numpy gives the same pixels, only slower.
            log.warning("ncnn upscaler unavailable (%s): upscaling in numpy", exc)

    def add_to(self, chw: np.ndarray, base: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out = base + the upscaled image, (side, side, c): the renderer's per-frame step.
        It reads ncnn's output in place, so no box-sized copy is made on the frame path."""
        mat = self._upscaled(chw)
        up = resize_chw(chw, self.side, self.side) if mat is None else np.asarray(mat)
        np.add(up.transpose(1, 2, 0), base, out=out)  # `mat` (which `up` views) is alive here
        return out

    def add_moved_to(self, chw: np.ndarray, base: np.ndarray, out: np.ndarray,
                     scratch: np.ndarray, rows: tuple[int, int]) -> np.ndarray:
        """The "replace where moved" composition, from one 7-channel upscale of
        [change (3), stage template (3), moved weight (1)] (see renderer.moved_weight):

            out = base + up(change) + up(moved) * (up(stage template) - base)

        Where a stage moved something (the chin of an open mouth), the template's own fine
        detail there (the old chin's edge) gives way to the stage's picture; elsewhere it is
        `base + up(change)`, the plain composition. `base` may be `out` (a second level of a
        blend adds onto the first); `scratch` is a box-sized float32 buffer. Only box rows
        `rows` = [start, end) can hold a moved weight: the replacement is computed there."""
        mat = self._upscaled(chw)
        up = resize_chw(chw, self.side, self.side) if mat is None else np.asarray(mat)
        top, bottom = rows
        change, stage = up[0:3].transpose(1, 2, 0), up[3:6, top:bottom].transpose(1, 2, 0)
        band = scratch[top:bottom]
        np.subtract(stage, base[top:bottom], out=band)
        band *= up[6, top:bottom][:, :, None]
        np.add(change, base, out=out)  # `mat` (which `up` views) is alive here
        out[top:bottom] += band
        return out

    def _upscaled(self, chw: np.ndarray):
        """ncnn's output Mat, or None when upscaling falls back to numpy."""
        if self._net is None:
            return None
        extractor = self._net.create_extractor()
        # Mat(array) neither copies nor keeps the array alive: `data` is held until the
        # extract below returns. Interp does not write into its input, so no clone.
        data = np.ascontiguousarray(chw, dtype=np.float32)
        extractor.input("in0", self._mat(data))
        ret, mat = extractor.extract("out0")
        if ret != 0:
            log.warning("ncnn upscale failed (code %d): upscaling in numpy from now on", ret)
            self._net = None
            return None
        return mat
