"""The demo voice: eSpeak NG behind the same ``synthesize`` signature as ``bert_vits2.synthesis.Voice``.

With it the web UI, the server and everything downstream work on a fresh machine without any model files; results are
clearly labelled as the demo voice.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterable, Iterator

import numpy as np

from bert_vits2 import streaming
from bert_vits2.request import SynthesisRequest
from bert_vits2.results import PieceOutput, StreamChunk, SynthesisResult, join_pieces
from bert_vits2.streaming import StreamOptions
from bert_vits2.synthesis import SliceCall, language_pieces, split_text, streamed_calls, streamed_request
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

    def _iter_parts(self, req: SynthesisRequest, calls: Iterable[SliceCall] | None = None) -> Iterator[PieceOutput]:
        """The pieces of ``req`` one by one (shared by :meth:`synthesize` and :meth:`stream`); ``calls``: the
        sentences of streamed text (:func:`bert_vits2.synthesis.streamed_calls`) instead of the request's text."""
        if calls is None:
            items = split_text(req.text, req.split_paragraphs, req.split_sentences, req.paragraph_pause_s,
                               req.sentence_pause_s)
            calls = (SliceCall([(lang, t) for _spk, lang, t in language_pieces(piece, req.language)],
                               pause_after_s=pause) for piece, pause in items)
        for call in calls:
            if call.pause_before_s > 0:
                n = int(round(call.pause_before_s * self.sample_rate))
                yield PieceOutput(phones=["_"], durations=np.array([n / self.sample_rate]), phone_langs=["ipa"],
                                  audio=np.zeros(n, np.float32))
            for j, (lang, run_text) in enumerate(call.runs):
                yield self._speak(req, lang, run_text, call.pause_after_s if j == len(call.runs) - 1 else 0.0)

    def _speak(self, req: SynthesisRequest, lang: str, text: str, pause_after_s: float) -> PieceOutput:
        variant = self._variants.get(req.speaker or "default", "")
        rate = int(np.clip(175 / max(float(req.length_scale), 0.1), 80, 450))
        with self._lock:
            audio, _sr, events = espeak_tts.synthesize(text, ESPEAK_VOICES[lang] + variant, rate=rate)
        return PieceOutput(
            phones=[e[0] for e in events], durations=np.array([e[2] - e[1] for e in events], np.float64),
            phone_langs=["ipa"] * len(events), text=text, language=lang, speaker=req.speaker or "default",
            pause_after_s=pause_after_s, audio=audio,
        )

    def stream(self, request: SynthesisRequest | str | Iterable[str], *args: Any, options: StreamOptions | None = None,
               cancel: threading.Event | None = None, text_pieces: Iterable[str] | None = None,
               min_clause_chars: int | None = None, **kwargs: Any) -> Iterator[StreamChunk]:
        """:meth:`synthesize` as a stream of ``StreamChunk`` (as ``Voice.stream``, streamed text included; eSpeak
        needs no decoding, so the chunks are slices of each piece's audio and the joined stream equals
        ``synthesize`` exactly)."""
        req, pieces = streamed_request(request, text_pieces, *args, **kwargs)
        calls = None if pieces is None else streamed_calls(pieces, req.language, req.sentence_pause_s,
                                                           min_clause_chars)
        return streaming.run_stream(lambda: self._iter_parts(req, calls), sample_rate=self.sample_rate, hop=None,
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
