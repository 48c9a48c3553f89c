"""The audio-model tools end to end on a tiny corpus: synthesis, targets, augmentation, a few
training steps, pnnx export, ncnn-vs-torch parity, and the runtime loading the result.

Needs the `tools` extra (torch, pnnx) and espeak-ng; skipped where they are missing (CI
installs them: see the Makefile's test target)."""
import ctypes.util
import json
import shutil

import numpy as np
import pytest

from runtime import SAMPLE_RATE
from tools.audio_model.augment import add_noise, change_speed, pad_silence, set_peak
from tools.audio_model.visemes import BLEND_SIGMA_S, LEAD_S, Segment, frame_targets, parse_symbol

torch = pytest.importorskip("torch")
pytest.importorskip("pnnx")
pytest.importorskip("tqdm")
if not ctypes.util.find_library("espeak-ng"):
    pytest.skip("espeak-ng library not installed", allow_module_level=True)

from runtime.models.ncnn_model import NcnnModel, load_sidecar  # noqa: E402
from runtime.speech.audio_model import AudioModel  # noqa: E402
from tools.audio_model.dataset import build_cache, load_shards, load_utterance, make_example  # noqa: E402
from tools.audio_model.net import export_ncnn, ncnn_parity, torch_steps  # noqa: E402
from tools.audio_model.synth_corpus import Utterance, load_corpus, synthesize  # noqa: E402
from tools.audio_model.train import DEFAULT_RECIPE, train  # noqa: E402

TINY_UTTERANCES = [
    Utterance("train-00000", "train", "espeak", "espeak-en", "en-us+m1", "Hello, welcome to our store.",
              rate_wpm=170),
    Utterance("train-00001", "train", "espeak", "espeak-cmn", "cmn-latn-pinyin+m1",
              "ni3 hao3, huan1 ying2 guang1 lin2.", rate_wpm=150),
    Utterance("train-00002", "train", "espeak", "espeak-en", "en-us+m1", "Bob bought a big blue balloon.",
              rate_wpm=200, pitch=70),
    Utterance("test-00000", "test", "espeak", "espeak-en", "en+f2", "Five vivid violins.", rate_wpm=160),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny corpus, a few training steps and an exported model: (corpus, net, sidecar)."""
    root = tmp_path_factory.mktemp("audio-tools")
    corpus = root / "corpus"
    assert synthesize(corpus, TINY_UTTERANCES, workers=1, progress=False) == len(TINY_UTTERANCES)
    metas = load_corpus(corpus, "train")
    shards = build_cache(corpus, root / "features", metas, variants=2, seed=0, workers=1, progress=False)
    examples = load_shards(shards)
    recipe = json.loads(json.dumps({**DEFAULT_RECIPE, "proj": 16, "hidden": 24, "head": 8,
                                    "epochs": 1, "batch": 2}))
    net, history = train(examples, recipe, root / "ckpt.pt", max_batches=3, progress=False)
    sidecar = export_ncnn(net, root / "model", "audio", recipe)
    return corpus, net, sidecar, history


def test_synthesis_gives_audio_with_phoneme_timings_and_is_resumable(tiny):
    corpus = tiny[0]
    metas = load_corpus(corpus)
    assert [m["id"] for m in metas] == sorted(u.id for u in TINY_UTTERANCES)
    for meta in metas:
        audio, segments = load_utterance(corpus, meta)
        assert meta["duration_s"] == pytest.approx(len(audio) / SAMPLE_RATE)
        starts = [s[0] for s in segments]
        assert starts == sorted(starts) and segments[-1][1] <= meta["duration_s"] + 0.05
        assert sum(parse_symbol(s[2], meta["table"]) != ("sil",) for s in segments) >= 8
        assert np.abs(audio).max() > 0.05
    # Everything is on disk already: nothing is synthesized again.
    assert synthesize(corpus, TINY_UTTERANCES, workers=1, progress=False) == 0


def test_targets_close_in_silence_blend_smoothly_and_lead_the_sound():
    segs = [Segment(0.0, 0.5, ""), Segment(0.5, 0.7, "ɑː"), Segment(0.7, 0.78, "p"),
            Segment(0.78, 1.0, "ɑː"), Segment(1.0, 2.0, "")]
    targets = frame_targets(segs, "espeak-en", 2.0)
    assert targets.shape == (50, 6)
    # Silence = closed, until the lead and the blending of the first sound (at 0.5 s) reach it.
    closed_until = int((0.5 - LEAD_S - 3 * BLEND_SIGMA_S) / 0.04)
    assert closed_until >= 7 and np.all(targets[:closed_until] == 0) and np.all(targets[-15:] == 0)
    press = slice(int((0.70 - LEAD_S) / 0.04), int(np.ceil((0.78 - LEAD_S) / 0.04)))  # the /p/, led
    assert targets[:, 0].max() > 0.6 and targets[press, 3].max() > 0.5  # open vowel, /p/ presses
    assert np.abs(np.diff(targets, axis=0)).max() < 0.6  # no square steps
    assert targets[12, 0] > 0.05  # frame 12 ends at 0.52 s: the jaw is already opening


def test_augmentation_keeps_timings_in_step_with_the_audio():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    fast, segs = change_speed(audio, [[0.2, 0.4, "a"]], 1.2)
    assert len(fast) == pytest.approx(len(audio) / 1.2, abs=20)
    assert segs[0][0] == pytest.approx(0.2 / 1.2, abs=0.01)
    padded, segs = pad_silence(audio, [[0.2, 0.4, "a"]], 0.5, 0.25)
    assert len(padded) == int(1.75 * SAMPLE_RATE) and segs[0][0] == pytest.approx(0.7)
    assert 20 * np.log10(np.abs(set_peak(audio, -12)).max()) == pytest.approx(-12, abs=0.01)
    noisy = add_noise(audio, 10.0, rng)
    snr = 10 * np.log10(np.mean(audio ** 2) / np.mean((noisy - audio) ** 2))
    assert snr == pytest.approx(10.0, abs=1.0)


def test_training_steps_export_and_ncnn_matches_torch(tiny):
    corpus, net, sidecar_path, history = tiny
    assert history["epochs"][0]["train_loss"] > 0
    sidecar = load_sidecar(sidecar_path, kind="audio_model")
    meta = load_corpus(corpus, "test")[0]
    features = make_example(*load_utterance(corpus, meta), meta["table"]).features
    reference = torch_steps(net, features)
    model = NcnnModel(sidecar)
    h = np.zeros(sidecar.inputs["h"].shape, np.float32)
    c = np.zeros(sidecar.inputs["c"].shape, np.float32)
    outputs = []
    for n in range(len(reference)):
        out = model.run({"features": features[4 * n:4 * n + 4], "h": h, "c": c}, ("params", "h", "c"))
        h, c = out["h"], out["c"]
        outputs.append(out["params"].reshape(-1))
    assert len(outputs) > 20
    assert np.abs(np.array(outputs) - reference).max() <= 1e-3
    params_diff, state_diff = ncnn_parity(net, sidecar_path, features)
    assert params_diff <= 1e-3 and state_diff <= 1e-2


def test_exported_model_runs_in_the_runtime_with_its_recipe(tiny):
    sidecar_path = tiny[2]
    model = AudioModel(sidecar_path)
    assert (model.frames_per_step, model.lookahead_steps) == (4, 1)
    assert model.sidecar.extra["recipe"]["command"] == "python -m tools.audio_model.train --rebuild"
    params = model.step(np.full((4, 80), 5.0, np.float32))
    assert params.shape == (6,) and np.all((params >= 0) & (params <= 1))


@pytest.mark.skipif(shutil.which("festival") is None, reason="festival not installed")
def test_festival_voice_gives_segment_timings(tmp_path):
    utt = Utterance("test-00001", "test", "festival", "festival-en", "kal_diphone", "Hello world.")
    assert synthesize(tmp_path, [utt], workers=1, progress=False) == 1
    meta = load_corpus(tmp_path)[0]
    phones = [s[2] for s in meta["segments"]]
    assert phones[0] == "pau" and "l" in phones and "w" in phones
    assert meta["duration_s"] > 0.5 and meta["segments"][-1][1] <= meta["duration_s"] + 0.05


@pytest.mark.skipif(not ctypes.util.find_library("flite"), reason="flite not installed")
def test_flite_voice_gives_segment_timings_that_match_its_sound(tmp_path):
    utt = Utterance("train-100000", "train", "flite", "festival-en", "slt",
                    "Good morning, the museum opens at nine.", stretch=1.1)
    assert synthesize(tmp_path, [utt], workers=1, progress=False) == 1
    meta = load_corpus(tmp_path)[0]
    audio, segments = load_utterance(tmp_path, meta)
    phones = [s[2] for s in segments]
    assert phones[0] == "pau" and "m" in phones and "z" in phones
    assert all(parse_symbol(p, "festival-en") for p in phones)
    # Where flite says a phone is, there is sound; where it says pause, there is (near) none.
    def rms(s):
        part = audio[int(s[0] * SAMPLE_RATE):int(s[1] * SAMPLE_RATE)]
        return float(np.sqrt(np.mean(part ** 2))) if len(part) else 0.0
    vowels = [rms(s) for s in segments if s[2] in ("uh", "ao", "ax", "ih", "iy", "ow", "ay", "eh")]
    pauses = [rms(s) for s in segments if s[2] == "pau"]
    assert min(vowels) > 10 * max(pauses)
    assert segments[-1][1] <= meta["duration_s"] + 1e-3


def test_natural_voices_are_a_separate_part_of_the_plan():
    from tools.audio_model.synth_corpus import NATURAL_VOICES, plan
    first = plan(0, 40, 10)
    both = plan(0, 40, 10, 30, 8)
    assert both[:50] == first  # adding natural voices changes nothing already planned
    natural = both[50:]
    assert len(natural) == 38 and len({u.id for u in both}) == len(both)
    train_voices = {(u.engine, u.voice) for u in natural if u.split == "train"}
    test_voices = {(u.engine, u.voice) for u in natural if u.split == "test"}
    assert train_voices <= set(NATURAL_VOICES["train"]) and test_voices <= set(NATURAL_VOICES["test"])
    assert not train_voices & test_voices
    assert all(int(u.id.split("-")[1]) >= 100000 for u in natural)  # variant seeds stay distinct


def test_vocal_tract_warp_moves_formants_and_keeps_identity():
    from tools.audio_model.augment import warp_fbank
    from tools.audio_model.dataset import fbank
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    def peak_band(hz, alpha=1.0):
        feats = fbank((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32))
        return int(warp_fbank(feats, alpha).mean(axis=0).argmax()) if alpha != 1.0 else int(
            feats.mean(axis=0).argmax())
    feats = fbank((0.3 * np.sin(2 * np.pi * 700 * t)).astype(np.float32))
    assert np.allclose(warp_fbank(feats, 1.0), feats, atol=1e-5)
    # A 1000 Hz tone warped by 1.2 looks like a 1200 Hz tone (within a band), and back down.
    assert abs(peak_band(1000, 1.2) - peak_band(1200)) <= 1
    assert abs(peak_band(1200, 1 / 1.2) - peak_band(1000)) <= 1


def test_noise_kinds_are_named_by_the_recipe_and_checked():
    from tools.audio_model.augment import NOISE_KINDS, AugmentSettings, make_noise
    assert set(AugmentSettings().noise_kinds) <= set(NOISE_KINDS)
    with pytest.raises(ValueError, match="allowed are"):
        make_noise("typewriter", 1600, np.random.default_rng(0))
    keys = make_noise("keys", SAMPLE_RATE * 2, np.random.default_rng(0))
    frames = np.sqrt(np.mean(keys[: len(keys) // 160 * 160].reshape(-1, 160) ** 2, axis=1))
    assert frames.max() > 20 * np.median(frames)  # ticks, not a steady hiss
