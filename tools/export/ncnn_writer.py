"""Write ncnn .param/.bin files from numpy weights, without torch or pnnx.

Used for the test fixtures (small, real ncnn models that exercise the runtime before the
trained models exist). Only the handful of layer types the fixtures need are covered; the
weight layouts follow ncnn's layer loaders (src/layer/*.cpp `load_model`).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: ncnn param file magic.
PARAM_MAGIC = 7767517


@dataclass
class NcnnNetWriter:
    """Accumulates layers; `save(stem)` writes stem.ncnn.param and stem.ncnn.bin."""

    layers: list[tuple[str, str, list[str], list[str], dict]] = field(default_factory=list)
    weights: list[bytes] = field(default_factory=list)

    def _layer(self, kind: str, name: str, bottoms: list[str], tops: list[str],
               params: dict[int, object] | None = None) -> None:
        self.layers.append((kind, name, list(bottoms), list(tops), dict(params or {})))

    def _with_splits(self) -> list[tuple[str, str, list[str], list[str], dict]]:
        """ncnn wants each blob consumed once: a blob read by n layers goes through a Split."""
        readers: dict[str, int] = {}
        for _, _, bottoms, _, _ in self.layers:
            for blob in bottoms:
                readers[blob] = readers.get(blob, 0) + 1
        used: dict[str, int] = {}
        out = []
        for kind, name, bottoms, tops, params in self.layers:
            renamed = []
            for blob in bottoms:
                if readers[blob] > 1:
                    used[blob] = used.get(blob, 0) + 1
                    blob = f"{blob}_split{used[blob] - 1}"
                renamed.append(blob)
            out.append((kind, name, renamed, tops, params))
            for blob in tops:
                if readers.get(blob, 0) > 1:
                    copies = [f"{blob}_split{i}" for i in range(readers[blob])]
                    out.append(("Split", f"{blob}_split", [blob], copies, {}))
        return out

    @staticmethod
    def _line(kind: str, name: str, bottoms: list[str], tops: list[str], params: dict) -> str:
        fields = [f"{kind:<16}", f"{name:<16}", str(len(bottoms)), str(len(tops)), *bottoms, *tops]
        for key, value in params.items():
            fields.append(f"{key}={value:e}" if isinstance(value, float) else f"{key}={value}")
        return " ".join(fields)

    @staticmethod
    def _flagged(array: np.ndarray) -> bytes:
        # mb.load(..., type=0) reads a 4-byte flag first; 0 means raw float32 follows.
        return struct.pack("<I", 0) + np.ascontiguousarray(array, dtype="<f4").tobytes()

    @staticmethod
    def _raw(array: np.ndarray) -> bytes:
        return np.ascontiguousarray(array, dtype="<f4").tobytes()

    def input(self, name: str, shape: tuple[int, ...]) -> str:
        """shape in ncnn order: (w,), (h, w) or (c, h, w)."""
        params = {0: shape[-1]}
        if len(shape) >= 2:
            params[1] = shape[-2]
        if len(shape) == 3:
            params[2] = shape[0]
        self._layer("Input", name, [], [name], params)
        return name

    def conv(self, name: str, bottom: str, weight: np.ndarray, bias: np.ndarray,
             pad: int | None = None, activation: int = 0) -> str:
        """weight (out, in, k, k); activation: 0 none, 1 ReLU, 4 sigmoid."""
        out_ch, in_ch, kh, kw = weight.shape
        params = {0: out_ch, 1: kw, 11: kh, 4: kw // 2 if pad is None else pad, 5: 1,
                  6: weight.size}
        if activation:
            params[9] = activation
        self._layer("Convolution", name, [bottom], [name], params)
        self.weights += [self._flagged(weight), self._raw(bias)]
        return name

    def inner_product(self, name: str, bottom: str, weight: np.ndarray, bias: np.ndarray,
                      activation: int = 0) -> str:
        """weight (out, in) applied to a 1-D blob."""
        params = {0: weight.shape[0], 1: 1, 2: weight.size}
        if activation:
            params[9] = activation
        self._layer("InnerProduct", name, [bottom], [name], params)
        self.weights += [self._flagged(weight), self._raw(bias)]
        return name

    def lstm(self, name: str, bottom: str, h0: str, c0: str, w_ih: np.ndarray,
             w_hh: np.ndarray, bias: np.ndarray) -> tuple[str, str, str]:
        """A forward LSTM with explicit state; weights in ncnn gate order I, F, O, G.

        w_ih (4H, in), w_hh (4H, H), bias (4H,) = b_ih + b_hh. Returns (out, h_out, c_out).
        """
        hidden = w_hh.shape[1]
        tops = [name, f"{name}_h", f"{name}_c"]
        self._layer("LSTM", name, [bottom, h0, c0], tops, {0: hidden, 1: w_ih.size, 2: 0})
        self.weights += [self._flagged(w_ih), self._flagged(bias), self._flagged(w_hh)]
        return tops[0], tops[1], tops[2]

    def unary(self, kind: str, name: str, bottom: str, params: dict[int, object] | None = None) -> str:
        """Weightless single-input layers: ReLU, Sigmoid, Flatten, Reshape, Interp, Clip..."""
        self._layer(kind, name, [bottom], [name], params)
        return name

    def binary(self, name: str, a: str, b: str, op: int = 0) -> str:
        """BinaryOp with broadcasting; op 0 add, 1 sub, 2 mul."""
        self._layer("BinaryOp", name, [a, b], [name], {0: op})
        return name

    def concat(self, name: str, bottoms: list[str], axis: int = 0) -> str:
        self._layer("Concat", name, bottoms, [name], {0: axis})
        return name

    def crop_rows(self, name: str, bottom: str, start: int, count: int) -> str:
        """Rows [start, start+count) of a 2-D (h, w) blob."""
        self._layer("Crop", name, [bottom], [name], {1: start, 3: -233, 4: count})
        return name

    def save(self, stem: Path) -> tuple[Path, Path]:
        stem.parent.mkdir(parents=True, exist_ok=True)
        param_path = stem.with_name(stem.name + ".ncnn.param")
        bin_path = stem.with_name(stem.name + ".ncnn.bin")
        layers = self._with_splits()
        blob_count = len({blob for layer in layers for blob in layer[3]})
        lines = [str(PARAM_MAGIC), f"{len(layers)} {blob_count}"] + [self._line(*layer) for layer in layers]
        param_path.write_text("\n".join(lines) + "\n")
        bin_path.write_bytes(b"".join(self.weights))
        return param_path, bin_path


def memory_data(writer: NcnnNetWriter, name: str, array: np.ndarray) -> str:
    """A constant blob (c, h, w) / (h, w) / (w,) baked into the model."""
    shape = array.shape
    params = {0: shape[-1]}
    if len(shape) >= 2:
        params[1] = shape[-2]
    if len(shape) == 3:
        params[2] = shape[0]
    writer._layer("MemoryData", name, [], [name], params)
    writer.weights.append(writer._raw(array))  # MemoryData loads with type 1: no flag
    return name
