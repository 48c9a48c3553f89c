"""tools/eval_renderer: metrics on known cases, and the report on a tiny generated bundle.

The bundle is the procedural character at scale 0.25 (180x320 frames, 64 px mouth box,
8 template frames) with the TEST FIXTURE renderer models of tools/make_fixtures: hand-wired,
so the scores mean nothing; the test checks the machinery, the files and the invariants.
"""
import hashlib
import json

import numpy as np
import pytest
import yaml

from tools.avatar.scene import AvatarSettings, DefaultAvatar
from tools.renderer.evaluation.metrics import PSNR_CAP_DB, psnr, ssim, summarize

SCALE, FRAMES = 0.25, 8
SOURCE = {"generator": "procedural default character", "seed": 0, "scale": SCALE, "frames": FRAMES}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_bundle(out, source=SOURCE):
    from tools.avatar.make_default import main as make_avatar
    from tools.export.make_fixtures import write_renderer_fixtures

    assert make_avatar(["--out", str(out), "--template-only", "--scale", str(SCALE),
                        "--frames", str(FRAMES)]) == 0
    box = AvatarSettings(scale=SCALE).box
    coarse, fine = write_renderer_fixtures(out, coarse_size=32, crop_size=box)
    width, height = AvatarSettings(scale=SCALE).frame_size
    doc = {"schema": 1, "name": "tiny-procedural", "fixture": True, "fps": 25, "frame_size": [width, height],
           "template": {"frames": "frames/%04d.png", "count": FRAMES, "crop_boxes": "crop_boxes.npy",
                        "sha256": {"crop_boxes.npy": _sha(out / "crop_boxes.npy")}},
           "box_size": box, "crop_size": box, "coarse_size": 32, "mask": {"feather_px": 8},
           "models": {"coarse": coarse.name, "fine": fine.name}, "calibration": {"open_scale": 1.0}}
    if source is not None:
        doc["source"] = source
    (out / "avatar.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return _write_bundle(tmp_path_factory.mktemp("bundle"))


# -- metrics ------------------------------------------------------------------------------

def test_identical_images_give_infinite_psnr_and_ssim_one():
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert psnr(img, img) == float("inf")
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_a_known_error():
    a = np.full((32, 32, 3), 100, np.uint8)
    b = a + np.uint8(5)  # MSE exactly 25
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / 25.0), abs=1e-9)
    # Gaussian noise of sigma 4 (unclipped around mid-grey): PSNR ~ 20 log10(255 / 4)
    rng = np.random.default_rng(1)
    grey = np.full((256, 256, 3), 128, np.uint8)
    noisy = np.clip(np.rint(128 + rng.normal(0, 4.0, grey.shape)), 0, 255).astype(np.uint8)
    assert psnr(grey, noisy) == pytest.approx(20 * np.log10(255 / 4.0), abs=0.15)


def test_psnr_over_a_region_ignores_the_rest():
    a = np.zeros((10, 10, 3), np.uint8)
    b = a.copy()
    b[:5] = 50
    where = np.zeros((10, 10), bool)
    where[5:] = True
    assert psnr(a, b, where) == float("inf")
    assert np.isnan(psnr(a, b, np.zeros((10, 10), bool)))


def test_ssim_is_symmetric_bounded_and_drops_with_noise():
    rng = np.random.default_rng(2)
    base = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    slightly = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
    badly = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    assert ssim(base, slightly) == pytest.approx(ssim(slightly, base), abs=1e-12)
    assert 1.0 > ssim(base, slightly) > ssim(base, badly) > -1.0
    with pytest.raises(ValueError):
        ssim(base[:5, :5], base[:5, :5])


def test_ssim_of_a_constant_shift_matches_the_luminance_term():
    # Flat images: variance terms vanish, SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    a = np.full((20, 20), 100.0)
    b = np.full((20, 20), 120.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1), rel=1e-9)


def test_summary_caps_infinite_psnr():
    s = summarize([30.0, float("inf"), float("nan")], cap=PSNR_CAP_DB)
    assert s["n"] == 2 and s["max"] == PSNR_CAP_DB and s["mean"] == pytest.approx(65.0)


# -- the ground-truth shortcut the frame PSNR relies on --------------------------------------

def test_truth_frame_differs_from_template_only_inside_the_mouth_box():
    from tools.avatar.sheets import COMBOS
    avatar = DefaultAvatar(AvatarSettings(seed=0, scale=SCALE, frames=FRAMES))
    b = avatar.settings.box
    for k in (0, 5):
        template = avatar.render_frame(k)
        for _, params in COMBOS[-3:]:  # press+open and all ones: the widest mouths
            frame = avatar.render_frame(k, params).astype(np.int16)
            x, y = avatar.crop_box(k)
            diff = np.abs(frame - template)
            assert diff[y:y + b, x:x + b].max() > 0
            diff[y:y + b, x:x + b] = 0
            assert diff.max() == 0


# -- the command --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report(tiny_bundle, tmp_path_factory):
    from tools.renderer.evaluate import main
    out = tmp_path_factory.mktemp("report")
    code = main([str(tiny_bundle), "--pairs", "12", "--skip-bench", "--sentences", "0",
                 "--temporal-frames", "6", "--verify-frames", "2", "--out-dir", str(out)])
    assert code == 0
    return out, json.loads((out / "EVAL.json").read_text())


def test_report_files_and_keys(report):
    out, doc = report
    for name in ("EVAL.md", "EVAL.json", "EVAL_sheet.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "EVAL_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for key in ("schema", "command", "date_utc", "bundle", "settings", "models", "ground_truth_check",
                "full_frame_check", "sets", "temporal", "bench", "goals", "all_goals_pass", "files"):
        assert key in doc
    random = doc["sets"]["random"]
    assert random["status"] == "ok" and random["rows"] == 12
    for level in ("full", "coarse"):
        for metric in ("crop_psnr_db", "crop_ssim", "changed_region_psnr_db", "frame_psnr_db"):
            assert random["levels"][level][metric]["n"] == 12 - random["rest_rows"]
        # The frame holds the box plus untouched pixels: its PSNR can only be higher.
        assert random["levels"][level]["frame_psnr_db"]["mean"] > random["levels"][level]["crop_psnr_db"]["mean"]
    assert doc["sets"]["speech"]["status"].startswith("skipped")
    assert doc["bench"]["status"].startswith("skipped")
    assert doc["models"]["coarse"]["network"] is None  # fixtures record no MACs
    assert doc["models"]["macs_per_level"] == {"coarse": None, "full": None}
    assert len(doc["models"]["fine"]["bin_sha256"]) == 64
    ids = {g["id"] for g in doc["goals"]}
    assert {"random.full_crop_psnr_db", "random.full_frame_psnr_db", "temporal.held_constant",
            "temporal.slow_ramp_full", "speech.full_crop_psnr_db"} <= ids
    assert all(g["pass"] is None for g in doc["goals"] if g["id"].startswith("speech."))
    md = (out / "EVAL.md").read_text()
    assert "not recorded" in md and "TEST FIXTURE" in md and doc["command"] in md


def test_frame_psnr_shortcut_was_verified(report):
    check = report[1]["full_frame_check"]
    assert check["frames"] == 2 and check["max_abs_diff_outside_box"] == 0
    assert check["max_frame_mse_gap"] < 1e-9
    assert report[1]["ground_truth_check"]["template_box_max_abs_diff"] == 0


def test_held_constant_output_is_deterministic(report):
    det = report[1]["temporal"]["determinism"]
    for level in ("full", "coarse"):
        assert det[level] == {"crop_max_abs_diff": 0, "composite_max_abs_diff": 0}
    assert next(g for g in report[1]["goals"] if g["id"] == "temporal.held_constant")["pass"] is True
    for name in ("constant_params", "slow_ramp", "slow_ramp_fixed_frame"):
        t = report[1]["temporal"]["sequences"][name]["temporal"]
        assert t["steps"] == 5 and t["truth_mean_abs_change"] >= 0


def test_bundle_without_source_is_a_one_line_error(tmp_path, tiny_bundle, capsys):
    from tools.renderer.evaluate import main
    doc = yaml.safe_load((tiny_bundle / "avatar.yaml").read_text())
    del doc["source"]
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("crop_boxes.npy",) + tuple(p.name for p in tiny_bundle.glob("*.ncnn.*")) + \
            tuple(p.name for p in tiny_bundle.glob("*.yaml") if p.name != "avatar.yaml"):
        (plain / name).symlink_to(tiny_bundle / name)
    (plain / "frames").symlink_to(tiny_bundle / "frames")
    (plain / "avatar.yaml").write_text(yaml.safe_dump(doc))
    assert main([str(plain), "--skip-bench", "--pairs", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err == (f"eval_renderer: {plain / 'avatar.yaml'}: source: missing; eval_renderer needs "
                   "a bundle made from the procedural generator")


def test_source_that_does_not_match_the_template_is_refused(tmp_path, tiny_bundle, capsys):
    from tools.renderer.evaluate import main
    doc = yaml.safe_load((tiny_bundle / "avatar.yaml").read_text())
    doc["source"] = {**SOURCE, "seed": 3}  # another character variant: other colours
    other = tmp_path / "other"
    other.mkdir()
    for path in tiny_bundle.iterdir():
        if path.name not in ("avatar.yaml",) and not path.name.startswith("EVAL"):
            (other / path.name).symlink_to(path)
    (other / "avatar.yaml").write_text(yaml.safe_dump(doc))
    assert main([str(other), "--skip-bench", "--pairs", "2"]) == 1
    err = capsys.readouterr().err
    assert "does not describe this bundle" in err and err.count("\n") == 1


# -- the machinery against an oracle and the held-out sets ---------------------------------

class _Oracle:
    """A renderer that draws the truth itself: every score must come out perfect."""

    def __init__(self, truth):
        self.truth = truth

    def render(self, params, k, level):
        from runtime.render.renderer import REST_EPSILON
        return None if float(np.max(params)) < REST_EPSILON else self.truth.box(k, params)


def test_an_exact_renderer_scores_perfectly(tiny_bundle):
    from runtime.render.bundle import load_bundle
    from tools.renderer.evaluation import sets
    from tools.renderer.evaluation.evaluate import Evaluator
    from tools.renderer.evaluation.truth import GroundTruth, read_source

    bundle = load_bundle(tiny_bundle, exact_template=True)
    evaluator = Evaluator(bundle, GroundTruth(read_source(tiny_bundle)))
    evaluator.renderer = _Oracle(evaluator.truth)
    for rows in (sets.random_set(5, 0, FRAMES), sets.slow_ramp(5, 2, FRAMES)):
        summary = evaluator.evaluate(rows).summary
        for level in ("full", "coarse"):
            m = summary["levels"][level]
            assert m["crop_psnr_db"]["min"] == PSNR_CAP_DB and m["crop_ssim"]["min"] == pytest.approx(1.0)
            # The mouth changes only where the mask is 1: the composite is the truth exactly.
            assert m["frame_psnr_db"]["min"] == PSNR_CAP_DB
    t = summary["temporal"]
    assert t["steps"] == 4 and t["truth_mean_abs_change"] > 0
    assert t["full"]["ratio_to_truth"] == 1.0 and t["coarse"]["within_tolerance"]


def test_random_set_is_held_out_reproducible_and_never_at_rest():
    from runtime.render.renderer import REST_EPSILON
    from tools.avatar.params import sample_pairs
    from tools.renderer.evaluation.sets import random_set

    a, b = random_set(200, 0, 50), random_set(200, 0, 50)
    assert np.array_equal(a.params, b.params) and np.array_equal(a.frames, b.frames)
    assert a.params.shape == (200, 6) and a.params.max(axis=1).min() >= REST_EPSILON
    assert 0.0 <= a.params.min() and a.params.max() <= 1.0 and a.frames.max() < 50
    assert not np.array_equal(random_set(200, 1, 50).params, a.params)
    # Nothing in common with what a dataset of the same seed trains on (first shards).
    for shard in range(2):
        _, train, _ = sample_pairs(np.random.default_rng([0, shard, 512]), 512, 50)
        assert not (a.params[:, None, :] == train[None, :, :]).all(axis=2).any()


def test_missing_audio_model_skips_the_speech_set_with_a_reason(tiny_bundle, tmp_path):
    from tools.renderer.evaluate import main
    code = main([str(tiny_bundle), "--pairs", "3", "--skip-bench", "--temporal-frames", "3",
                 "--verify-frames", "0", "--sentences", "1", "--audio-model", str(tmp_path / "none.yaml"),
                 "--out-dir", str(tmp_path)])
    assert code == 0
    speech = json.loads((tmp_path / "EVAL.json").read_text())["sets"]["speech"]
    assert speech["status"].startswith("skipped: ") and "none.yaml" in speech["status"]


def test_speech_set_from_held_out_voices(tiny_bundle):
    import ctypes.util
    from pathlib import Path
    if not ctypes.util.find_library("espeak-ng"):
        pytest.skip("espeak-ng library not installed")
    audio_model = Path(__file__).resolve().parent.parent / "models" / "audio" / "audio.yaml"
    if not audio_model.is_file():
        pytest.skip("no shipped audio model")
    from tools.audio_model.synth_corpus import TEST_VARIANTS
    from tools.renderer.evaluation.sets import speech_set
    rows = speech_set(audio_model, 1, 0, FRAMES)
    assert len(rows.notes) == 1 and (rows.sequence == 0).all()
    assert any(f"+{v}:" in rows.notes[0] or "kal_diphone" in rows.notes[0] for v in TEST_VARIANTS)
    assert np.all(np.diff(rows.frames) % FRAMES == 1)  # consecutive template frames
    assert rows.params.max() > 0.2 and rows.params[0].max() < 0.05  # speaks; starts in silence


def test_macs_per_stage_come_from_the_sidecars(tiny_bundle, tmp_path):
    from runtime.render.bundle import load_bundle
    from tools.renderer.evaluation.stages import model_facts

    for path in tiny_bundle.iterdir():
        if path.name not in ("coarse.yaml", "fine.yaml"):
            (tmp_path / path.name).symlink_to(path)
    for stage, macs in (("coarse", 4_000_000), ("fine", 21_000_000)):
        doc = yaml.safe_load((tiny_bundle / f"{stage}.yaml").read_text())
        doc["network"] = {"macs": macs, "parameters": 1234, "layers": "conv x3"}
        (tmp_path / f"{stage}.yaml").write_text(yaml.safe_dump(doc))
    facts = model_facts(load_bundle(tmp_path))
    assert facts["coarse"]["network"] == {"macs": 4_000_000, "parameters": 1234, "layers": "conv x3"}
    assert facts["macs_per_level"] == {"coarse": 4_000_000, "full": 25_000_000}


def test_missing_bundle_is_a_one_line_error(tmp_path, capsys):
    from tools.renderer.evaluate import main
    assert main([str(tmp_path / "nowhere"), "--skip-bench"]) == 1
    err = capsys.readouterr().err
    assert err == f"eval_renderer: {tmp_path / 'nowhere' / 'avatar.yaml'}: avatar bundle not found\n"
