"""Mouth shapes from talking footage (`--speech-video`): real frames as the renderer's targets.

The same person speaking, any length from 5 s. Every frame is tracked (tools/faces/track.py)
and its six parameters measured (tools/faces/mouth_params.py, against this footage's own mouth
at rest). For a training pair the talking frame's lower face is moved onto a template frame
(a similarity transform fitted to points the mouth does not move: eye corners, nose,
cheekbones), blended into that template frame's mouth box over the lips and chin (the union
of both frames' lip-and-chin ovals, feathered) and colour-matched to it on the blend's edge. The pair is then (template box, measured parameters, that box): the
network sees only the template frame's box, a different frame with the mouth at rest, so it
cannot copy the answer, and learns the person's real lips and teeth.

`FootagePairs` is the dataset writer's source (tools/avatar/dataset.py PairSource with
`sample_rows`): a share of the rows from the footage, in runs of consecutive frames laid on
consecutive template frames (the trainer's temporal pairs), the rest from the mouth model
(which alone covers bite, teeth and every combination speech did not show).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.render.bundle import loop_position
from tools.avatar.params import ParamMix, sample_pairs
from tools.faces.geometry import polygon_mask, soft_grow
from tools.faces.mouth_params import Rest, distances, measure, rest_from
from .source import VideoMouthSource
from .warp import sample_bilinear

log = logging.getLogger(__name__)

#: Points that a talking mouth does not move: eye corners, nose bridge and tip, cheekbones.
STABLE = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 98, 327, 123, 352, 151, 9)
MIN_SECONDS = 5.0
RUN = 8  # consecutive footage frames per run of rows (the trainer's temporal pairs)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the rotation + uniform scale + shift taking src (K, 2) onto dst (least
    squares, no reflection: Umeyama's method)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(sigma) @ sign) / (s ** 2).sum(axis=1).mean())
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@dataclass
class Footage:
    """Talking frames at 25 fps with their meshes and measured parameters."""

    source: str
    frames: list
    points: np.ndarray  # (N, 478, 2) smoothed (alignment)
    params: np.ndarray  # (N, 6) measured from the unsmoothed mesh; NaN where unusable
    usable: np.ndarray  # (N,) bool
    rest: Rest
    lips: dict  # gap, width, thick per frame (tools/faces/mouth_params.distances), NaN unusable


def load_footage(path: Path, progress=None, rest: Rest | None = None,
                 min_seconds: float = MIN_SECONDS) -> Footage:
    """Track and measure a talking video; TrackError for footage that cannot be used.
    `rest`: the person's mouth at rest measured elsewhere (default: from this footage)."""
    from tools.faces.track import TrackError, require_usable, track

    result, frames = track(path, progress=progress)
    if len(frames) < min_seconds * 25:
        raise TrackError(f"{path}: {len(frames) / 25:.1f} s of talking; at least "
                         f"{min_seconds:.0f} s are needed")
    require_usable(result)
    usable = result.usable & np.isfinite(result.raw).all(axis=(1, 2))
    raw = np.where(usable[:, None, None], result.raw, np.nan)
    rest = rest or rest_from(raw)
    params = measure(raw, rest)
    return Footage(str(path), frames, result.points.astype(np.float64), params, usable, rest,
                   distances(raw))


class SpeechTargets:
    """The talking frame t's lower face in template frame j's mouth box."""

    def __init__(self, footage: Footage, template: VideoMouthSource) -> None:
        self.footage, self.template = footage, template

    def align(self, t: int, j: int) -> np.ndarray:
        """2x3: footage frame t's coordinates -> template frame j's."""
        stable = list(STABLE)
        return similarity(self.footage.points[t][stable], self.template.points[j][stable])

    @staticmethod
    def _region(points: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
        """Where the talking frame replaces the template: lips and chin, an oval from just
        under the nose to under the chin, 0.85 mouth widths to each side of the mouth's
        centre. Cheeks and the face's outline stay the template's: a talking head turns a
        little, and the renderer cannot redraw a moved outline without blurring it."""
        x, y, size = box
        width = float(np.linalg.norm(points[291] - points[61]))
        cx = float(points[61, 0] + points[291, 0]) / 2
        mid = float(points[13, 1] + points[14, 1]) / 2
        top = max(float(points[0, 1]) - 0.25 * width, float(points[2, 1]) + 0.05 * width)
        bottom = float(points[152, 1]) + 0.10 * width
        angle = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        up = np.sin(angle) < 0  # image y grows downwards: these are above the lip line
        ys = np.where(up, mid + (mid - top) * np.sin(angle), mid + (bottom - mid) * np.sin(angle))
        outline = np.stack([cx + 0.85 * width * np.cos(angle), ys], axis=1) - (x, y)
        return polygon_mask(outline, size)

    def target(self, t: int, j: int) -> np.ndarray:
        tmpl = self.template
        size = tmpl.box_size
        x, y = (int(v) for v in tmpl.crop_boxes()[j])
        matrix = self.align(t, j)
        # Each box pixel's place in the footage frame: the inverse of the alignment.
        inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
        at = apply(inverse, np.stack([xs + x, ys + y], axis=-1))
        warped = sample_bilinear(self.footage.frames[t], at)
        base = tmpl.render_box(j, None).astype(np.float32)
        moved_points = apply(matrix, self.footage.points[t])
        region = np.maximum(self._region(tmpl.points[j], (x, y, size)),
                            self._region(moved_points, (x, y, size)))
        sigma = 0.035 * size
        mask = soft_grow(region, int(sigma), sigma).astype(np.float32)[..., None]
        edge = (mask[..., 0] > 0.15) & (mask[..., 0] < 0.85)
        if edge.any():  # the two recordings' light where they meet
            warped += np.clip((base[edge] - warped[edge]).mean(axis=0), -25, 25)
        out = base * (1 - mask) + warped * mask
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class FootagePairs:
    """The dataset writer's source: footage rows (`share` of each shard) + mouth-model rows."""

    def __init__(self, template: VideoMouthSource, footage: Footage, share: float,
                 loop: str = "forward") -> None:
        self.template, self.share, self.loop = template, float(share), loop
        self.targets = SpeechTargets(footage, template)
        usable = footage.usable & np.isfinite(footage.params).all(axis=1)
        # Run starts: RUN consecutive usable footage frames.
        ok = np.convolve(usable.astype(int), np.ones(RUN, int), "valid") == RUN
        self.starts = np.flatnonzero(ok)
        if self.starts.size == 0:
            raise ValueError(f"{footage.source}: no {RUN} consecutive frames with a usable face")
        self.params = np.nan_to_num(footage.params)
        self.count = template.count

    def crop_boxes(self) -> np.ndarray:
        return self.template.crop_boxes()

    def render_box(self, k: int, params=None) -> np.ndarray:
        return self.template.render_box(k, params)

    def sample_rows(self, rng: np.random.Generator, count: int, frames: int, mix: ParamMix):
        """(index, params, sequence, {row: target}) for one shard."""
        speech = int(round(self.share * count)) // RUN * RUN
        index, params, sequence = sample_pairs(rng, count - speech, frames, mix)
        run_id = int(sequence.max(initial=-1)) + 1
        rows_index, rows_params, rows_seq, given = [index], [params], [sequence], {}
        row = len(index)
        for _ in range(speech // RUN):
            t0 = int(rng.choice(self.starts))
            # Consecutive video frames on the template as the runtime plays it (a still
            # template: frame 0 each time).
            k0 = int(rng.integers(0, 2 * frames))
            js = np.array([loop_position(k0 + step, frames, self.loop) for step in range(RUN)])
            for step, j in enumerate(js):
                given[row] = self.targets.target(t0 + step, int(j))
                row += 1
            rows_index.append(js.astype(np.int32))
            rows_params.append(self.params[t0:t0 + RUN])
            rows_seq.append(np.full(RUN, run_id, np.int32))
            run_id += 1
        return (np.concatenate(rows_index).astype(np.int32),
                np.concatenate(rows_params).astype(np.float32),
                np.concatenate(rows_seq).astype(np.int32), given)
