"""The demo voice: eSpeak NG behind the same ``synthesize`` signature as ``bert_vits2.synthesis.Voice``.

With it the web UI, the server and everything downstream work on a fresh machine without any model files; results are
clearly labelled as the demo voice.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import numpy as np

from bert_vits2 import streaming
from bert_vits2.request import SynthesisRequest
from bert_vits2.results import PieceOutput, StreamChunk, SynthesisResult, join_pieces
from bert_vits2.streaming import StreamOptions
from bert_vits2.synthesis import language_pieces, split_text
from motion import espeak_tts

ESPEAK_VOICES = {"ZH": "cmn", "JP": "ja", "EN": "en-us"}


class DemoVoice:
    """eSpeak NG as a stand-in voice (no model files needed). Speakers are eSpeak voice variants.

    Takes the same :class:`~bert_vits2.request.SynthesisRequest` as ``Voice``; only the text, speaker, language,
    length and the splitting apply (eSpeak has no SDP/noise/style controls). ``length_scale`` maps to the speaking
    rate."""

    kind = "demo"
    name = "demo voice (eSpeak NG)"
    speakers = ["default", "female (f3)", "male (m3)"]
    _variants = {"default": "", "female (f3)": "+f3", "male (m3)": "+m3"}

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        return espeak_tts.sample_rate()

    def _iter_parts(self, req: SynthesisRequest) -> Iterator[PieceOutput]:
        """The pieces of ``req`` one by one (shared by :meth:`synthesize` and :meth:`stream`)."""
        variant = self._variants.get(req.speaker or "default", "")
        rate = int(np.clip(175 / max(float(req.length_scale), 0.1), 80, 450))
        for piece, pause in split_text(req.text, req.split_paragraphs, req.split_sentences, req.paragraph_pause_s,
                                       req.sentence_pause_s):
            runs = language_pieces(piece, req.language)
            for j, (_spk, lang, run_text) in enumerate(runs):
                with self._lock:
                    audio, _sr, events = espeak_tts.synthesize(run_text, ESPEAK_VOICES[lang] + variant, rate=rate)
                yield PieceOutput(
                    phones=[e[0] for e in events], durations=np.array([e[2] - e[1] for e in events], np.float64),
                    phone_langs=["ipa"] * len(events), text=run_text, language=lang,
                    speaker=req.speaker or "default", pause_after_s=pause if j == len(runs) - 1 else 0.0, audio=audio,
                )

    def stream(self, request: SynthesisRequest | str, *args: Any, options: StreamOptions | None = None,
               cancel: threading.Event | None = None, **kwargs: Any) -> Iterator[StreamChunk]:
        """:meth:`synthesize` as a stream of ``StreamChunk`` (as ``Voice.stream``; eSpeak needs no decoding, so the
        chunks are slices of each piece's audio and the joined stream equals ``synthesize`` exactly)."""
        req = SynthesisRequest.of(request, *args, **kwargs)
        return streaming.run_stream(lambda: self._iter_parts(req), sample_rate=self.sample_rate, hop=None,
                                    options=options or StreamOptions(), cancel=cancel, voice=self.name)

    def synthesize(self, request: SynthesisRequest | str, *args: Any, **kwargs: Any) -> SynthesisResult:
        """Same request as ``Voice.synthesize`` (see the class docstring)."""
        req = SynthesisRequest.of(request, *args, **kwargs)
        t0 = time.perf_counter()
        result = join_pieces(list(self._iter_parts(req)), self.sample_rate)
        result.voice = self.name
        result.timings = {"synthesis": time.perf_counter() - t0}
        return result


__all__ = ["DemoVoice", "ESPEAK_VOICES"]
