"""The streaming mouth network (torch), its per-step export form, and pnnx -> ncnn + sidecar.

Shape of the network, per 40 ms step (4 fbank frames of 80 bins = 320 inputs):
  normalise (per-bin mean/std of the training features, folded into the first layer at export)
  -> Linear(320, proj) + ReLU -> LSTM(proj, hidden) with explicit (h, c)
  -> Linear(hidden, head) + ReLU -> Linear(head, 6)
The runtime clips the six outputs to [0, 1]. Everything past the input is causal; the only
look-ahead is the sidecar's `lookahead_steps` (step n answers for video frame n - 1).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import yaml
from torch import nn

from runtime.models.ncnn_model import sha256_file
from runtime.speech.features import FbankSettings

from tools.export.pnnx import export_to_ncnn

log = logging.getLogger(__name__)

FRAMES_PER_STEP = 4
LOOKAHEAD_STEPS = 1
PARAM_NAMES = ("open", "wide", "round", "press", "bite", "teeth")


class MouthNet(nn.Module):
    """Training form: whole sequences (batch, steps, 320) at once."""

    def __init__(self, bins: int = 80, proj: int = 128, hidden: int = 192, head: int = 64):
        super().__init__()
        inputs = bins * FRAMES_PER_STEP
        self.register_buffer("mean", torch.zeros(inputs))
        self.register_buffer("std", torch.ones(inputs))
        self.proj = nn.Linear(inputs, proj)
        self.lstm = nn.LSTM(proj, hidden, batch_first=True)
        self.head = nn.Linear(hidden, head)
        self.out = nn.Linear(head, 6)

    def forward(self, x: torch.Tensor, state=None):
        y = torch.relu(self.proj((x - self.mean) / self.std))
        y, state = self.lstm(y, state)
        return self.out(torch.relu(self.head(y))), state

    @property
    def hidden(self) -> int:
        return self.lstm.hidden_size

    def macs_per_step(self) -> int:
        """Multiply-adds per 40 ms step (what the appliance pays per video frame)."""
        lstm = 4 * self.hidden * (self.lstm.input_size + self.hidden)
        return (self.proj.in_features * self.proj.out_features + lstm
                + self.head.in_features * self.head.out_features
                + self.out.in_features * self.out.out_features)

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class StepNet(nn.Module):
    """Export form: one step, (1, 4, 80) features and (1, 1, hidden) h, c in and out.

    The normalisation is folded into the first Linear (W' = W / std, b' = b - W' mean), so
    ncnn runs three InnerProducts and an LSTM and nothing else.
    """

    def __init__(self, net: MouthNet):
        super().__init__()
        self.proj = nn.Linear(net.proj.in_features, net.proj.out_features)
        with torch.no_grad():
            weight = net.proj.weight / net.std[None, :]
            self.proj.weight.copy_(weight)
            self.proj.bias.copy_(net.proj.bias - weight @ net.mean)
        self.lstm, self.head, self.out = net.lstm, net.head, net.out
        self.inputs = net.proj.in_features

    def forward(self, features: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        x = features.reshape(1, 1, self.inputs)
        y, (h1, c1) = self.lstm(torch.relu(self.proj(x)), (h, c))
        params = self.out(torch.relu(self.head(y)))
        return params.reshape(6), h1, c1


def export_ncnn(net: MouthNet, out_dir: Path, name: str, recipe: Mapping[str, Any],
                fbank: FbankSettings = FbankSettings(), extra: Mapping[str, Any] | None = None) -> Path:
    """pnnx-export `net` to out_dir/NAME.ncnn.{param,bin} and write the sidecar NAME.yaml."""
    net = net.eval()
    step = StepNet(net).eval()
    hidden = net.hidden
    example = (torch.randn(1, FRAMES_PER_STEP, fbank.num_bins), torch.zeros(1, 1, hidden),
               torch.zeros(1, 1, hidden))
    export_to_ncnn(step, example, out_dir, name)
    sidecar = {
        "schema": 1, "name": name, "kind": "audio_model", "fixture": False,
        "files": {"param": {"path": f"{name}.ncnn.param", "sha256": sha256_file(out_dir / f"{name}.ncnn.param")},
                  "bin": {"path": f"{name}.ncnn.bin", "sha256": sha256_file(out_dir / f"{name}.ncnn.bin")}},
        "inputs": {
            "features": {"blob": "in0", "shape": [FRAMES_PER_STEP, fbank.num_bins],
                         "meaning": "4 fbank frames (10 ms hop) = one 40 ms step, raw log-mel"},
            "h": {"blob": "in1", "shape": [1, hidden], "meaning": "LSTM hidden state (zeros at start)"},
            "c": {"blob": "in2", "shape": [1, hidden], "meaning": "LSTM cell state (zeros at start)"}},
        "outputs": {
            "params": {"blob": "out0", "shape": [6], "meaning": ", ".join(PARAM_NAMES) +
                       " (clip to [0, 1])"},
            "h": {"blob": "out1", "shape": [1, hidden], "meaning": "next hidden state"},
            "c": {"blob": "out2", "shape": [1, hidden], "meaning": "next cell state"}},
        # fp16 storage moves the LSTM state over long utterances: keep fp32 everywhere.
        "ncnn_options": {"use_fp16_storage": False, "use_fp16_arithmetic": False,
                         "use_fp16_packed": False},
        "audio": {"fbank": {"num_bins": fbank.num_bins, "frame_length_ms": fbank.frame_length_ms,
                            "frame_shift_ms": fbank.frame_shift_ms, "dither": fbank.dither,
                            "snip_edges": fbank.snip_edges, "input_scale": fbank.input_scale},
                  "frames_per_step": FRAMES_PER_STEP, "lookahead_steps": LOOKAHEAD_STEPS,
                  "lookahead_ms": LOOKAHEAD_STEPS * 40 + fbank.frame_length_ms - fbank.frame_shift_ms,
                  "params": list(PARAM_NAMES)},
        "network": {"layers": "Linear(320,%d)+ReLU, LSTM(%d,%d), Linear(%d,%d)+ReLU, Linear(%d,6)"
                    % (net.proj.out_features, net.proj.out_features, hidden, hidden,
                       net.head.out_features, net.head.out_features),
                    "parameters": net.param_count(), "macs_per_step": net.macs_per_step()},
        **(dict(extra) if extra else {}),
        "recipe": dict(recipe),
    }
    path = out_dir / f"{name}.yaml"
    header = ("# Streaming audio model: speech -> six mouth parameters per 40 ms video frame.\n"
              "# Written by tools/audio_model/net.py; rebuild with the recipe's command.\n")
    path.write_text(header + yaml.safe_dump(sidecar, sort_keys=False, allow_unicode=True))
    log.info("exported %s (%d parameters, %d MACs per step)", path, net.param_count(),
             net.macs_per_step())
    return path


def torch_steps(net: MouthNet, features: np.ndarray) -> np.ndarray:
    """Reference: the export form run step by step on (fbank frames, bins) -> (steps, 6)."""
    step = StepNet(net).eval()
    h = torch.zeros(1, 1, net.hidden)
    c = torch.zeros(1, 1, net.hidden)
    outputs = []
    with torch.no_grad():
        for n in range(len(features) // FRAMES_PER_STEP):
            chunk = torch.from_numpy(np.ascontiguousarray(
                features[n * FRAMES_PER_STEP:(n + 1) * FRAMES_PER_STEP], np.float32))[None]
            params, h, c = step(chunk, h, c)
            outputs.append(params.numpy().copy())
    return np.array(outputs, np.float32)


def ncnn_parity(net: MouthNet, sidecar_path: Path, features: np.ndarray) -> tuple[float, float]:
    """Max |ncnn - torch| of the six params and of the hidden state, step by step on the same
    fbank frames, each side carrying its own state (so drift over time counts too).

    ncnn's LSTM uses fast exp/tanh approximations on x86: the state differs by ~1e-3 after a
    few dozen steps while the params stay within a few 1e-4 (measured on the shipped model)."""
    from runtime.models.ncnn_model import NcnnModel, load_sidecar

    sidecar = load_sidecar(sidecar_path, kind="audio_model")
    model = NcnnModel(sidecar)
    step = StepNet(net).eval()
    h = np.zeros(sidecar.inputs["h"].shape, np.float32)
    c = np.zeros(sidecar.inputs["c"].shape, np.float32)
    th, tc = torch.zeros(1, 1, net.hidden), torch.zeros(1, 1, net.hidden)
    worst_params = worst_state = 0.0
    with torch.no_grad():
        for n in range(len(features) // FRAMES_PER_STEP):
            chunk = np.ascontiguousarray(features[n * FRAMES_PER_STEP:(n + 1) * FRAMES_PER_STEP],
                                         np.float32)
            out = model.run({"features": chunk, "h": h, "c": c}, ("params", "h", "c"))
            params, th, tc = step(torch.from_numpy(chunk)[None], th, tc)
            h, c = out["h"], out["c"]
            worst_params = max(worst_params, float(np.abs(out["params"].reshape(-1) - params.numpy()).max()))
            worst_state = max(worst_state, float(np.abs(h.reshape(-1) - th.numpy().reshape(-1)).max()))
    return worst_params, worst_state


def record_in_sidecar(path: Path, key: str, value: Any) -> None:
    """Add a top-level entry to a sidecar (not covered by the sha256 of the model files)."""
    text = path.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    doc = yaml.safe_load(text)
    doc[key] = value
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
