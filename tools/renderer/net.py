"""The avatar renderer's two networks (torch), and how their output becomes the mouth box.

Both stages see the *current template frame's* mouth crop, so lighting, head pose and the
blink of that frame always carry through; the six mouth parameters say what to change.

Coarse stage (coarse_size, 64 px for the default avatar):
    encoder of the template crop (3 stride-2 convs), features scaled and shifted per
    channel by the params (FiLM) -> small U-Net decoder -> per pixel: flow (2), paint colour (3), paint weight (1)
    image = lerp(grid_sample(template, identity + flow), paint, weight)
  The warp moves the template's own lips and chin; the paint shows what no warp can
  (teeth, tongue, the dark inside of the mouth).

Fine stage (crop_size, 128 px): the coarse image upsampled, next to the full-resolution
template crop, with a spatial code from the params -> U-Net at half resolution -> pixel
shuffle back up:
    image = up(coarse) + keep * (template - up(coarse)) + detail
  `keep` lets the stage copy the sharp template wherever nothing moves.

Runtime composition (runtime/render/renderer.py, mirrored by `compose_box` here):
    box = template_box + up_bilinear(stage_image - stage_template)
so pixels a stage leaves alone keep the template's full box resolution (no blur, no seam)
and only the change is upscaled. A bundle with `composition: replace_moved` also lets the
stage's own picture replace the template's fine detail where the stage moved something
(the old chin's edge would otherwise stay as a faint line across the neck). Downscaled templates are area means (integer factors).
Training minimises the error of exactly this composed box, at box resolution.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

PARAMS = 6
#: Largest warp in normalised coordinates (1.0 = half the crop): 0.35 is 11 px at 64 px.
MAX_FLOW = 0.35


def area_down(image: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, S, S) -> (N, C, size, size) by area means; S must be a multiple of size."""
    factor = image.shape[-1] // size
    if factor * size != image.shape[-1]:
        raise ValueError(f"crop {image.shape[-1]} px is not a multiple of {size} px")
    return image if factor == 1 else F.avg_pool2d(image, factor)


def up_bilinear(image: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel-centre bilinear resize, the same as runtime/render/resize.py."""
    if image.shape[-1] == size:
        return image
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)


def moved_weight(change: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """(N, 3, s, s) stage change -> (N, 1, s, s) in [0, 1]: runtime/render/renderer.py's
    moved_weight (0 below `lo` in every channel, 1 from `hi`, grown by one stage pixel)."""
    moved = ((change.abs().amax(dim=1, keepdim=True) - lo) / (hi - lo)).clamp(0.0, 1.0)
    return F.max_pool2d(moved, 3, stride=1, padding=1)


def compose_box(template_box: torch.Tensor, stage_template: torch.Tensor, stage_image: torch.Tensor,
                composition: dict | None = None) -> torch.Tensor:
    """The mouth box the runtime shows for the bundle's `composition` (runtime/render/bundle.py).

    add (the default):  template + up(change)
    replace_moved:      template + up(change) + up(moved) * (up(stage template) - template):
                        where the stage moved something its own picture replaces the
                        template's fine detail, so the old chin leaves no ghost edge."""
    side = template_box.shape[-1]
    change = stage_image - stage_template
    if not composition or composition.get("mode", "add") == "add":
        return template_box + up_bilinear(change, side)
    moved = moved_weight(change, composition["moved_from"], composition["moved_to"])
    up = up_bilinear(torch.cat((change, stage_template, moved), 1), side)
    return template_box + up[:, 0:3] + up[:, 6:7] * (up[:, 3:6] - template_box)


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class ParamCode(nn.Module):
    """Six params -> a (channels, side, side) map: a learned picture of where things change.

    Only the fine stage uses one: the mouth box is fixed in the frame (tools/avatar/scene.py),
    so this map is anchored to the face, and it tells the stage where to let the coarse
    image through; where exactly the lips sit comes from the template crop itself."""

    def __init__(self, channels: int, side: int, hidden: int = 64):
        super().__init__()
        self.channels, self.side = channels, side
        self.fc1 = nn.Linear(PARAMS, hidden)
        self.fc2 = nn.Linear(hidden, channels * side * side)

    def forward(self, params: torch.Tensor) -> torch.Tensor:
        code = self.fc2(torch.relu(self.fc1(params)))
        return code.view(-1, self.channels, self.side, self.side)


class ParamFilm(nn.Module):
    """Six params -> a per-channel scale and shift for a feature map (FiLM).

    Deliberately not a spatial map: the mouth box moves with the head in whole pixels, so
    anything painted at fixed box coordinates would jump a pixel whenever the box does
    (visible flicker). Scaling features instead keeps every change anchored to the
    template's own lips, wherever they sit in the box."""

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.channels = channels
        self.fc1 = nn.Linear(PARAMS, hidden)
        self.fc2 = nn.Linear(hidden, 2 * channels)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, features: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        film = self.fc2(torch.relu(self.fc1(params)))
        scale = film[:, :self.channels].view(-1, self.channels, 1, 1)
        shift = film[:, self.channels:].view(-1, self.channels, 1, 1)
        return features * (scale + 1.0) + shift


class CoarseNet(nn.Module):
    """Template crop (N, 3, S, S) + params (N, 6) -> image (N, 3, S, S); S divisible by 8."""

    def __init__(self, size: int = 64, widths: tuple[int, int, int] = (12, 24, 32), mid: int = 48):
        super().__init__()
        if size % 8:
            raise ValueError(f"coarse size {size}: must be a multiple of 8")
        self.size = size
        w0, w1, w2 = widths
        self.enc0, self.enc1, self.enc2 = _conv(3, w0, 2), _conv(w0, w1, 2), _conv(w1, w2, 2)
        self.film2, self.film_mid, self.film1 = ParamFilm(w2), ParamFilm(mid), ParamFilm(w1)
        self.mid0, self.mid1 = _conv(w2, mid), _conv(mid, mid)
        self.red1, self.dec1 = _conv(mid, 16, k=1), _conv(16 + w1, w1)
        self.red0, self.dec0 = _conv(w1, 8, k=1), _conv(8 + w0, w0)
        self.head = _conv(w0, 6)
        # Start as the identity: no flow, (almost) no paint -> the template itself.
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, -4.0]))
        side = torch.linspace(-1 + 1 / size, 1 - 1 / size, size)  # pixel centres, align_corners=False
        gy, gx = torch.meshgrid(side, side, indexing="ij")
        self.register_buffer("grid", torch.stack((gx, gy), dim=-1)[None])  # (1, S, S, 2)

    def forward(self, template: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        e0 = torch.relu(self.enc0(template))
        e1 = torch.relu(self.enc1(e0))
        e2 = torch.relu(self.enc2(e1))
        x = torch.relu(self.mid0(self.film2(e2, params)))
        x = torch.relu(self.mid1(self.film_mid(x, params)))
        x = F.interpolate(self.red1(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        x = torch.relu(self.dec1(torch.cat((x, self.film1(e1, params)), 1)))
        x = F.interpolate(self.red0(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        x = torch.relu(self.dec0(torch.cat((x, e0), 1)))
        out = F.interpolate(self.head(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        flow = torch.tanh(out[:, 0:2]) * MAX_FLOW
        paint = torch.sigmoid(out[:, 2:5])
        weight = torch.sigmoid(out[:, 5:6])
        warped = F.grid_sample(template, self.grid + flow.permute(0, 2, 3, 1), mode="bilinear",
                               padding_mode="border", align_corners=False)
        return warped + weight * (paint - warped)


class FineNet(nn.Module):
    """Coarse image (N, 3, s, s) + template crop (N, 3, S, S) + params -> image (N, 3, S, S)."""

    def __init__(self, size: int = 128, coarse_size: int = 64, widths: tuple[int, int] = (16, 32),
                 code: int = 8):
        super().__init__()
        if size % 4:
            raise ValueError(f"crop size {size}: must be a multiple of 4")
        self.size, self.coarse_size = size, coarse_size
        w0, w1 = widths
        self.enc0, self.enc1 = _conv(6, w0, 2), _conv(w0, w1, 2)
        self.code = ParamCode(code, size // 4)
        self.mid0, self.mid1 = _conv(w1 + code, w1), _conv(w1, w1)
        self.up1 = _conv(w1, 4 * w0, k=1)            # pixel shuffle -> w0 channels at size / 2
        self.dec0 = _conv(w0, w0)
        self.head = _conv(w0, 4 * 4, k=1)            # pixel shuffle -> 4 channels at size
        self.shuffle = nn.PixelShuffle(2)
        # Start by keeping the sharp template almost everywhere (it is right wherever nothing
        # moves, most of the box); the stage learns where to let the coarse image through.
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([0.0] * 12 + [2.0] * 4))

    def forward(self, coarse: torch.Tensor, template: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(coarse, size=(self.size, self.size), mode="bilinear", align_corners=False)
        e0 = torch.relu(self.enc0(torch.cat((up, template), 1)))
        e1 = torch.relu(self.enc1(e0))
        x = torch.relu(self.mid0(torch.cat((e1, self.code(params)), 1)))
        x = torch.relu(self.mid1(x))
        x = torch.relu(self.shuffle(self.up1(x)) + e0)
        x = torch.relu(self.dec0(x))
        out = self.shuffle(self.head(x))
        keep = torch.sigmoid(out[:, 3:4])
        return up + keep * (template - up) + out[:, 0:3]


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-adds of one forward pass: convolutions and linears exactly, plus 4 per output
    value for each bilinear resize and grid sample (what ncnn's Interp/GridSample do)."""
    total = 0

    def on_conv(mod, _inp, out):
        nonlocal total
        total += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    def on_linear(mod, _inp, out):
        nonlocal total
        total += out.numel() * mod.in_features

    hooks = []
    for mod in module.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(on_conv))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(on_linear))
    original_interp, original_grid = F.interpolate, F.grid_sample

    def interp(x, *args, **kwargs):
        nonlocal total
        out = original_interp(x, *args, **kwargs)
        total += 4 * out.numel()
        return out

    def grid_sample(x, *args, **kwargs):
        nonlocal total
        out = original_grid(x, *args, **kwargs)
        total += 4 * out.numel()
        return out

    F.interpolate, F.grid_sample = interp, grid_sample
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        F.interpolate, F.grid_sample = original_interp, original_grid
        for hook in hooks:
            hook.remove()
    return int(total)


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
