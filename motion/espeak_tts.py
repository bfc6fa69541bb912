"""eSpeak NG speech with phoneme timings, through ctypes (the demo voice and the synthetic-data source).

The ``espeakng-loader`` wheel bundles ``libespeak-ng`` and its data, so nothing system-wide is needed. eSpeak NG is a
process-wide singleton that is not thread safe: every call here holds one lock. Synthesis runs in synchronous mode
(the callback receives all audio before ``espeak_Synth`` returns) and collects one event per phoneme, in IPA.

``synthesize(text, voice="en", rate=175, pitch=50)`` -> ``(audio float32 [N], sample_rate, [(phoneme, start_s, end_s)])``.
Phoneme start times come from eSpeak's own event positions (millisecond resolution); a phoneme ends where the next
event starts; pauses between words/sentences appear as the silence phoneme ``"_"``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# espeak_AUDIO_OUTPUT / init options / events / parameters (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_SENTENCE = 2
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000

SILENCE = "_"
"""The phoneme name used for pauses (leading/trailing silence, gaps between words and sentences)."""

# Friendly voice names -> eSpeak NG language voices.
VOICE_ALIASES = {"zh": "cmn", "zh-cn": "cmn", "mandarin": "cmn", "jp": "ja", "english": "en"}


class EspeakError(RuntimeError):
    """eSpeak NG could not be loaded or refused the request; the message says what to do."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class _Engine:
    lib: ctypes.CDLL
    sample_rate: int
    callback: object  # keep the ctypes callback alive


_lock = threading.RLock()
_engine: _Engine | None = None
_chunks: list[np.ndarray] = []
_events: list[tuple[int, str, int]] = []  # (type, name, audio_position ms)


def _on_synth(wav, numsamples, events) -> int:
    if numsamples > 0 and wav:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
    i = 0
    while events[i].type != _EVENT_LIST_TERMINATED:
        ev = events[i]
        if ev.type == _EVENT_PHONEME:
            raw = bytes(ev.id.string).split(b"\0", 1)[0]
            _events.append((_EVENT_PHONEME, raw.decode("utf-8", errors="replace"), int(ev.audio_position)))
        elif ev.type in (_EVENT_WORD, _EVENT_SENTENCE, _EVENT_END, _EVENT_MSG_TERMINATED):
            _events.append((int(ev.type), "", int(ev.audio_position)))
        i += 1
    return 0  # continue synthesis


def _library_paths() -> tuple[str, str]:
    try:
        import espeakng_loader  # espeakng_loader: a missing install becomes EspeakError on first use
    except ImportError as err:  # pragma: no cover - dependency is in requirements.txt
        raise EspeakError("the espeakng-loader package is missing: pip install espeakng-loader") from err
    try:
        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as err:
        raise EspeakError(f"could not find the bundled eSpeak NG library ({err}); reinstall espeakng-loader") from err


def _load(lib: ctypes.CDLL | None = None) -> _Engine:
    """The engine, loaded and initialised on first use (from ``lib`` when given: a fresh copy, see reset_engine)."""
    global _engine
    if _engine is not None:
        return _engine
    path, data = _library_paths()
    if lib is None:
        try:
            lib = ctypes.CDLL(path)
        except OSError as err:
            raise EspeakError(f"could not load the bundled eSpeak NG library ({err}); reinstall espeakng-loader") from err
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
    )
    if rate <= 0:
        raise EspeakError(f"espeak_Initialize failed (code {rate}) with data path {data}")
    callback = _CALLBACK(_on_synth)
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]
    _engine = _Engine(lib=lib, sample_rate=int(rate), callback=callback)
    return _engine


def reset_engine() -> None:
    """Make the next request start from a freshly loaded engine, so that its audio does not depend on what this
    process spoke before.

    eSpeak NG keeps state between requests that ``espeak_Terminate``/``espeak_Initialize`` do not reset (function
    statics in its wave generator, such as the pitch-flutter index): measured, the same sentence, voice, rate and pitch
    came out up to 10 samples longer or shorter, and different throughout, after any other request, which moved the
    face-quality figures measured on it by test order. A library the process already holds cannot be loaded again, so
    this loads a private copy of it (about 3 ms; about 0.2 MB per reset is never returned, so call it per evaluation
    clip, not in training-data loops). Where no copy can be loaded (a ``noexec`` temporary folder), it logs a warning
    and keeps the engine it has.
    """
    global _engine
    with _lock:
        path, _ = _library_paths()
        folder = tempfile.mkdtemp(prefix="bv2-espeak-")  # a new path each time: dlopen loads it as a new library
        copy = os.path.join(folder, os.path.basename(path))
        try:
            shutil.copyfile(path, copy)
            fresh = ctypes.CDLL(copy)
        except OSError as err:
            log.warning("eSpeak NG engine not reset (%s): audio may depend on earlier requests", err)
            return
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        old, _engine = _engine, None
        if old is not None:
            old.lib.espeak_Terminate()
            _dlclose(old.lib)
        _load(fresh)


def _dlclose(lib: ctypes.CDLL) -> None:
    import _ctypes

    try:
        _ctypes.dlclose(lib._handle)
    except OSError:  # pragma: no cover - the library stays mapped; nothing else to do
        pass


def sample_rate() -> int:
    """The engine's output rate (22050 Hz for the bundled voices)."""
    with _lock:
        return _load().sample_rate


def _events_to_phones(events: list[tuple[int, str, int]], total_s: float) -> list[tuple[str, float, float]]:
    """Turn the start-time event stream into (phoneme, start, end) spans; gaps and pauses become ``SILENCE``."""
    starts: list[tuple[str, float]] = []
    for kind, name, pos_ms in events:
        t = pos_ms / 1000.0
        if kind == _EVENT_PHONEME:
            # "(en)"-style marks are language switches, not sounds
            starts.append((name if name.strip() and not name.startswith("(") else SILENCE, t))
    spans: list[tuple[str, float, float]] = []
    for i, (name, t0) in enumerate(starts):
        t1 = starts[i + 1][1] if i + 1 < len(starts) else total_s
        t0, t1 = min(t0, total_s), min(max(t1, t0), total_s)
        if t1 - t0 <= 0.0:
            continue
        if spans and spans[-1][2] < t0 - 1e-6:  # hole between events: silence
            spans.append((SILENCE, spans[-1][2], t0))
        spans.append((name, t0, t1))
    if not spans:
        return [(SILENCE, 0.0, total_s)] if total_s > 0 else []
    if spans[0][1] > 1e-6:
        spans.insert(0, (SILENCE, 0.0, spans[0][1]))
    if spans[-1][2] < total_s - 1e-6:
        spans.append((SILENCE, spans[-1][2], total_s))
    return spans


def synthesize(
    text: str, voice: str = "en", rate: int = 175, pitch: int = 50, volume: int = 100
) -> tuple[np.ndarray, int, list[tuple[str, float, float]]]:
    """Speak ``text`` with eSpeak NG.

    ``voice`` is an eSpeak NG voice name (``en``, ``en-us``, ``cmn`` or ``zh``, ``ja``, ``de``, ``fr``, ... optionally with a
    variant such as ``en+f3``); ``rate`` in words per minute (80-450), ``pitch`` 0-100.
    Returns ``(audio, sample_rate, phone_events)``: mono float32 audio in [-1, 1] at the engine's rate (22050 Hz) and
    the phoneme spans ``[(ipa_phoneme, start_s, end_s)]`` covering the whole clip, silences as ``"_"``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("synthesize: text is empty; give at least one word to speak")
    name = VOICE_ALIASES.get(voice.lower(), voice)
    with _lock:
        eng = _load()
        if eng.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise EspeakError(f"eSpeak NG has no voice {voice!r}; try en, en-us, cmn (Mandarin), ja, de, fr, es, ...")
        eng.lib.espeak_SetParameter(_PARAM_RATE, int(np.clip(rate, 80, 450)), 0)
        eng.lib.espeak_SetParameter(_PARAM_PITCH, int(np.clip(pitch, 0, 100)), 0)
        eng.lib.espeak_SetParameter(_PARAM_VOLUME, int(np.clip(volume, 0, 200)), 0)
        _chunks.clear()
        _events.clear()
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data)
        err = eng.lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        if err != 0:
            raise EspeakError(f"espeak_Synth failed with code {err}")
        eng.lib.espeak_Synchronize()
        pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, dtype=np.int16)
        events = list(_events)
        sr = eng.sample_rate
    audio = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
    phones = _events_to_phones(events, len(audio) / sr)
    return audio, sr, phones


__all__ = ["EspeakError", "SILENCE", "VOICE_ALIASES", "reset_engine", "sample_rate", "synthesize"]
