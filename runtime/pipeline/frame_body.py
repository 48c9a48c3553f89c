"""The work of one video frame, the same for the kiosk's frame loop and `edgemate bench`.

    prepare(k, params, plan):  render the mouth box at the plan's level (renderer, timed by
                               stage) -> blend it with template frame k mod N (composite;
                               one ncnn pass with the upscale where the renderer can)
    show(frame, sink, audio):  the frame's audio to a sink that records it, then the picture
                               (template + patch) to the sink (present)

The frame loop waits for the frame's slot between the two; the bench calls them back to
back, so its uncapped figures measure exactly what the appliance does per frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.display.sink import DisplaySink, Picture
from runtime.quality.transition import RenderPlan
from runtime.render.bundle import AvatarBundle
from runtime.render.compositor import Compositor
from runtime.render.renderer import Renderer
from runtime.render.tile_template import TileTemplate
from runtime.schedule.stage_timer import StageTimer


@dataclass(frozen=True)
class PreparedFrame:
    number: int  # video frame k (audio time k / 25 s)
    template_index: int
    params: np.ndarray
    plan: RenderPlan
    crop: np.ndarray | None  # the rendered mouth box (None at PASS)
    picture: Picture


class FrameBody:
    def __init__(self, bundle: AvatarBundle, renderer: Renderer, compositor: Compositor,
                 timer: StageTimer) -> None:
        self.bundle, self.renderer, self.compositor, self.timer = bundle, renderer, compositor, timer
        # A renderer without the one-pass patch (test doubles) always takes the crop path.
        self._fused = getattr(renderer, "render_patch", None) or (lambda *args: None)
        # A template held as tiles tells the sink which tiles a frame changes.
        self._tiles = bundle.frames if isinstance(bundle.frames, TileTemplate) else None

    def prepare(self, number: int, params: np.ndarray, plan: RenderPlan) -> PreparedFrame:
        bundle = self.bundle
        index = bundle.loop_index(number)
        template = bundle.template_frame(index)
        # One pass where the renderer has it (the patch straight from the stage output);
        # otherwise the crop, then the compositor (cross-fades, boxes off the frame).
        painted = self._fused(params, index, plan.level, plan.blend_from, plan.weight)
        if painted is not None:
            patch, box = painted
            crop = patch  # the whole mouth box as shown (what the lip-sync meter reads)
        else:
            crop = self.renderer.render(params, index, plan.level, plan.blend_from, plan.weight)
            with self.timer.measure("composite"):
                x, y = bundle.crop_boxes[index]
                patch, box = self.compositor.blend(template, crop, int(x), int(y))
        return PreparedFrame(number, index, params, plan, crop,
                             Picture(template, patch, box, template_key=index,
                                     template_tiles=self._tiles))

    def show(self, frame: PreparedFrame, sink: DisplaySink, audio: np.ndarray | None = None) -> None:
        """Raises DisplayError when the sink cannot go on."""
        with self.timer.measure("present"):
            if audio is not None:
                sink.feed_audio(audio)
            sink.present(frame.picture, frame.number)
