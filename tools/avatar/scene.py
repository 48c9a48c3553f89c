"""The default character in its template loop: poses, mouth boxes and rendering.

    avatar = DefaultAvatar(AvatarSettings(seed=0))
    frame = avatar.render_frame(k, params)      # (1280, 720, 3) uint8, template pose k
    crop = avatar.render_box(k, params)          # (256, 256, 3): the same pixels, only the box

The loop is a function of the phase 2*pi*k/count built from whole harmonics and circular
blink bumps, so frame count-1 flows into frame 0 like any two neighbours.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .body import CENTER_X, HEIGHT, WIDTH, draw_background, draw_collar, draw_neck, draw_torso
from .canvas import Canvas, Rigid
from .head import draw_chin_shadow, draw_face, draw_hair_back, draw_hair_front
from .mouth import MOUTH_Y, MouthShape
from .palette import make_palette

log = logging.getLogger(__name__)

HEAD_X, HEAD_Y = CENTER_X, 452.0   # head origin (between the eyes) at rest, design pixels
HEAD_ZOOM = 1.12                   # head drawing units -> design pixels (a signage-sized face)
BOX_CENTER_BELOW_MOUTH = 40.0      # head units: the box reaches from the nose to below the dropped chin
BLINKS = ((0.16, 3.0, 4.5), (0.56, 2.5, 4.0), (0.835, 3.0, 5.0))  # (phase, close, open) frames
ZERO_PARAMS = (0.0,) * 6


@dataclass(frozen=True)
class AvatarSettings:
    seed: int = 0
    scale: float = 1.0       # output pixels per design pixel (tests use 0.25: a 180x320 frame)
    frames: int = 200        # 8 s at 25 fps
    box_size: int = 256      # mouth box side at scale 1 (design pixels)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) in output pixels."""
        return round(WIDTH * self.scale), round(HEIGHT * self.scale)

    @property
    def box(self) -> int:
        return round(self.box_size * self.scale)


@dataclass(frozen=True)
class Pose:
    lift: float      # breathing: shoulders/chest offset, design pixels (negative = up)
    head_x: float
    head_y: float
    tilt: float      # radians, clockwise on screen
    blink: float     # 0 open .. 1 closed
    gaze_x: float
    gaze_y: float

    @property
    def rigid(self) -> Rigid:
        return Rigid(self.head_x, self.head_y, self.tilt, HEAD_ZOOM)

    @property
    def neck_x(self) -> float:
        return CENTER_X + 0.5 * (self.head_x - CENTER_X)


def _blink(k: int, count: int) -> float:
    closure = 0.0
    for phase, close, open_ in BLINKS:
        d = (k - phase * count + count / 2) % count - count / 2  # circular: seamless loop
        width = close if d < 0 else open_
        if abs(d) < width:
            closure = max(closure, (1.0 - (d / width) ** 2) ** 2)
    return closure


def pose_at(k: int, count: int) -> Pose:
    phi = 2.0 * math.pi * (k % count) / count
    lift = -2.6 * (0.5 - 0.5 * math.cos(2 * phi))          # two breaths per loop
    deg = math.pi / 180.0
    return Pose(
        lift=lift,
        head_x=HEAD_X + 4.0 * math.sin(phi + 0.3) + 1.2 * math.sin(3 * phi + 1.1),
        head_y=HEAD_Y + 0.7 * lift + 1.2 * math.sin(2 * phi + 2.0),
        tilt=1.6 * deg * math.sin(phi + 1.0) + 0.5 * deg * math.sin(2 * phi + 0.2),
        blink=_blink(k % count, count),
        gaze_x=1.3 * math.sin(phi + 2.5),
        gaze_y=0.6 * math.sin(2 * phi),
    )


class DefaultAvatar:
    """Renders the procedural default character; deterministic from AvatarSettings."""

    def __init__(self, settings: AvatarSettings = AvatarSettings()) -> None:
        self.settings = settings
        self.palette = make_palette(settings.seed)
        width, height = settings.frame_size
        bg = Canvas(0, 0, width, height, settings.scale)
        draw_background(bg, self.palette)
        self._background = bg.rgb  # static: drawn once, sliced into every region

    @property
    def count(self) -> int:
        return self.settings.frames

    def pose(self, k: int) -> Pose:
        return pose_at(k, self.settings.frames)

    def crop_box(self, k: int) -> tuple[int, int]:
        """Top-left (x, y) of the mouth box, in output pixels: the same for every frame.

        The box does not follow the head. A box that follows it moves in whole pixels while
        the head sways smoothly, so everything the renderer draws jumps a pixel against the
        face whenever the box does (a visible flicker every few frames). A fixed box sees
        the mouth drift smoothly instead; it sits in the middle of the mouth's range over the
        loop, so the drift (a few pixels) uses the margin evenly on both sides."""
        return self._static_box

    @cached_property
    def _static_box(self) -> tuple[int, int]:
        s, half = self.settings.scale, self.settings.box_size / 2.0
        centres = np.array([self.pose(j).rigid.to_frame(0.0, MOUTH_Y + BOX_CENTER_BELOW_MOUTH)
                            for j in range(self.count)])
        cx, cy = (centres.min(axis=0) + centres.max(axis=0)) / 2.0
        width, height = self.settings.frame_size
        box = self.settings.box
        x = min(max(round((cx - half) * s), 0), width - box)
        y = min(max(round((cy - half) * s), 0), height - box)
        return int(x), int(y)

    def crop_boxes(self) -> np.ndarray:
        return np.array([self.crop_box(k) for k in range(self.count)], np.int32)

    def render_region(self, k: int, params, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        """(height, width, 3) uint8 of frame k with mouth `params`, region in output pixels."""
        canvas = Canvas(x0, y0, width, height, self.settings.scale)
        canvas.rgb[...] = self._background[y0:y0 + height, x0:x0 + width]
        pose, pal = self.pose(k), self.palette
        mouth = MouthShape.from_params(ZERO_PARAMS if params is None else params)
        rig = pose.rigid
        draw_hair_back(canvas, pal, rig)
        draw_torso(canvas, pal, pose.lift)
        neck = draw_neck(canvas, pal, pose.neck_x, pose.lift)
        draw_chin_shadow(canvas, rig, neck, mouth, pal)
        draw_collar(canvas, pal, pose.neck_x, pose.lift)
        draw_face(canvas, pal, rig, mouth, pose.blink, (pose.gaze_x, pose.gaze_y))
        draw_hair_front(canvas, pal, rig)
        return canvas.to_uint8()

    def render_frame(self, k: int, params=None) -> np.ndarray:
        width, height = self.settings.frame_size
        return self.render_region(k, params, 0, 0, width, height)

    def render_box(self, k: int, params=None) -> np.ndarray:
        """Only the mouth box of frame k: the training target (far cheaper than a frame)."""
        x, y = self.crop_box(k)
        box = self.settings.box
        return self.render_region(k, params, x, y, box, box)
