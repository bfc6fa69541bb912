"""The demo voice: eSpeak NG behind the same ``synthesize`` signature as ``bert_vits2.synthesis.Voice``.

With it the web UI, the server and everything downstream work on a fresh machine without any model files; results are
clearly labelled as the demo voice.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from bert_vits2.synthesis import DEFAULTS, SynthesisError, SynthesisResult, join_pieces, language_pieces, split_text

ESPEAK_VOICES = {"ZH": "cmn", "JP": "ja", "EN": "en-us"}


class DemoVoice:
    """eSpeak NG as a stand-in voice (no model files needed). Speakers are eSpeak voice variants."""

    kind = "demo"
    name = "demo voice (eSpeak NG)"
    speakers = ["default", "female (f3)", "male (m3)"]
    _variants = {"default": "", "female (f3)": "+f3", "male (m3)": "+m3"}

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        from motion import espeak_tts

        return espeak_tts.sample_rate()

    def _iter_parts(self, text: str, speaker: str | None, language: str, length_scale: float, split_paragraphs: bool,
                    split_sentences: bool, paragraph_pause_s: float, sentence_pause_s: float):
        """The pieces of ``text`` one by one (shared by :meth:`synthesize` and :meth:`stream`)."""
        from motion import espeak_tts

        variant = self._variants.get(speaker or "default", "")
        rate = int(np.clip(175 / max(float(length_scale), 0.1), 80, 450))
        for piece, pause in split_text(text, split_paragraphs, split_sentences, paragraph_pause_s, sentence_pause_s):
            runs = language_pieces(piece, language)
            for j, (_spk, lang, run_text) in enumerate(runs):
                audio, sr, events = espeak_tts.synthesize(run_text, ESPEAK_VOICES[lang] + variant, rate=rate)
                yield {
                    "audio": audio, "phones": [e[0] for e in events], "sample_rate": int(sr),
                    "durations": [e[2] - e[1] for e in events], "phone_langs": ["ipa"] * len(events),
                    "pause_after_s": pause if j == len(runs) - 1 else 0.0,
                    "meta": {"text": run_text, "language": lang, "speaker": speaker or "default"},
                }

    def stream(
        self, text: str, speaker: str | None = None, language: str = "ZH", sdp_ratio: float = DEFAULTS["sdp_ratio"],
        noise_scale: float = DEFAULTS["noise_scale"], noise_scale_w: float = DEFAULTS["noise_scale_w"],
        length_scale: float = DEFAULTS["length_scale"], style_text: str | None = None,
        style_weight: float = DEFAULTS["style_weight"], *, split_paragraphs: bool = False, split_sentences: bool = False,
        paragraph_pause_s: float = DEFAULTS["paragraph_pause_s"], sentence_pause_s: float = DEFAULTS["sentence_pause_s"],
        seed: int | None = None, face: Any = None, face_fps: float = 60.0, first_chunk_frames: int | None = None,
        max_chunk_frames: int | None = None, context_frames: int | None = None, cancel: threading.Event | None = None,
    ):
        """:meth:`synthesize` as a stream of ``StreamChunk`` (as ``Voice.stream``; eSpeak needs no decoding, so the
        chunks are slices of each piece's audio and the joined stream equals ``synthesize`` exactly)."""
        from bert_vits2 import streaming

        if not isinstance(text, str) or not text.strip():
            raise SynthesisError("the text is empty; type something to say")

        def produce():
            it = self._iter_parts(text, speaker, language, length_scale, split_paragraphs, split_sentences,
                                  paragraph_pause_s, sentence_pause_s)
            while True:
                with self._lock:
                    try:
                        part = next(it)
                    except StopIteration:
                        return
                yield part

        yield from streaming.run_stream(
            produce, sample_rate=self.sample_rate, hop=None, face=face, face_fps=face_fps,
            first_chunk_frames=first_chunk_frames or streaming.DEFAULT_FIRST_CHUNK_FRAMES,
            max_chunk_frames=max_chunk_frames or streaming.DEFAULT_MAX_CHUNK_FRAMES, cancel=cancel, voice=self.name,
        )

    def synthesize(
        self, text: str, speaker: str | None = None, language: str = "ZH", sdp_ratio: float = DEFAULTS["sdp_ratio"],
        noise_scale: float = DEFAULTS["noise_scale"], noise_scale_w: float = DEFAULTS["noise_scale_w"],
        length_scale: float = DEFAULTS["length_scale"], style_text: str | None = None,
        style_weight: float = DEFAULTS["style_weight"], *, split_paragraphs: bool = False, split_sentences: bool = False,
        paragraph_pause_s: float = DEFAULTS["paragraph_pause_s"], sentence_pause_s: float = DEFAULTS["sentence_pause_s"],
        seed: int | None = None,
    ) -> SynthesisResult:
        """Same arguments as ``Voice.synthesize``; only text, speaker, language, length and the splitting apply
        (eSpeak has no SDP/noise/style controls). ``length_scale`` maps to the speaking rate."""
        if not isinstance(text, str) or not text.strip():
            raise SynthesisError("the text is empty; type something to say")
        t0 = time.perf_counter()
        with self._lock:
            parts = list(self._iter_parts(text, speaker, language, length_scale, split_paragraphs, split_sentences,
                                          paragraph_pause_s, sentence_pause_s))
        if not parts:
            raise SynthesisError("nothing to synthesise after splitting; type some words")
        result = join_pieces(parts, int(parts[0]["sample_rate"]))
        result.voice = self.name
        result.timings = {"synthesis": time.perf_counter() - t0}
        return result


__all__ = ["DemoVoice", "ESPEAK_VOICES"]
