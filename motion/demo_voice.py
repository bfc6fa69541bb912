"""The demo voice: eSpeak NG behind the same ``synthesize`` signature as ``bert_vits2.synthesis.Voice``.

With it the web UI, the server and everything downstream work on a fresh machine without any model files; results are
clearly labelled as the demo voice.
"""

from __future__ import annotations

import threading
import time

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
        from motion import espeak_tts

        if not isinstance(text, str) or not text.strip():
            raise SynthesisError("the text is empty; type something to say")
        variant = self._variants.get(speaker or "default", "")
        rate = int(np.clip(175 / max(float(length_scale), 0.1), 80, 450))
        parts, sr = [], None
        t0 = time.perf_counter()
        with self._lock:
            for piece, pause in split_text(text, split_paragraphs, split_sentences, paragraph_pause_s, sentence_pause_s):
                runs = language_pieces(piece, language)
                for j, (_spk, lang, run_text) in enumerate(runs):
                    audio, sr, events = espeak_tts.synthesize(run_text, ESPEAK_VOICES[lang] + variant, rate=rate)
                    parts.append({
                        "audio": audio, "phones": [e[0] for e in events],
                        "durations": [e[2] - e[1] for e in events], "phone_langs": ["ipa"] * len(events),
                        "pause_after_s": pause if j == len(runs) - 1 else 0.0,
                        "meta": {"text": run_text, "language": lang, "speaker": speaker or "default"},
                    })
        if not parts:
            raise SynthesisError("nothing to synthesise after splitting; type some words")
        result = join_pieces(parts, int(sr))
        result.voice = self.name
        result.timings = {"synthesis": time.perf_counter() - t0}
        return result


__all__ = ["DemoVoice", "ESPEAK_VOICES"]
