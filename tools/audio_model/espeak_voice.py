"""espeak-ng through its C library (ctypes; `libespeak-ng.so.1`), with phoneme timing.

Initialised with phoneme events in IPA, espeak-ng reports every phoneme with its sample
position in the audio it returns, so the corpus knows exactly when each sound is heard.
`Espeak().synth(utterance)` takes anything with `voice`, `text`, `rate_wpm`, `pitch` and
`pitch_range` (tools.audio_model.synth_corpus.Utterance) and returns int16 samples and
[(sample, phoneme)]; `espeak_segments` turns those into [start_s, end_s, phoneme].
espeak-ng keeps state between utterances: synth_corpus runs each one in a fresh process.
"""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for the annotation: synth_corpus imports this module
    from .synth_corpus import Utterance

# espeak-ng API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS, _INIT_PHONEME_IPA = 0x0001, 0x0002
_EVENT_END_OF_LIST, _EVENT_PHONEME = 0, 7
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4


class _EspeakEvent(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                    ("string", ctypes.c_char * 8)]
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_EspeakEvent))


class Espeak:
    """espeak-ng in synchronous mode: synth() returns (int16 samples, [(sample, phoneme)])."""

    def __init__(self) -> None:
        self._lib = ctypes.CDLL("libespeak-ng.so.1")
        self.rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                                _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA)
        if self.rate <= 0:
            raise RuntimeError("espeak_Initialize failed (is espeak-ng-data installed?)")
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, str]] = []
        # Keep the ctypes callback object alive as long as the library may call it.
        self._callback = _CALLBACK(self._on_audio)
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, count, events) -> int:
        if wav and count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            if events[i].type == _EVENT_PHONEME:
                self._events.append((events[i].sample,
                                     events[i].id.string.decode("utf-8", "replace")))
            i += 1
        return 0

    def synth(self, utt: "Utterance") -> tuple[np.ndarray, list[tuple[int, str]]]:
        if self._lib.espeak_SetVoiceByName(utt.voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {utt.voice}")
        for parameter, value in ((_RATE, utt.rate_wpm), (_PITCH, utt.pitch), (_RANGE, utt.pitch_range)):
            self._lib.espeak_SetParameter(parameter, value, 0)
        self._chunks, self._events = [], []
        text = utt.text.encode("utf-8")
        err = self._lib.espeak_Synth(text, len(text) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with {err}")
        return np.frombuffer(b"".join(self._chunks), np.int16), list(self._events)


def espeak_segments(events: list[tuple[int, str]], total: int, rate: int) -> list[list]:
    """Phoneme starts -> [start_s, end_s, symbol]; each phoneme ends where the next starts."""
    segments = []
    marks = [(pos, name) for pos, name in events if not name.startswith("(")] + [(total, "")]
    for (start, name), (end, _) in zip(marks, marks[1:]):
        if end > start:
            segments.append([start / rate, end / rate, name])
    return segments
