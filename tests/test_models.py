"""ncnn model classes: sidecar checks, sha256 before loading, numerics against numpy."""
import shutil

import numpy as np
import pytest
import yaml

from runtime.models.ncnn_model import ModelError, NcnnModel, load_sidecar
from runtime.speech.audio_model import AudioModel
from tools.export.make_fixtures import write_audio_fixture


def _copy_model(sidecar, tmp_path):
    for path in sidecar.parent.glob(sidecar.name.replace(".yaml", "") + "*"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / sidecar.name


def test_fixture_audio_model_loads_and_closes_the_mouth_in_silence(model_fixtures):
    model = AudioModel(model_fixtures[0])
    assert model.sidecar.fixture
    silence = np.full((model.frames_per_step, model.fbank.num_bins), -15.9, np.float32)
    for _ in range(5):
        params = model.step(silence)
    assert params.shape == (6,) and np.all(params < 0.05)
    loud = np.full_like(silence, 17.0)
    assert model.step(loud)[0] > 0.5


def test_open_curve_stretches_open_above_its_knee_only(model_fixtures, tmp_path):
    from tools.audio_model.calibrate import stretched
    sidecar_path = _copy_model(model_fixtures[0], tmp_path)
    doc = yaml.safe_load(sidecar_path.read_text())
    doc["audio"]["open_curve"] = {"knee": 0.05, "gain": 1.5}
    sidecar_path.write_text(yaml.safe_dump(doc))
    curved, plain = AudioModel(sidecar_path), AudioModel(sidecar_path, open_curve=False)
    rng = np.random.default_rng(3)
    levels = [-15.9] * 3 + list(rng.uniform(-4, 17, 20))
    raw, out = [], []
    for level in levels:
        step = np.full((plain.frames_per_step, plain.fbank.num_bins), level, np.float32)
        raw.append(plain.step(step))
        out.append(curved.step(step))
    raw, out = np.array(raw), np.array(out)
    np.testing.assert_allclose(out, stretched(raw, 0.05, 1.5), atol=1e-6)  # the tool's arithmetic
    np.testing.assert_array_equal(out[:, 1:], raw[:, 1:])  # only open
    shut = raw[:, 0] <= 0.05
    assert shut.any() and np.array_equal(out[shut, 0], raw[shut, 0])  # a shut mouth stays shut
    assert np.all(out[~shut, 0] >= raw[~shut, 0]) and out[:, 0].max() <= 1.0


def test_written_open_curve_is_what_the_runtime_reads(model_fixtures, tmp_path):
    from tools.audio_model.calibrate import write_curve
    sidecar_path = _copy_model(model_fixtures[0], tmp_path)
    comments = [line for line in sidecar_path.read_text().splitlines() if line.startswith("#")]
    write_curve(sidecar_path, {"knee": 0.05, "gain": 1.25, "calibrated_on": "clip z"})
    model = AudioModel(sidecar_path)
    assert (model.open_knee, model.open_gain) == (0.05, 1.25)
    doc = yaml.safe_load(sidecar_path.read_text())
    assert doc["recipe"]["open_curve"]["calibrated_on"] == "clip z"  # train --rebuild keeps it
    assert sidecar_path.read_text().splitlines()[:len(comments)] == comments


def test_open_gain_is_fitted_to_the_real_share():
    from tools.audio_model.calibrate import fit_gain, stretched
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 0.7, 2000)
    speech = rng.random(2000) < 0.8
    gain = fit_gain(raw, speech, 0.4)
    opened = stretched(raw[:, None].repeat(6, 1), 0.05, gain)[speech, 0] >= 0.5
    assert abs(opened.mean() - 0.4) < 0.01 and 1.0 <= gain <= 3.0


def test_lstm_state_is_carried_and_reset(model_fixtures):
    model = AudioModel(model_fixtures[0])
    rng = np.random.default_rng(0)
    steps = rng.normal(10, 4, (6, model.frames_per_step, model.fbank.num_bins)).astype(np.float32)
    first = [model.step(s) for s in steps]
    model.reset()
    again = [model.step(s) for s in steps]
    np.testing.assert_array_equal(np.array(first), np.array(again))


def test_ncnn_lstm_matches_numpy_reference(tmp_path):
    """The fixture writer's weight layout (gate order I, F, O, G) is what ncnn computes."""
    sidecar = load_sidecar(write_audio_fixture(tmp_path, hidden=8, num_bins=10))
    net = NcnnModel(sidecar)
    rng = np.random.default_rng(3)
    x = rng.normal(0, 30, (4, 10)).astype(np.float32)
    h0 = rng.normal(0, 0.5, (1, 8)).astype(np.float32)
    c0 = rng.normal(0, 0.5, (1, 8)).astype(np.float32)
    out = net.run({"features": x, "h": h0, "c": c0}, ("params", "h", "c"))
    weights = np.fromfile(sidecar.bin_path, np.float32)
    # Layout: [flag, w_ih (32x10)], [flag, bias (32)], [flag, w_hh (32x8)], [flag, fc_w (6x8)], fc_b.
    pos = 1
    w_ih = weights[pos:pos + 320].reshape(32, 10); pos += 321
    bias = weights[pos:pos + 32]; pos += 33
    w_hh = weights[pos:pos + 64 * 4].reshape(32, 8); pos += 257
    fc_w = weights[pos:pos + 48].reshape(6, 8); pos += 48
    fc_b = weights[pos:pos + 6]
    sig = lambda z: 1 / (1 + np.exp(-z))
    h, c = h0[0].astype(np.float64), c0[0].astype(np.float64)
    for t in range(4):
        g = w_ih @ x[t] + w_hh @ h + bias
        c = sig(g[8:16]) * c + sig(g[:8]) * np.tanh(g[24:])
        h = sig(g[16:24]) * np.tanh(c)
    np.testing.assert_allclose(out["h"].ravel(), h, atol=1e-5)
    np.testing.assert_allclose(out["c"].ravel(), c, atol=1e-5)
    np.testing.assert_allclose(out["params"].ravel(), sig(fc_w @ h + fc_b), atol=1e-5)


def test_corrupted_weights_are_refused_with_both_hashes(model_fixtures, tmp_path):
    sidecar_path = _copy_model(model_fixtures[0], tmp_path)
    sidecar = load_sidecar(sidecar_path)
    data = bytearray(sidecar.bin_path.read_bytes())
    data[100] ^= 0x40  # one flipped bit: ncnn itself would load this silently
    sidecar.bin_path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as err:
        AudioModel(sidecar_path)
    message = str(err.value)
    assert str(sidecar.bin_path) in message and sidecar.bin_sha256 in message
    assert "sha256 mismatch" in message and "\n" not in message


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.pop("files"), "missing key 'files'"),
    (lambda d: d.update(schema=9), "schema: must be 1"),
    (lambda d: d.update(kind="coarse"), "kind: must be audio_model"),
    (lambda d: d["inputs"]["features"].update(shape=[4, "x"]), "inputs.features.shape"),
    (lambda d: d["files"]["bin"].update(sha256="abc"), "64 hex digits"),
    (lambda d: d.update(ncnn_options={"use_fp16_storage": "yes"}), "ncnn_options"),
    (lambda d: d["audio"].update(open_curve={"knee": 0.05}), "open_curve: needs numbers"),
    (lambda d: d["audio"].update(open_curve={"knee": 0.05, "gain": 7}), "gain in \\[1, 3\\]"),
])
def test_bad_sidecars_are_named(model_fixtures, tmp_path, mutate, expected):
    sidecar_path = _copy_model(model_fixtures[0], tmp_path)
    doc = yaml.safe_load(sidecar_path.read_text())
    mutate(doc)
    sidecar_path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ModelError, match=expected) as err:
        AudioModel(sidecar_path)
    assert str(sidecar_path) in str(err.value)


def test_missing_model_file(model_fixtures, tmp_path):
    sidecar_path = _copy_model(model_fixtures[0], tmp_path)
    load_sidecar(sidecar_path).param_path.unlink()
    with pytest.raises(ModelError, match="cannot read model file"):
        AudioModel(sidecar_path)


def test_truncated_weights_with_matching_hash_fail_in_ncnn(model_fixtures, tmp_path):
    """A sidecar rewritten for a short file: ncnn's own return code is checked."""
    sidecar_path = _copy_model(model_fixtures[0], tmp_path)
    sidecar = load_sidecar(sidecar_path)
    sidecar.bin_path.write_bytes(sidecar.bin_path.read_bytes()[:64])
    doc = yaml.safe_load(sidecar_path.read_text())
    import hashlib
    doc["files"]["bin"]["sha256"] = hashlib.sha256(sidecar.bin_path.read_bytes()).hexdigest()
    sidecar_path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ModelError, match="could not load the weights"):
        AudioModel(sidecar_path)
