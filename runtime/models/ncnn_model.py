"""Load an ncnn model from its YAML sidecar, verifying sha256 before ncnn sees the files.

A sidecar (NAME.yaml next to NAME.ncnn.param/.bin) names the files and their sha256, the
input/output blobs by role (so no code ever holds a magic blob name like "in0"), their
shapes, per-model ncnn options, and the recipe that rebuilds the model.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

log = logging.getLogger(__name__)

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
