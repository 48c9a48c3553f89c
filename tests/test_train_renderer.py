"""The renderer trainer end to end on a tiny dataset: a few steps, an interrupted run that
resumes to the same weights, pnnx export, ncnn-vs-torch parity, and the runtime loading and
running the bundle it writes.

Needs the `tools` extra (torch, pnnx); skipped where it is missing (CI installs it)."""
import json

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("pnnx")

from runtime.quality.levels import Quality  # noqa: E402
from runtime.render.bundle import load_bundle  # noqa: E402
from runtime.render.renderer import NcnnRenderer  # noqa: E402
from tools.avatar import make_default as make_default_avatar  # noqa: E402
from tools.renderer import train as train_renderer  # noqa: E402
from tools.renderer.data import load_pairs, read_manifest, split_shards  # noqa: E402
from tools.renderer.export import PARITY_LIMIT  # noqa: E402
from tools.renderer.net import CoarseNet, FineNet, area_down, compose_box, count_macs  # noqa: E402

TINY = ["--coarse-size", "16", "--crop-size", "32", "--feather-px", "8", "--batch", "4", "--warmup", "2",
        "--threads", "1"]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("renderer") / "dataset"
    assert make_default_avatar.main(["--out", str(out), "--scale", "0.25", "--frames", "8", "--pairs", "96",
                                     "--shard-size", "32"]) == 0
    return out


def test_untrained_stages_are_the_identity():
    """At initialisation both stages return their template, so the shown box is the template:
    training starts from "change nothing" rather than from noise."""
    box = torch.rand(2, 3, 64, 64)
    params = torch.rand(2, 6)
    coarse, fine = CoarseNet(16), FineNet(32, 16)
    tc, tf = area_down(box, 16), area_down(box, 32)
    with torch.no_grad():
        c_img = coarse(tc, params)
        assert torch.allclose(compose_box(box, tc, c_img), box, atol=0.02)  # paint weight starts at 0.018
        f_img = fine(tc, tf, params)
    # keep = 0.5 at init: halfway between the template and the upscaled coarse image.
    assert f_img.shape == tf.shape


@pytest.mark.parametrize("src", [64, 128])
def test_runtime_composes_the_box_as_training_does(src):
    """replace_moved: the torch composition the stages are trained with and the runtime's
    (moved weight, 7-channel upscale, row band) give the same box to within rounding."""
    from runtime.render.renderer import _moved_rows, moved_weight
    from runtime.render.upscale import Upscaler
    from tools.renderer.net import moved_weight as torch_moved

    gen = torch.Generator().manual_seed(src)
    box = torch.rand(1, 3, 256, 256, generator=gen)
    stage_template = area_down(box, src)
    stage = stage_template.clone()
    # A moved region (the chin) and a faint change elsewhere (below moved_from): both kinds.
    stage[:, :, src // 2:src // 2 + src // 4, src // 4:src // 2] += 0.3
    stage += 0.01 * torch.rand(stage.shape, generator=gen)
    composition = {"mode": "replace_moved", "moved_from": 0.015, "moved_to": 0.05}
    expected = compose_box(box, stage_template, stage, composition)[0].permute(1, 2, 0).numpy() * 255
    change = (stage - stage_template)[0].numpy()
    moved = moved_weight(change.copy(), 0.015, 0.05)
    np.testing.assert_allclose(moved, torch_moved(stage - stage_template, 0.015, 0.05)[0, 0].numpy(),
                               atol=1e-6)
    small = np.concatenate([change * 255, stage_template[0].numpy() * 255, moved[None]]).astype(np.float32)
    base = box[0].permute(1, 2, 0).numpy() * 255
    out, scratch = np.empty_like(base), np.empty_like(base)
    got = Upscaler(256).add_moved_to(small, base, out, scratch, _moved_rows(moved, 256))
    np.testing.assert_allclose(got, expected, atol=0.02)
    # The old chin's edge gives way where it moved; outside the moved band nothing changes.
    plain = compose_box(box, stage_template, stage)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(got - plain).max() > 1.0
    top, bottom = _moved_rows(moved, 256)
    np.testing.assert_allclose(got[:top], plain[:top], atol=0.02)


def test_shipped_sizes_fit_the_multiply_add_budget():
    coarse, fine = CoarseNet(64), FineNet(128, 64)
    params = torch.rand(1, 6)
    c_macs = count_macs(coarse, torch.rand(1, 3, 64, 64), params)
    f_macs = count_macs(fine, torch.rand(1, 3, 64, 64), torch.rand(1, 3, 128, 128), params)
    assert c_macs <= 10_000_000
    assert c_macs + f_macs <= 60_000_000


def test_train_export_parity_and_runtime_load(tiny_dataset, tmp_path):
    bundle_dir = tmp_path / "bundle"
    assert train_renderer.main(["--dataset", str(tiny_dataset), "--out", str(bundle_dir), "--work",
                                str(tmp_path / "work"), "--steps", "6", "--checkpoint-every", "3", *TINY]) == 0
    for name in ("avatar.yaml", "coarse.yaml", "fine.yaml", "training_curves.png", "training_log.json",
                 "crop_boxes.npy", "frames/0000.png"):
        assert (bundle_dir / name).is_file(), name
    history = json.loads((bundle_dir / "training_log.json").read_text())
    assert [h["step"] for h in history] == [3, 6]
    for stage in ("coarse", "fine"):
        sidecar = yaml.safe_load((bundle_dir / f"{stage}.yaml").read_text())
        assert max(sidecar["parity"]["max_abs_diff"].values()) <= PARITY_LIMIT
        assert sidecar["network"]["macs"] > 0 and "command" in sidecar["recipe"]
    doc = yaml.safe_load((bundle_dir / "avatar.yaml").read_text())
    assert doc["source"]["scale"] == 0.25 and doc["source"]["frames"] == 8

    bundle = load_bundle(bundle_dir)  # verifies every sha256
    renderer = NcnnRenderer(bundle)
    params = np.array([0.8, 0.2, 0.0, 0.0, 0.0, 0.3], np.float32)
    for level in (Quality.FULL, Quality.COARSE):
        crop = renderer.render(params, 3, level)
        assert crop.shape == (bundle.box_size, bundle.box_size, 3) and crop.dtype == np.uint8
    assert renderer.render(np.zeros(6, np.float32), 3, Quality.FULL) is None  # rest = template as is


def test_interrupted_training_resumes_to_the_same_weights(tiny_dataset, tmp_path, monkeypatch):
    doc = read_manifest(tiny_dataset)
    train_names, val_names = split_shards(doc, 1)
    train_set, val_set = load_pairs(tiny_dataset, train_names), load_pairs(tiny_dataset, val_names)
    recipe = {**train_renderer.DEFAULT_RECIPE, "steps": 6, "checkpoint_every": 2, "batch": 4, "warmup": 2,
              "coarse_size": 16, "crop_size": 32}
    torch.set_num_threads(1)
    whole_c, whole_f, _ = train_renderer.train(train_set, val_set, recipe, tmp_path / "whole")

    real_losses = train_renderer.losses
    calls = {"n": 0}

    def crash_at_step_five(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_losses(*args)

    monkeypatch.setattr(train_renderer, "losses", crash_at_step_five)
    with pytest.raises(KeyboardInterrupt):
        train_renderer.train(train_set, val_set, recipe, tmp_path / "cut")
    monkeypatch.setattr(train_renderer, "losses", real_losses)
    resumed_c, resumed_f, history = train_renderer.train(train_set, val_set, recipe, tmp_path / "cut")
    assert [h["step"] for h in history] == [2, 4, 6]
    for a, b in ((whole_c, resumed_c), (whole_f, resumed_f)):
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name


def test_bad_dataset_gives_one_line(tmp_path, capsys):
    (tmp_path / "dataset.yaml").write_text("schema: 7\n")
    assert train_renderer.main(["--dataset", str(tmp_path), "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "schema" in err and "dataset.yaml" in err
