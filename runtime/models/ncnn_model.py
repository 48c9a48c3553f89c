"""Load an ncnn model from its YAML sidecar, verifying sha256 before ncnn sees the files.

A sidecar (NAME.yaml next to NAME.ncnn.param/.bin) names the files and their sha256, the
input/output blobs by role (so no code ever holds a magic blob name like "in0"), their
shapes, per-model ncnn options, and the recipe that rebuilds the model.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml


SIDECAR_SCHEMA = 1


class ModelError(Exception):
    """A model cannot be used: missing file, bad sidecar, hash mismatch, ncnn failure."""


@dataclass(frozen=True)
class BlobSpec:
    """One input or output: ncnn blob name and shape in ncnn order ((w,), (h, w), (c, h, w))."""

    blob: str
    shape: tuple[int, ...]
    meaning: str = ""


@dataclass(frozen=True)
class ModelSidecar:
    path: Path
    name: str
    kind: str
    fixture: bool
    param_path: Path
    bin_path: Path
    param_sha256: str
    bin_sha256: str
    inputs: Mapping[str, BlobSpec]
    outputs: Mapping[str, BlobSpec]
    #: Per-model ncnn options, e.g. {"use_fp16_storage": False} where fp16 hurts accuracy.
    options: Mapping[str, bool] = field(default_factory=dict)
    #: Kind-specific settings (fbank options for the audio model, sizes for renderers).
    extra: Mapping[str, Any] = field(default_factory=dict)


def squeezed_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    # ncnn reports (1, 256) or (256,) for the same blob depending on the layer: leading ones
    # carry no meaning, the rest must match.
    shape = tuple(int(n) for n in shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


#: Recurrent layers read their state inputs at the width their own parameters say, whatever
#: the blob holds (a narrower one is read out of bounds): (input index, param keys whose
#: product is the width). LSTM: 0=num_output 2=direction (2 = both ways) 3=hidden_size.
_STATE_WIDTHS = {"LSTM": ((1, ("0", "dirs")), (2, ("3", "dirs"))),
                 "GRU": ((1, ("0", "dirs")),), "RNN": ((1, ("0", "dirs")),)}


def check_recurrent_states(sidecar: ModelSidecar) -> None:
    """Declared state inputs of LSTM/GRU/RNN layers against the widths in the param file."""
    try:
        lines = sidecar.param_path.read_text().splitlines()[2:]
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"{sidecar.param_path}: cannot read the param file: {err}") from None
    declared = {spec.blob: (role, spec.shape) for role, spec in sidecar.inputs.items()}
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[0] not in _STATE_WIDTHS:
            continue
        try:
            count_in = int(fields[2])
            blobs_in = fields[4:4 + count_in]
            params = dict(item.split("=", 1) for item in fields[4 + count_in + int(fields[3]):]
                          if "=" in item)
            params["dirs"] = "2" if params.get("2") == "2" else "1"
            params.setdefault("3", params.get("0", "0"))
            for index, keys in _STATE_WIDTHS[fields[0]]:
                if index >= len(blobs_in) or blobs_in[index] not in declared:
                    continue
                width = 1
                for key in keys:
                    width *= int(params[key])
                role, shape = declared[blobs_in[index]]
                if int(np.prod(shape)) != width:
                    raise ModelError(
                        f"{sidecar.path}: inputs.{role} ({blobs_in[index]}): the sidecar declares "
                        f"{list(shape)}, but {fields[0]} layer {fields[1]} holds a state of "
                        f"{width} values")
        except (ValueError, KeyError):
            continue  # a layer line this check does not understand: the probe still runs


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise ModelError(f"{where}: missing key '{key}'")
    return mapping[key]


def _blobs(section: Any, where: str) -> dict[str, BlobSpec]:
    if not isinstance(section, dict) or not section:
        raise ModelError(f"{where}: must be a mapping of role -> {{blob, shape}}")
    specs = {}
    for role, spec in section.items():
        blob = _require(spec, "blob", f"{where}.{role}")
        shape = _require(spec, "shape", f"{where}.{role}")
        if not (isinstance(shape, list) and 1 <= len(shape) <= 3
                and all(isinstance(n, int) and n > 0 for n in shape)):
            raise ModelError(f"{where}.{role}.shape: must be 1 to 3 positive ints (got {shape!r})")
        specs[str(role)] = BlobSpec(str(blob), tuple(shape), str(spec.get("meaning", "")))
    return specs


def load_sidecar(path: Path, kind: str | None = None) -> ModelSidecar:
    """Parse and check a sidecar; `kind` (audio_model, coarse, fine) must match if given."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: model sidecar not found") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: cannot read model sidecar: {str(err).splitlines()[0]}") from None
    where = str(path)
    if not isinstance(doc, dict):
        raise ModelError(f"{where}: a model sidecar must be a YAML mapping")
    if doc.get("schema") != SIDECAR_SCHEMA:
        raise ModelError(f"{where}: schema: must be {SIDECAR_SCHEMA} (got {doc.get('schema')!r})")
    if kind is not None and doc.get("kind") != kind:
        raise ModelError(f"{where}: kind: must be {kind} (got {doc.get('kind')!r})")
    files = _require(doc, "files", where)
    entries = {}
    for which in ("param", "bin"):
        entry = _require(files, which, f"{where}: files")
        name = _require(entry, "path", f"{where}: files.{which}")
        digest = str(_require(entry, "sha256", f"{where}: files.{which}")).lower()
        if len(digest) != 64:
            raise ModelError(f"{where}: files.{which}.sha256: must be 64 hex digits")
        entries[which] = (path.parent / str(name), digest)
    options = doc.get("ncnn_options") or {}
    if not isinstance(options, dict) or not all(isinstance(v, bool) for v in options.values()):
        raise ModelError(f"{where}: ncnn_options: must map option names to true/false")
    return ModelSidecar(
        path=path, name=str(doc.get("name", path.stem)), kind=str(doc.get("kind")),
        fixture=bool(doc.get("fixture", False)),
        param_path=entries["param"][0], bin_path=entries["bin"][0],
        param_sha256=entries["param"][1], bin_sha256=entries["bin"][1],
        inputs=_blobs(doc.get("inputs"), f"{where}: inputs"),
        outputs=_blobs(doc.get("outputs"), f"{where}: outputs"),
        options=options, extra={k: v for k, v in doc.items() if k not in
                                {"files", "inputs", "outputs", "ncnn_options"}})


def verify_files(sidecar: ModelSidecar) -> None:
    """Raise ModelError naming the file and both hashes if a file differs from its sidecar."""
    for file_path, expected in ((sidecar.param_path, sidecar.param_sha256),
                                (sidecar.bin_path, sidecar.bin_sha256)):
        try:
            actual = sha256_file(file_path)
        except OSError as err:
            raise ModelError(f"{file_path}: cannot read model file: {err.strerror}") from None
        if actual != expected:
            raise ModelError(f"{file_path}: sha256 mismatch: expected {expected}, got {actual} "
                             f"(sidecar {sidecar.path.name})")


class NcnnModel:
    """One ncnn Net built from a verified sidecar; `run` makes a fresh extractor per call."""

    def __init__(self, sidecar: ModelSidecar, threads: int = 1, vulkan: bool = False):
        import ncnn  # deferred so `edgemate check` can report a broken ncnn install clearly

        verify_files(sidecar)
        self.sidecar = sidecar
        self.net = ncnn.Net()
        # Options must be set before load_param/load_model or they are silently ignored.
        self.net.opt.num_threads = threads
        self.net.opt.use_vulkan_compute = vulkan
        for option, value in sidecar.options.items():
            if not hasattr(self.net.opt, option):
                raise ModelError(f"{sidecar.path}: ncnn_options.{option}: not an ncnn option")
            setattr(self.net.opt, option, value)
        if self.net.load_param(str(sidecar.param_path)) != 0:
            raise ModelError(f"{sidecar.param_path}: ncnn could not parse the param file")
        if self.net.load_model(str(sidecar.bin_path)) != 0:
            raise ModelError(f"{sidecar.bin_path}: ncnn could not load the weights "
                             "(file shorter than the param file needs)")
        self._mat = ncnn.Mat
        check_recurrent_states(sidecar)  # before the probe: ncnn reads a short state out of bounds
        self.probe()

    def probe(self) -> None:
        """Run once on zeros and compare every output with the shape the sidecar declares.

        ncnn does not check a blob's size against the layer that reads it: a sidecar that
        declares a 128-wide state for a 256-wide LSTM runs with wrong values, and a renderer
        whose declared crop differs from its net fails only at the first utterance, inside
        the frame loop. Here, before the first frame, it is a ModelError naming the blob."""
        zeros = {role: np.zeros(spec.shape, np.float32) for role, spec in self.sidecar.inputs.items()}
        try:
            results = self.run(zeros, tuple(self.sidecar.outputs))
        except ModelError:
            raise
        except Exception as err:  # noqa: BLE001 - whatever ncnn or numpy raise on a bad net
            raise ModelError(f"{self.sidecar.path}: the model does not run on inputs of the "
                             f"declared shapes ({type(err).__name__}: {err})") from None
        for role, spec in self.sidecar.outputs.items():
            actual = squeezed_shape(results[role].shape)
            if actual != squeezed_shape(spec.shape):
                raise ModelError(
                    f"{self.sidecar.path}: outputs.{role} ({spec.blob}): the model gives shape "
                    f"{list(results[role].shape)}, the sidecar declares {list(spec.shape)} "
                    "(do the declared input shapes match the model?)")
            if not np.isfinite(results[role]).all():
                raise ModelError(f"{self.sidecar.path}: outputs.{role} ({spec.blob}) is not "
                                 "finite on zero inputs: damaged weights")

    def run(self, inputs: Mapping[str, np.ndarray], outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Feed arrays by role, return copies of the requested outputs by role."""
        extractor = self.net.create_extractor()
        # ncnn.Mat(array) neither copies nor keeps the array alive, and an in-place first
        # layer may write into it: clone into ncnn-owned memory.
        for role, array in inputs.items():
            spec = self.sidecar.inputs[role]
            data = np.ascontiguousarray(array, dtype=np.float32).reshape(spec.shape)
            extractor.input(spec.blob, self._mat(data).clone())
        results = {}
        for role in outputs:
            spec = self.sidecar.outputs[role]
            ret, mat = extractor.extract(spec.blob)
            if ret != 0:
                raise ModelError(f"{self.sidecar.path}: extracting '{role}' ({spec.blob}) "
                                 f"failed with ncnn code {ret}")
            results[role] = np.array(mat, dtype=np.float32, copy=True)
        return results
