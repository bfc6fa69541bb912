"""What synthesis gives back: per-piece outputs, the joined :class:`SynthesisResult`, and the typed chunks of a stream.

A *piece* is one language run of one generator call (or one eSpeak call of the demo voice) with the pause after it.
:func:`join_pieces` joins pieces into one result; :meth:`SynthesisResult.split_pieces` cuts a result back into its
pieces. Streams (:mod:`bert_vits2.streaming`) yield :class:`StreamChunk` s; the chunk that completes a piece carries
that piece's own result, so a consumer (faces, captions) can work piece by piece without knowing how it was decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from bert_vits2.request import SynthesisError

__all__ = ["PieceOutput", "PiecePlan", "StreamChunk", "SynthesisResult", "join_pieces"]

Z_FPS_DEFAULT = 44100 / 512


@dataclass
class PieceOutput:
    """One piece before joining. Either ``audio`` (a waveform) or ``latent`` + ``g`` (z of the whole generator call
    [1, C, T] and the speaker embedding, decoded later by a stream; ``latent_span`` = this piece's frames in it)."""

    phones: list[str]
    durations: np.ndarray  # seconds, one per phone
    phone_langs: list[str]
    text: str = ""
    language: str = ""
    speaker: str = ""
    pause_after_s: float = 0.0
    audio: np.ndarray | None = None
    z: np.ndarray | None = None  # float32 [C, T] of this piece
    latent: torch.Tensor | None = None
    g: torch.Tensor | None = None
    latent_span: tuple[int, int] | None = None

    @property
    def meta(self) -> dict[str, str]:
        return {"text": self.text, "language": self.language, "speaker": self.speaker}


@dataclass
class SynthesisResult:
    """Audio and what a face needs. ``durations`` are seconds and sum to the audio length (pauses included)."""

    audio: np.ndarray  # float32 [N] in [-1, 1]
    sample_rate: int
    phones: list[str]
    durations: np.ndarray  # float64 seconds, one per phone
    phone_langs: list[str]  # 'zh' / 'ja' / 'en' (Bert-VITS2 symbols) or 'ipa' (eSpeak NG), one per phone
    z: np.ndarray | None = None  # float32 [C, T] at z_fps (zeros in pauses), None for voices without one
    z_fps: float = Z_FPS_DEFAULT
    pieces: list[dict[str, Any]] = field(default_factory=list)  # text, language, speaker, start_s, end_s
    voice: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / float(self.sample_rate)

    def split_pieces(self) -> list[tuple[int, "SynthesisResult"]]:
        """This result cut into its pieces' own results: ``(start_sample, result)`` per piece, each covering the
        piece and the pause after it (what a stream hands out piece by piece)."""
        sr = int(self.sample_rate)
        pieces = list(self.pieces) or [{"start_s": 0.0, "end_s": self.duration_s}]
        starts = [int(round(p["start_s"] * sr)) for p in pieces] + [len(self.audio)]
        d = np.asarray(self.durations, dtype=np.float64)
        phone_starts = np.concatenate([[0.0], np.cumsum(d)[:-1]]) if len(d) else np.zeros(0)
        out = []
        for i, p in enumerate(pieces):
            s0, s1 = starts[i], starts[i + 1]
            t0, t1 = s0 / sr, s1 / sr
            last = i + 1 == len(pieces)
            sel = np.nonzero((phone_starts >= t0 - 1e-6) & ((phone_starts < t1 - 1e-6) if not last
                                                            else np.ones(len(d), bool)))[0]
            z = None
            if self.z is not None:
                z = self.z[:, int(round(t0 * self.z_fps)):int(round(t1 * self.z_fps))]
            meta = {k: v for k, v in p.items() if k not in ("start_s", "end_s")}
            out.append((s0, SynthesisResult(
                audio=self.audio[s0:s1], sample_rate=sr, phones=[self.phones[j] for j in sel],
                durations=d[sel].copy(), phone_langs=[self.phone_langs[j] for j in sel], z=z, z_fps=self.z_fps,
                pieces=[{**meta, "start_s": 0.0, "end_s": p["end_s"] - p["start_s"]}], voice=self.voice,
            )))
        return out


@dataclass
class PiecePlan:
    """What is known of a piece before its audio is decoded: its phones and their times (the pause after it
    included, as ``"_"``), its z and its length. A stream's first chunk of each piece carries it, so a face made from
    phones or z can go out with the piece's first audio. Reads like a :class:`SynthesisResult` without audio."""

    phones: list[str]
    durations: np.ndarray
    phone_langs: list[str]
    num_samples: int
    sample_rate: int
    z: np.ndarray | None = None
    z_fps: float = Z_FPS_DEFAULT
    pieces: list[dict[str, Any]] = field(default_factory=list)
    voice: str = ""
    audio: None = None  # not decoded yet

    @property
    def duration_s(self) -> float:
        return self.num_samples / float(self.sample_rate)

    @classmethod
    def of(cls, part: PieceOutput, num_audio: int, num_pause: int, sample_rate: int, hop: int | None,
           voice: str = "") -> "PiecePlan":
        """The plan of ``part`` with ``num_audio`` samples of speech and ``num_pause`` of pause after it."""
        d = np.asarray(part.durations, dtype=np.float64)
        if len(d) and abs(d.sum() - num_audio / sample_rate) > 1e-9:  # as join_pieces: phones cover the audio
            d = d.copy()
            d[-1] = max(0.0, d[-1] + num_audio / sample_rate - d.sum())
        phones, langs = list(part.phones), list(part.phone_langs)
        z = None if part.z is None else np.asarray(part.z, dtype=np.float32)
        if num_pause:
            phones.append("_")
            langs.append(langs[-1] if langs else "zh")
            d = np.concatenate([d, [num_pause / sample_rate]])
            if z is not None and hop:
                z = np.concatenate([z, np.zeros((z.shape[0], num_pause // hop), np.float32)], axis=1)
        end = num_audio / sample_rate
        return cls(phones, d, langs, num_audio + num_pause, int(sample_rate), z,
                   (sample_rate / hop) if hop else Z_FPS_DEFAULT, [{**part.meta, "start_s": 0.0, "end_s": end}], voice)


@dataclass
class StreamChunk:
    """One chunk of a stream (``Voice.stream``): audio samples and their z frames, in order.

    Joined in order, the chunks' audio is the whole utterance (``start_sample`` is where this one starts); ``z``
    covers the same span (``z_start`` = its first frame; zeros in pauses). The chunk that completes a piece (its last
    audio, or the pause after it) carries ``piece_result``: that piece's own :class:`SynthesisResult` starting at
    ``piece_start`` samples. ``timings``: ``ready_s`` (seconds from the start of the stream until this chunk was
    ready), ``decode_s`` (its HiFi-GAN time). The last chunk has ``last=True`` and no audio. The first chunk of a
    piece carries ``piece_plan``: the piece's phones, times and z, known before its audio (:class:`PiecePlan`).
    """

    index: int
    piece: int  # which piece (sentence / language run) of the text it belongs to
    audio: np.ndarray  # float32 samples
    sample_rate: int
    start_sample: int
    z: np.ndarray | None
    z_start: int
    text: str
    pause: bool  # the silence between two pieces
    last: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    voice: str = ""
    piece_start: int = 0
    piece_result: SynthesisResult | None = None
    piece_plan: PiecePlan | None = None

    @property
    def start_s(self) -> float:
        return self.start_sample / float(self.sample_rate)

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.audio)

    @property
    def end_s(self) -> float:
        return self.end_sample / float(self.sample_rate)


def pause_samples(pause_s: float, sample_rate: int, hop: int | None) -> int:
    """Samples of a pause: rounded to whole z frames when the voice has them, so audio and z stay aligned."""
    if pause_s <= 0:
        return 0
    if hop:
        return int(round(pause_s * sample_rate / hop)) * hop
    return int(round(pause_s * sample_rate))


def join_pieces(parts: Sequence[PieceOutput], sample_rate: int, hop: int | None = None) -> SynthesisResult:
    """Concatenate decoded pieces (with their pauses) into one :class:`SynthesisResult`."""
    audio, z, phones, durs, langs, pieces = [], [], [], [], [], []
    has_z = bool(parts) and hop is not None and all(p.z is not None for p in parts)
    t = 0.0
    for part in parts:
        if part.audio is None:
            raise ValueError("join_pieces needs decoded pieces (audio); this one holds only its latent")
        a = np.asarray(part.audio, dtype=np.float32).reshape(-1)
        start = t
        audio.append(a)
        phones += list(part.phones)
        d = np.asarray(part.durations, dtype=np.float64)
        # make the phones cover exactly this piece's audio (Bert-VITS2: exact already; eSpeak: float rounding)
        if len(d) and abs(d.sum() - len(a) / sample_rate) > 1e-9:
            d = d.copy()
            d[-1] = max(0.0, d[-1] + len(a) / sample_rate - d.sum())
        durs.append(d)
        langs += list(part.phone_langs)
        if has_z:
            z.append(np.asarray(part.z, dtype=np.float32))
        t += len(a) / sample_rate
        pieces.append({**part.meta, "start_s": start, "end_s": t})
        n = pause_samples(float(part.pause_after_s), sample_rate, hop)
        if n > 0:
            if has_z:
                z.append(np.zeros((z[-1].shape[0], n // hop), dtype=np.float32))
            audio.append(np.zeros(n, dtype=np.float32))
            phones.append("_")
            durs.append(np.array([n / sample_rate]))
            langs.append(langs[-1] if langs else "zh")
            t += n / sample_rate
    if not audio:
        raise SynthesisError("nothing to synthesise: the text is empty after splitting; type some words")
    return SynthesisResult(
        audio=np.concatenate(audio), sample_rate=int(sample_rate), phones=phones,
        durations=np.concatenate(durs) if durs else np.zeros(0), phone_langs=langs,
        z=np.concatenate(z, axis=1) if has_z else None,
        z_fps=(sample_rate / hop) if hop else Z_FPS_DEFAULT, pieces=pieces,
    )
