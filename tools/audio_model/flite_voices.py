"""flite's English voices through its C library (ctypes), with the phoneme timing it computed.

flite (Debian `flite`, `libflite1`) ships four voices built from real recordings of real
people (CMU ARCTIC): `slt` (US female), `rms` (US male), `awb` (Scottish male) as statistical
parametric (clustergen) voices, and `kal16` (US male, diphones). They sound far more like a
person than espeak-ng's formant synthesis, which is why the corpus has them (issue 14: the
model learned espeak-ng's sound and followed real speech no better than its loudness).

`synth(voice, text, stretch)` returns 16 kHz float32 audio and segments [start_s, end_s, phone]
from the utterance's Segment relation (each item's `end` feature); phone names are festival's
radio set, so `tools.audio_model.visemes` reads them with the `festival-en` table. The voices
are deterministic; the library is loaded once per process.
"""
from __future__ import annotations

import ctypes
from functools import lru_cache

import numpy as np

VOICES = ("slt", "rms", "awb", "kal16")
_SUPPORT_LIBS = ("libflite_usenglish.so.1", "libflite_cmulex.so.1")


class _Wave(ctypes.Structure):  # cst_wave (cst_wave.h)
    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int),
                ("num_samples", ctypes.c_int), ("num_channels", ctypes.c_int),
                ("samples", ctypes.POINTER(ctypes.c_short))]


class _Voice(ctypes.Structure):  # the first two fields of cst_voice (cst_voice.h)
    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p)]


def _declare(lib: ctypes.CDLL, name: str, restype, *argtypes) -> None:
    func = getattr(lib, name)
    func.restype, func.argtypes = restype, list(argtypes)


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    try:
        for name in _SUPPORT_LIBS:  # the voices resolve their language and lexicon from these
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL("libflite.so.1")
    except OSError as err:
        raise RuntimeError(f"flite is not installed ({err}); Debian: apt-get install flite") from None
    vp = ctypes.c_void_p
    _declare(lib, "flite_init", ctypes.c_int)
    _declare(lib, "flite_feat_set_float", None, vp, ctypes.c_char_p, ctypes.c_float)
    _declare(lib, "flite_synth_text", vp, ctypes.c_char_p, vp)
    _declare(lib, "utt_wave", ctypes.POINTER(_Wave), vp)
    _declare(lib, "utt_relation", vp, vp, ctypes.c_char_p)
    _declare(lib, "relation_head", vp, vp)
    _declare(lib, "item_next", vp, vp)
    _declare(lib, "item_feat_float", ctypes.c_float, vp, ctypes.c_char_p)
    _declare(lib, "item_feat_string", ctypes.c_char_p, vp, ctypes.c_char_p)
    _declare(lib, "delete_utterance", None, vp)
    lib.flite_init()
    return lib


@lru_cache(maxsize=None)
def _voice(name: str) -> ctypes.POINTER(_Voice):
    if name not in VOICES:
        raise ValueError(f"unknown flite voice {name!r} (have {', '.join(VOICES)})")
    _library()
    try:
        lib = ctypes.CDLL(f"libflite_cmu_us_{name}.so.1")
    except OSError as err:
        raise RuntimeError(f"flite voice {name} is not installed ({err}); Debian: apt-get install "
                           f"libflite1") from None
    register = getattr(lib, f"register_cmu_us_{name}")
    register.restype, register.argtypes = ctypes.POINTER(_Voice), [ctypes.c_char_p]
    return register(None)


def synth(voice: str, text: str, stretch: float = 1.0) -> tuple[np.ndarray, int, list[list]]:
    """(int16-scaled float32 samples at the voice's rate, rate, [start_s, end_s, phone])."""
    lib, handle = _library(), _voice(voice)
    # duration_stretch > 1 speaks slower; set per call because the voice object is shared.
    lib.flite_feat_set_float(handle.contents.features, b"duration_stretch", float(stretch))
    utt = lib.flite_synth_text(text.encode("utf-8"), ctypes.cast(handle, ctypes.c_void_p))
    try:
        wave = lib.utt_wave(utt).contents
        samples = np.ctypeslib.as_array(wave.samples, shape=(wave.num_samples,)).astype(np.float32)
        rate = int(wave.sample_rate)
        segments, start = [], 0.0
        item = lib.relation_head(lib.utt_relation(utt, b"Segment"))
        while item:
            end = min(float(lib.item_feat_float(item, b"end")), len(samples) / rate)
            if end > start:
                segments.append([round(start, 4), round(end, 4),
                                 lib.item_feat_string(item, b"name").decode()])
                start = end
            item = lib.item_next(item)
    finally:
        lib.delete_utterance(utt)
    return samples / 32768.0, rate, segments
