"""Model and bundle shapes are checked against each other at load (check, start, reload),
never at the first utterance: a sidecar that declares the wrong LSTM state, renderer
sidecars whose shapes or blobs disagree with the bundle's crop sizes, and bundle files that
are not what they claim (pickles, floats outside [0, 1], NaN)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from runtime.cli import main
from runtime.models.ncnn_model import ModelError
from runtime.render.bundle import BundleError, load_bundle
from runtime.render.renderer import NcnnRenderer
from runtime.service.supervisor import Service
from runtime.speech.audio_model import AudioModel
from test_faults import _config, run_service  # noqa: F401 - the fixture


def _edit_yaml(path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def audio_copy(model_fixtures, tmp_path):
    audio = model_fixtures[0]
    target = tmp_path / "audio"
    shutil.copytree(audio.parent, target)
    return target / audio.name


@pytest.fixture
def bundle_copy(model_fixtures, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(model_fixtures[1], target)
    return target


def test_an_lstm_state_declared_too_narrow_is_refused_at_load(audio_copy):
    declared = yaml.safe_load(audio_copy.read_text())
    width = declared["inputs"]["h"]["shape"][-1]

    def narrow(doc):
        for section in ("inputs", "outputs"):
            for role in ("h", "c"):
                doc[section][role]["shape"][-1] = width // 2
    _edit_yaml(audio_copy, narrow)
    with pytest.raises(ModelError) as caught:
        AudioModel(audio_copy)
    message = str(caught.value)
    # Refused before ncnn runs it: a state narrower than the layer's is read out of bounds.
    assert message.startswith(f"{audio_copy}: inputs.h (") and f"a state of {width} values" in message
    assert "\n" not in message


def test_renderer_sidecars_that_disagree_with_the_bundle_are_refused(bundle_copy):
    avatar = bundle_copy / "avatar.yaml"
    _edit_yaml(avatar, lambda doc: doc.update(crop_size=doc["crop_size"] // 2))
    with pytest.raises(BundleError, match=r"fine.yaml: inputs.template_crop.shape: .* does not fit "
                                          r"the bundle \(coarse_size \d+, crop_size \d+"):
        NcnnRenderer(load_bundle(bundle_copy))


def test_a_renderer_whose_declared_output_differs_from_its_net_is_refused(bundle_copy):
    def wrong_output(doc):
        doc["outputs"]["image"]["blob"] = doc["inputs"]["template_crop"]["blob"]
    _edit_yaml(bundle_copy / "coarse.yaml", wrong_output)
    model = yaml.safe_load((bundle_copy / "coarse.yaml").read_text())
    assert model["outputs"]["image"]["blob"] == model["inputs"]["template_crop"]["blob"]
    # The blob exists (it is the input), so ncnn extracts it; only the probe's comparison of
    # what came out with what was declared can tell. Here shape matches: the run succeeds.
    NcnnRenderer(load_bundle(bundle_copy))

    def missing_blob(doc):
        doc["outputs"]["image"]["blob"] = "no_such_blob"
    _edit_yaml(bundle_copy / "coarse.yaml", missing_blob)
    with pytest.raises(ModelError, match="extracting 'image' \\(no_such_blob\\) failed"):
        NcnnRenderer(load_bundle(bundle_copy))


def test_check_start_and_reload_refuse_a_mismatched_bundle(model_fixtures, bundle_copy, tmp_path,
                                                           capsys, run_service):  # noqa: F811
    _edit_yaml(bundle_copy / "avatar.yaml", lambda doc: doc.update(coarse_size=doc["coarse_size"] // 2))
    audio = model_fixtures[0]
    args = ["--audio-model", str(audio), "--bundle", str(bundle_copy)]
    assert main(["check", *args]) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("FAIL  avatar")]
    assert "does not fit the bundle" in line
    assert main(["run", *args, "--set", "display.sink=null", "--set", "control.enabled=false"]) == 78
    assert "does not fit the bundle" in capsys.readouterr().err
    configs = [_config(model_fixtures, tmp_path, f"avatar.bundle={bundle_copy}"),
               _config(model_fixtures, tmp_path)]
    service = run_service(lambda: configs.pop())
    first = service.appliance
    assert service.reload() is False
    assert service.appliance is first and "does not fit the bundle" in service.status().last_error


def _restamp(bundle, name: str) -> None:
    """A file replaced by someone who also updated its sha256: the hash alone does not help."""
    from runtime.models.ncnn_model import sha256_file
    _edit_yaml(bundle / "avatar.yaml",
               lambda doc: doc["template"]["sha256"].__setitem__(name, sha256_file(bundle / name)))


def _replace_boxes(bundle, array, **save) -> None:
    np.save(bundle / "crop_boxes.npy", array, **save)
    _restamp(bundle, "crop_boxes.npy")


@pytest.mark.parametrize("break_it, expected", [
    (lambda b: _replace_boxes(b, np.array([{"x": 1}], dtype=object), allow_pickle=True),
     "template.crop_boxes: cannot read crop_boxes.npy"),
    (lambda b: _replace_boxes(b, np.zeros((3, 2), np.float32)),
     "template.crop_boxes: must be"),
    (lambda b: (np.save(b / "mask.npy", np.full((4, 4), 2.0, np.float32)),
                _edit_yaml(b / "avatar.yaml", lambda d: d.update(mask={"file": "mask.npy"}))),
     "mask.file: values must be finite and in [0, 1]"),
    (lambda b: _edit_yaml(b / "avatar.yaml", lambda d: d.update(mask={"feather_px": 100000})),
     "mask: mask"),
    (lambda b: _edit_yaml(b / "avatar.yaml", lambda d: d.update(mask={"feather_px": "wide"})),
     "mask.feather_px: must be an integer"),
])
def test_bad_bundle_files_are_a_bundle_error_not_a_crash(bundle_copy, break_it, expected):
    break_it(bundle_copy)
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle_copy)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_service_start_with_a_mismatched_bundle_is_exit_78(model_fixtures, bundle_copy, tmp_path):
    from runtime.pipeline.appliance import ApplianceError
    _edit_yaml(bundle_copy / "avatar.yaml", lambda doc: doc.update(crop_size=doc["crop_size"] // 2))
    service = Service(lambda: _config(model_fixtures, tmp_path, f"avatar.bundle={bundle_copy}"))
    with pytest.raises(ApplianceError) as caught:
        service.run()
    assert caught.value.exit_code == 78 and "does not fit the bundle" in str(caught.value)


def _set(dotted: str, value):
    def change(doc):
        node = doc
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return change


@pytest.mark.parametrize("change, expected", [
    (_set("box_size", 0), "box_size: must be an integer from 16 to"),
    (_set("box_size", 100000), "box_size: must be an integer from 16 to"),
    (_set("mask", {"feather_px": 100000}), "mask: mask"),
    (_set("frame_size", [100000, 100000]), "frame_size: must be [width, height], each 16 to 4096"),
    (_set("template.count", 30000000), "template.count: must be an integer from 1 to 3000"),
    (lambda doc: (doc.update(frame_size=[4096, 4096]), doc["template"].update(count=3000)),
     "would take 140.6 GiB decoded (at most 4 GiB)"),
    (_set("crop_size", 100000), "crop_size: must be an integer from 8 to 512"),
    (_set("calibration", {"open_scale": float("nan")}),
     "calibration.open_scale: must be a number from 0.1 to 10 (got nan)"),
    (_set("calibration", {"open_scale": 1e9}), "calibration.open_scale: must be a number"),
    (_set("template.sha256", {"/etc/shadow": "0000"}),
     "template.sha256: '/etc/shadow' must be a path inside the bundle directory"),
    (_set("template.crop_boxes", "../../crop_boxes.npy"),
     "template.crop_boxes: '../../crop_boxes.npy' must be a path inside the bundle directory"),
    (_set("models.coarse", "/etc/passwd"), "models.coarse: '/etc/passwd' must be a path inside"),
    (_set("mask", {"file": "../mask.npy"}), "mask.file: '../mask.npy' must be a path inside"),
])
def test_every_number_has_a_range_and_every_file_stays_in_the_bundle(bundle_copy, change, expected):
    _edit_yaml(bundle_copy / "avatar.yaml", change)
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle_copy)
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert message.startswith(str(bundle_copy / "avatar.yaml"))  # refused before any file is read


def test_a_huge_avatar_yaml_is_refused_unparsed(bundle_copy):
    (bundle_copy / "avatar.yaml").write_text("schema: 1\n" + "# padding\n" * 200_000)
    with pytest.raises(BundleError, match="not an avatar.yaml"):
        load_bundle(bundle_copy)
