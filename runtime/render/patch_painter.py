"""The mouth patch of one frame in one C++ pass: upscale the stage's change, compose, blend.

What the renderer's upscale and the compositor did in numpy, ten full-box passes of float
temporaries (2.4 ms per FULL frame here), runs as one small ncnn graph (no weights) over
the stage output, the stage's template input, the template frame's box and the blend mask:

    change = image - stage_template                             (stage size)
    moved  = dilate3x3(clip((max_c |change| - lo) / (hi - lo)))  (replace_moved only)
    out    = base + up(255 change) [+ up(moved) (up(255 stage_template) - base)]
    patch  = clip(base + mask (out - base) + 0.5)               (box size, then to uint8)

It equals the numpy path (runtime/render/renderer.py, compositor.py) to one grey level:
the compositor rounds its weights to 1/256 and clips before blending, this keeps the mask
in float and clips once. Outside the mask the patch is the template exactly (mask 0).
fp16 is off (ncnn turns it on by default on ARM, which would change the mouth).

ncnn pitfall: in lightmode (the default) an in-place layer (a BinaryOp with a scalar, Clip)
that reads an input blob wrapping numpy memory crashes the process; so every input goes
first into a layer that writes a new blob. Lightmode itself is wanted: each intermediate is
freed when consumed, and with pool allocators the next one reuses its (cache-warm) buffer.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

_FP32 = ("use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed")


def graph_text(box: int, moved: tuple[float, float] | None) -> str:
    """The ncnn param text; `moved` (lo, hi) for the replace_moved composition, else plain add."""
    layers = [
        "Input image 0 1 image",
        "Input stage 0 1 stage",
        "Input base 0 1 base",
        "Input mask 0 1 mask",
        "Split split_stage 1 2 stage stage_a stage_b",
        "BinaryOp change 2 1 image stage_a change 0=1",
    ]
    if moved is None:
        layers += [
            "BinaryOp change255 1 1 change change255 0=2 1=1 2=255.0",
            f"Interp up_change 1 1 change255 up_change 0=2 3={box} 4={box}",
            "BinaryOp lift 2 1 up_change mask lift 0=2",
        ]
        base = "base"
    else:
        lo, hi = moved
        layers += [
            "Split split_change 1 2 change change_a change_b",
            "UnaryOp abs 1 1 change_a abs 0=0",
            "Slice channels 1 3 abs abs0 abs1 abs2 -23300=3,-233,-233,-233 1=0",
            "BinaryOp max01 2 1 abs0 abs1 max01 0=4",
            "BinaryOp max012 2 1 max01 abs2 largest 0=4",
            f"BinaryOp from_lo 1 1 largest from_lo 0=1 1=1 2={lo!r}",
            f"BinaryOp scaled 1 1 from_lo scaled 0=2 1=1 2={1.0 / (hi - lo)!r}",
            "Clip unit 1 1 scaled unit 0=0.0 1=1.0",
            # Grown by one stage pixel, like renderer.moved_weight (max over the 3x3 around).
            "Pooling grow 1 1 unit moved 0=0 1=3 2=1 3=1",
            "BinaryOp change255 1 1 change_b change255 0=2 1=1 2=255.0",
            f"Interp up_change 1 1 change255 up_change 0=2 3={box} 4={box}",
            # Upscaled first, scaled after: an in-place layer must not touch an input blob.
            f"Interp up_stage01 1 1 stage_b up_stage01 0=2 3={box} 4={box}",
            "BinaryOp up_stage 1 1 up_stage01 up_stage 0=2 1=1 2=255.0",
            f"Interp up_moved 1 1 moved up_moved 0=2 3={box} 4={box}",
            "Split split_base 1 2 base base_a base_b",
            "BinaryOp toward 2 1 up_stage base_b toward 0=1",
            "BinaryOp replace 2 1 up_moved toward replace 0=2",
            "BinaryOp lifted 2 1 up_change replace lifted 0=0",
            "BinaryOp lift 2 1 lifted mask lift 0=2",
        ]
        base = "base_a"
    layers += [
        f"BinaryOp blended 2 1 {base} lift blended 0=0",
        "BinaryOp rounded 1 1 blended rounded 0=0 1=1 2=0.5",
        "Clip clipped 1 1 rounded clipped 0=0.0 1=255.99",
        # (c, h, w) -> (h, w, c) here: numpy's uint8 cast then reads contiguous memory.
        "Permute patch 1 1 clipped patch 0=3",
    ]
    blobs: set[str] = set()
    for layer in layers:
        fields = layer.split()
        count = int(fields[2]) + int(fields[3])
        blobs.update(fields[4:4 + count])
    return f"7767517\n{len(layers)} {len(blobs)}\n" + "\n".join(layers) + "\n"


class PatchPainter:
    """paint(image, stage_template, frame, x, y) -> (box, box, 3) uint8 patch at (x, y).

    `image` and `stage_template` (3, s, s) float32 in [0, 1] (a renderer stage's output and
    its template input); `frame` (H, W, 3) uint8, the box fully inside it. None from
    `available` when ncnn cannot build the graph (the caller keeps the numpy path)."""

    def __init__(self, box: int, mask: np.ndarray, moved: tuple[float, float] | None,
                 threads: int = 1) -> None:
        self._net = None
        self.box = box
        self._mask = np.ascontiguousarray(np.asarray(mask, np.float32)[None])
        if self._mask.shape != (1, box, box):
            raise ValueError(f"mask {mask.shape}: expected ({box}, {box})")
        self._patch = np.empty((box, box, 3), np.uint8)
        try:
            import ncnn
            net = ncnn.Net()
            net.opt.num_threads = threads  # options before load_param, or they are ignored
            net.opt.use_vulkan_compute = False
            for option in _FP32:
                setattr(net.opt, option, False)
            self._blobs = ncnn.UnlockedPoolAllocator()
            self._workspace = ncnn.UnlockedPoolAllocator()
            net.opt.blob_allocator = self._blobs
            net.opt.workspace_allocator = self._workspace
            if net.load_param_mem(graph_text(box, moved)) != 0:
                raise RuntimeError("ncnn could not parse the patch graph")
            self._ncnn, self._net = ncnn, net
            self._rgb = int(ncnn.Mat.PixelType.PIXEL_RGB)
        except (ImportError, RuntimeError, AttributeError) as exc:
            log.warning("fused mouth patch unavailable (%s): composing in numpy", exc)

    def __del__(self) -> None:
        # The net first: its blobs go back to the pool allocators, which must still exist
        # (Python would otherwise free the attributes in any order, and ncnn crash).
        net, self._net = self._net, None
        if net is not None:
            net.clear()
        del net

    @property
    def available(self) -> bool:
        return self._net is not None

    def paint(self, image: np.ndarray, stage_template: np.ndarray, frame: np.ndarray,
              x: int, y: int) -> np.ndarray | None:
        """The blended patch (a buffer reused by the next call), or None if ncnn failed."""
        if self._net is None:
            return None
        ncnn = self._ncnn
        extractor = self._net.create_extractor()
        extractor.set_blob_allocator(self._blobs)
        extractor.set_workspace_allocator(self._workspace)
        height, width = frame.shape[:2]
        # The arrays below must stay alive until extract returns: Mat(array) does not own them.
        image = np.ascontiguousarray(image, dtype=np.float32)
        stage = np.ascontiguousarray(stage_template, dtype=np.float32)
        frame = np.ascontiguousarray(frame)
        base = ncnn.Mat.from_pixels_roi(frame, self._rgb, width, height, x, y, self.box, self.box)
        extractor.input("image", ncnn.Mat(image))
        extractor.input("stage", ncnn.Mat(stage))
        extractor.input("base", base)
        extractor.input("mask", ncnn.Mat(self._mask))
        ret, out = extractor.extract("patch")
        if ret == 0:
            # Truncation after +0.5 rounds; the clip above keeps the cast in 0..255.
            np.copyto(self._patch, np.asarray(out), casting="unsafe")
        # Pool memory goes back now, not when the frame's locals are torn down: `self` is
        # released first there, and a painter dropped right after this call would destroy
        # its allocators while `out` still held their memory.
        del out, extractor
        if ret != 0:
            log.warning("ncnn patch graph failed (code %d): composing in numpy from now on", ret)
            self._net = None
            return None
        return self._patch


def _stage_inputs_text(box: int, sizes: tuple[int, ...]) -> str:
    """Box (0..255) -> each size by area means chained from the largest size down (each
    level a quarter of the last), then 1/255 on the small images."""
    chain = sorted(sizes, reverse=True)
    layers, blobs, source, side = ["Input box 0 1 box"], {"box"}, "box", box
    for n, size in enumerate(chain):
        factor = side // size
        pooled = f"pooled_{size}"
        if factor == 2:
            # Bilinear at exactly half size samples between each pixel pair: the 2x2 area
            # mean, through ncnn's fast Interp (0.02 ms; its Pooling took 0.2 ms on 3 channels).
            layers.append(f"Interp shrink_{size} 1 1 {source} {pooled} 0=2 3={size} 4={size}")
        else:
            layers.append(f"Pooling shrink_{size} 1 1 {source} {pooled} 0=1 1={factor} 2={factor} "
                          f"3=0 5=1")
        blobs.add(pooled)
        if n + 1 < len(chain):
            layers.append(f"Split split_{size} 1 2 {pooled} {pooled}_out {pooled}_next")
            blobs |= {f"{pooled}_out", f"{pooled}_next"}
            scaled_from, source = f"{pooled}_out", f"{pooled}_next"
        else:
            scaled_from = pooled
        layers.append(f"BinaryOp unit_{size} 1 1 {scaled_from} out_{size} 0=2 1=1 2=0.00392156862745098")
        blobs.add(f"out_{size}")
        side = size
    return f"7767517\n{len(layers)} {len(blobs)}\n" + "\n".join(layers) + "\n"


class StageInputs:
    """The renderer stages' template inputs of one frame, made when the frame is drawn:
    the mouth box read from the template frame, scaled to [0, 1] and area-averaged to each
    stage's size, in one ncnn pass (0.17 ms) instead of numpy (2.8 ms) or a float copy of
    every loop frame kept in memory (49 MB for the default avatar's 200 frames).
    Each size must divide the next larger one (and the box), as area means need.

    `make(frame, x, y)` -> {size: (3, size, size) float32} (buffers reused by the next call),
    or None where it cannot (box off the frame, sizes that do not divide the box, no ncnn)."""

    def __init__(self, box: int, sizes: tuple[int, ...], threads: int = 1) -> None:
        self._net = None
        self.box = box
        self._out = {size: np.empty((3, size, size), np.float32) for size in sizes}
        chain = sorted(sizes, reverse=True)
        if any(big % small for big, small in zip([box] + chain, chain)):
            return
        try:
            import ncnn
            net = ncnn.Net()
            net.opt.num_threads = threads
            net.opt.use_vulkan_compute = False
            for option in _FP32:
                setattr(net.opt, option, False)
            if net.load_param_mem(_stage_inputs_text(box, tuple(sizes))) != 0:
                raise RuntimeError("ncnn could not parse the stage-input graph")
            self._ncnn, self._net = ncnn, net
            self._rgb = int(ncnn.Mat.PixelType.PIXEL_RGB)
        except (ImportError, RuntimeError, AttributeError) as exc:
            log.warning("stage inputs in ncnn unavailable (%s): made in numpy", exc)

    def make(self, frame: np.ndarray, x: int, y: int) -> dict[int, np.ndarray] | None:
        if self._net is None:
            return None
        height, width = frame.shape[:2]
        if x < 0 or y < 0 or x + self.box > width or y + self.box > height:
            return None
        ncnn = self._ncnn
        frame = np.ascontiguousarray(frame)
        extractor = self._net.create_extractor()
        extractor.input("box", ncnn.Mat.from_pixels_roi(frame, self._rgb, width, height,
                                                        x, y, self.box, self.box))
        failed = False
        for size, out in self._out.items():
            ret, mat = extractor.extract(f"out_{size}")
            if ret != 0:
                failed = True
                break
            np.copyto(out, np.asarray(mat))
            del mat
        del extractor
        if failed:
            log.warning("ncnn stage-input graph failed: made in numpy from now on")
            self._net = None
            return None
        return self._out
