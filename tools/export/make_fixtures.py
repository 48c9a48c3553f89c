"""Write TEST FIXTURES: a tiny audio model and an avatar bundle, as real ncnn models.

    python -m tools.export.make_fixtures --out /tmp/edgemate-fixtures [--frame-size 720x1280]

They let the runtime, its tests and `edgemate bench` run end to end before the trained
models exist. They are hand-wired, not trained: the audio model opens the mouth with
loudness, the renderer darkens a mouth-shaped ellipse. Every sidecar says `fixture: true`
and nothing here is ever installed as a default. Their compute is sized like the real
budget (coarse ~4 M, coarse + fine ~25 M multiply-adds) so timings are indicative.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import yaml

from .ncnn_writer import NcnnNetWriter, memory_data

FIXTURE_NOTE = "TEST FIXTURE (tools/export/make_fixtures.py): hand-wired, not trained; never a default"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_sidecar(stem: Path, kind: str, inputs: dict, outputs: dict, extra: dict) -> Path:
    param, binary = stem.with_name(stem.name + ".ncnn.param"), stem.with_name(stem.name + ".ncnn.bin")
    doc = {
        "schema": 1, "name": stem.name, "kind": kind, "fixture": True, "note": FIXTURE_NOTE,
        "files": {"param": {"path": param.name, "sha256": _sha(param)},
                  "bin": {"path": binary.name, "sha256": _sha(binary)}},
        "inputs": inputs, "outputs": outputs,
        "ncnn_options": {"use_fp16_storage": False, "use_fp16_arithmetic": False},
        **extra,
        "recipe": {"command": "python -m tools.export.make_fixtures", "seed": 0},
    }
    sidecar = stem.with_name(stem.name + ".yaml")
    sidecar.write_text(yaml.safe_dump(doc, sort_keys=False))
    return sidecar


def write_audio_fixture(out_dir: Path, hidden: int = 32, num_bins: int = 80,
                        frames_per_step: int = 4, lookahead_steps: int = 1) -> Path:
    """An LSTM whose unit 0 tracks loudness; params follow it (silence -> all zeros)."""
    rng = np.random.default_rng(0)
    net = NcnnNetWriter()
    x = net.input("in0", (frames_per_step, num_bins))
    h0 = net.input("in1", (1, hidden))
    c0 = net.input("in2", (1, hidden))
    w_ih = rng.normal(0, 0.002, (4 * hidden, num_bins)).astype(np.float32)
    w_hh = rng.normal(0, 0.05, (4 * hidden, hidden)).astype(np.float32)
    bias = np.zeros(4 * hidden, np.float32)
    # Gate order I, F, O, G. Unit 0: input/output gates open, forget gate shut, candidate =
    # tanh(0.008 * (sum of log-mel bins - 80 * 15)): follows loudness in speech, -1 in silence.
    i_, f_, o_, g_ = 0, hidden, 2 * hidden, 3 * hidden
    bias[i_] = bias[o_] = 8.0
    bias[f_] = -8.0
    w_ih[g_, :] = 0.008
    bias[g_] = -0.008 * num_bins * 15.0
    w_hh[[i_, f_, o_, g_], :] = 0.0
    out, h_out, c_out = net.lstm("lstm", x, h0, c0, w_ih, w_hh, bias)
    last = net.crop_rows("last", out, frames_per_step - 1, 1)
    flat = net.unary("Flatten", "flat", last)
    fc_w = rng.normal(0, 0.05, (6, hidden)).astype(np.float32)
    # Loudness (unit 0 in about [-0.76, 0.76]) drives open strongly, the others mildly.
    fc_w[:, 0] = [7.0, 5.0, 4.0, 3.0, 2.0, 4.0]
    fc_b = np.array([-0.5, -2.0, -2.5, -3.0, -4.0, -2.5], np.float32)
    logits = net.inner_product("fc", flat, fc_w, fc_b)
    params = net.unary("Sigmoid", "out0", logits)
    del params
    stem = out_dir / "audio_fixture"
    net.save(stem)
    state = [1, hidden]
    return _write_sidecar(
        stem, "audio_model",
        inputs={"features": {"blob": x, "shape": [frames_per_step, num_bins], "meaning": "fbank frames"},
                "h": {"blob": h0, "shape": state}, "c": {"blob": c0, "shape": state}},
        outputs={"params": {"blob": "out0", "shape": [6], "meaning": "open wide round press bite teeth"},
                 "h": {"blob": h_out, "shape": state}, "c": {"blob": c_out, "shape": state}},
        extra={"audio": {"fbank": {"num_bins": num_bins, "frame_length_ms": 25.0,
                                   "frame_shift_ms": 10.0, "dither": 0.0, "snip_edges": True,
                                   "input_scale": 32768.0},
                         "frames_per_step": frames_per_step, "lookahead_steps": lookahead_steps}})


def _mouth_map(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    inside = ((xx - 0.5) / 0.28) ** 2 + ((yy - 0.55) / 0.16) ** 2
    return np.clip(1.2 - inside, 0, 1).reshape(1, size, size).astype(np.float32)


def _conv_weights(rng, out_ch, in_ch, scale):
    return (rng.normal(0, scale, (out_ch, in_ch, 3, 3)).astype(np.float32),
            np.zeros(out_ch, np.float32))


def write_renderer_fixtures(out_dir: Path, coarse_size: int, crop_size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    # Coarse: template crop at coarse resolution darkened in a mouth ellipse by `open`,
    # plus a small learned-looking residual from a conv stack fed the parameters.
    net = NcnnNetWriter()
    crop = net.input("in0", (3, coarse_size, coarse_size))
    params = net.input("in1", (6,))
    cond = net.unary("Reshape", "cond_r", net.inner_product(
        "cond", params, rng.normal(0, 0.3, (8, 6)).astype(np.float32), np.zeros(8, np.float32)),
        {0: 1, 1: 1, 2: 8})
    f1 = net.conv("c1", crop, *_conv_weights(rng, 8, 3, 0.2), activation=1)
    f2 = net.conv("c2", net.binary("mix", f1, cond), *_conv_weights(rng, 8, 8, 0.1), activation=1)
    delta = net.conv("c3", f2, *_conv_weights(rng, 3, 8, 0.002))
    open_w = np.zeros((1, 6), np.float32)
    open_w[0, 0] = 0.85
    opening = net.unary("Reshape", "open_r", net.inner_product(
        "open", params, open_w, np.zeros(1, np.float32)), {0: 1, 1: 1, 2: 1})
    shade = net.binary("shade_m", memory_data(net, "mouth", _mouth_map(coarse_size)), opening, op=2)
    darkened = net.binary("dark", crop, net.binary("shade", crop, shade, op=2), op=1)
    net.unary("Clip", "out0", net.binary("res", darkened, delta), {0: 0.0, 1: 1.0})
    coarse_stem = out_dir / "coarse"
    net.save(coarse_stem)
    coarse = _write_sidecar(
        coarse_stem, "coarse",
        inputs={"template_crop": {"blob": crop, "shape": [3, coarse_size, coarse_size]},
                "params": {"blob": params, "shape": [6]}},
        outputs={"image": {"blob": "out0", "shape": [3, coarse_size, coarse_size]}}, extra={})

    # Fine: coarse image upsampled, concatenated with the full-resolution crop, refined.
    net = NcnnNetWriter()
    coarse_in = net.input("in0", (3, coarse_size, coarse_size))
    crop = net.input("in1", (3, crop_size, crop_size))
    net.input("in2", (6,))
    up = net.unary("Interp", "up", coarse_in, {0: 2, 3: crop_size, 4: crop_size})
    both = net.concat("cat", [up, crop])
    g1 = net.conv("f1", both, *_conv_weights(rng, 8, 6, 0.2), activation=1)
    g2 = net.conv("f2", g1, *_conv_weights(rng, 8, 8, 0.1), activation=1)
    detail = net.conv("f3", g2, *_conv_weights(rng, 3, 8, 0.002))
    net.unary("Clip", "out0", net.binary("res", up, detail), {0: 0.0, 1: 1.0})
    fine_stem = out_dir / "fine"
    net.save(fine_stem)
    fine = _write_sidecar(
        fine_stem, "fine",
        inputs={"coarse_image": {"blob": coarse_in, "shape": [3, coarse_size, coarse_size]},
                "template_crop": {"blob": crop, "shape": [3, crop_size, crop_size]},
                "params": {"blob": "in2", "shape": [6]}},
        outputs={"image": {"blob": "out0", "shape": [3, crop_size, crop_size]}}, extra={})
    return coarse, fine


def _template_frames(count: int, width: int, height: int, box: int) -> tuple[np.ndarray, np.ndarray]:
    """A plain procedural face that sways and breathes; mouth box follows the sway."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((count, height, width, 3), np.uint8)
    boxes = np.empty((count, 2), np.int32)
    for k in range(count):
        phase = 2 * np.pi * k / count  # one sway/breath cycle per loop: seamless
        cx = width * 0.5 + width * 0.01 * np.sin(phase)
        cy = height * 0.42 + height * 0.004 * np.sin(2 * phase)
        face = ((xx - cx) / (width * 0.28)) ** 2 + ((yy - cy) / (height * 0.22)) ** 2 < 1
        img = np.empty((height, width, 3), np.float32)
        img[..., 0] = 40 + 60 * yy / height
        img[..., 1] = 60 + 40 * xx / width
        img[..., 2] = 110
        img[face] = (224, 182, 150)
        mouth_y = cy + height * 0.11
        lips = (((xx - cx) / (width * 0.09)) ** 2 + ((yy - mouth_y) / (height * 0.012)) ** 2) < 1
        img[lips] = (170, 80, 80)
        for side in (-1, 1):
            eye = ((xx - cx - side * width * 0.1) ** 2 + (yy - cy + height * 0.04) ** 2) < (width * 0.025) ** 2
            img[eye] = (40, 40, 50)
        frames[k] = img.astype(np.uint8)
        boxes[k] = (int(round(cx - box / 2)), int(round(mouth_y - box * 0.55)))
    return frames, boxes


def write_avatar_fixture(out_dir: Path, frame_size: tuple[int, int] = (360, 640),
                         frames: int = 50, crop_size: int = 128, coarse_size: int = 64) -> Path:
    """A complete bundle directory; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    width, height = frame_size
    box = max(32, min(width, height) // 3)
    template, boxes = _template_frames(frames, width, height, box)
    np.save(out_dir / "template.npy", template)
    np.save(out_dir / "crop_boxes.npy", boxes)
    coarse, fine = write_renderer_fixtures(out_dir, coarse_size, crop_size)
    doc = {
        "schema": 1, "name": "fixture", "fixture": True, "note": FIXTURE_NOTE,
        "fps": 25, "frame_size": [width, height],
        "template": {"frames": "template.npy", "count": frames, "crop_boxes": "crop_boxes.npy",
                     "sha256": {"template.npy": _sha(out_dir / "template.npy"),
                                "crop_boxes.npy": _sha(out_dir / "crop_boxes.npy")}},
        "box_size": box, "crop_size": crop_size, "coarse_size": coarse_size,
        "mask": {"feather_px": max(4, box // 8)},
        "models": {"coarse": coarse.name, "fine": fine.name},
        "calibration": {"open_scale": 1.0},
        "demo_audio": "demo.wav",
    }
    # Speech-like bursts, not speech: the fixture demo needs no speech synthesiser.
    from runtime.audio.wav import write_wav
    from runtime.commands.bench import speech_like
    write_wav(out_dir / "demo.wav", speech_like(12.0), 16000)
    (out_dir / "avatar.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return out_dir


def write_all(out: Path, frame_size: tuple[int, int] = (360, 640), frames: int = 50) -> tuple[Path, Path]:
    """Returns (audio model sidecar, avatar bundle dir)."""
    audio = write_audio_fixture(out / "audio")
    bundle = write_avatar_fixture(out / "avatars" / "fixture", frame_size, frames)
    return audio, bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.export.make_fixtures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frame-size", default="360x640", help="WIDTHxHEIGHT of the template")
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.frame_size.lower().split("x"))
    except ValueError:
        parser.error(f"--frame-size: must be WIDTHxHEIGHT (got {args.frame_size})")
    audio, bundle = write_all(args.out, (width, height), args.frames)
    print(f"fixture audio model: {audio}\nfixture avatar bundle: {bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
