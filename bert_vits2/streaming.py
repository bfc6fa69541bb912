"""Streaming synthesis: pieces pipelined in a producer thread, the HiFi-GAN decoded in chunks, faces per piece.

How the stream stays equal to :meth:`bert_vits2.synthesis.Voice.synthesize`:

- **Same pieces, same random draws.** The producer runs the voice's own per-piece generator (``Voice._iter_parts``,
  the one ``synthesize`` joins) with ``decode=False``: text frontend, BERT, encoder, duration predictors and flow give
  the latent ``z`` of a piece, exactly as ``synthesize`` computes it. The torch RNG state is carried from piece to
  piece (restored under the voice lock before each piece), so a seeded stream draws the same noise as a seeded
  ``synthesize`` even when other requests run in between.
- **Chunked HiFi-GAN with context.** Each chunk of z frames ``[a, b)`` is decoded from ``[a - c, b + c)`` (clipped to
  the piece) and the middle ``(b - a) * hop`` samples are kept. ``c`` covers the decoder's receptive field
  (:func:`decoder_context_frames`), so a chunk differs from the whole-piece decode only by float rounding
  (measured: 9.3e-10 max on the tiny test voice's whole stream; 3.3e-7 for the full-size v2.3 decoder with 20
  frames, 3.0e-7 with 12, 4e-4 with only 8; the default is 18).
- **Pipelining.** While the consumer decodes piece *i*, the producer thread already computes piece *i + 1*
  (bounded queue of one piece).
- **Faces per piece.** A face function gets each piece's own :class:`~bert_vits2.synthesis.SynthesisResult` (its
  audio and trailing pause) and returns ``[T, C]`` curves at ``face_fps`` on the piece's own clock. They are placed on
  the whole stream's frame grid (frame ``k`` is sampled at ``(k + 0.5) / fps``; a frame belongs to the piece whose
  span holds its centre) by :func:`place_frames`. :func:`piecewise_frames` does the same for a finished result, so a
  whole-utterance face and the streamed face are one computation; they differ only through the (≤ 1e-6) audio
  difference of chunked decoding.

The library never imports ``motion``: faces come in as a plain function (``motion.face.streaming`` makes one from a
``FaceMaker``).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np
import torch

__all__ = [
    "DEFAULT_CONTEXT_FRAMES", "DEFAULT_FIRST_CHUNK_FRAMES", "DEFAULT_MAX_CHUNK_FRAMES", "FaceFn", "chunk_spans",
    "decode_chunk", "decoder_context_frames", "frame_range", "piece_results", "piecewise_frames", "place_frames",
    "run_stream",
]

FaceFn = Callable[[Any], np.ndarray]
DEFAULT_FIRST_CHUNK_FRAMES = 16  # 0.19 s of audio at 44.1 kHz / hop 512: the first chunk comes quickly
DEFAULT_MAX_CHUNK_FRAMES = 256  # chunks grow x2 up to this (fewer, larger decoder calls later on)
DEFAULT_CONTEXT_FRAMES = 32  # used when the decoder's shape is unknown


# --- chunked decoding ---------------------------------------------------------------------------------------------


def decoder_context_frames(model_cfg: Any = None, margin: int = 2) -> int:
    """z frames of context each side that cover the HiFi-GAN's receptive field (v2.3 config: 16 + margin 2 = 18;
    every frame of context costs decoder time, the measured receptive field is about 12).

    Computed from the config (``upsample_rates``, ``upsample_kernel_sizes``, ``resblock_kernel_sizes``,
    ``resblock_dilation_sizes``, ``resblock``): half-width of conv_pre (3) + per stage the transposed conv and the
    widest residual block at that stage's rate + conv_post, converted to z frames, rounded up, plus ``margin``.
    """
    def get(name: str, default: Any) -> Any:
        if model_cfg is None:
            return default
        return model_cfg[name] if isinstance(model_cfg, dict) else getattr(model_cfg, name, default)

    rates = list(get("upsample_rates", None) or [])
    kernels = list(get("upsample_kernel_sizes", None) or [])
    rk = list(get("resblock_kernel_sizes", None) or [])
    rd = [list(d) for d in (get("resblock_dilation_sizes", None) or [])]
    if not rates or len(kernels) != len(rates) or not rk:
        return DEFAULT_CONTEXT_FRAMES
    kind = str(get("resblock", "1"))
    half = 3.0  # conv_pre, kernel 7, in z frames
    rate = 1.0
    for u, k in zip(rates, kernels):
        half += (math.ceil(k / u) + 1) / rate  # transposed conv: input samples at the previous rate
        rate *= u
        widest = 0.0
        for kk, dil in zip(rk, rd):
            # ResBlock1: per dilation a dilated conv then a plain one; ResBlock2: only the dilated convs
            w = sum((kk - 1) * d / 2 + ((kk - 1) / 2 if kind == "1" else 0) for d in dil)
            widest = max(widest, w)
        half += widest / rate
    half += 3.0 / rate  # conv_post, kernel 7
    return int(math.ceil(half)) + int(margin)


def chunk_spans(num_frames: int, first: int = DEFAULT_FIRST_CHUNK_FRAMES,
                max_frames: int = DEFAULT_MAX_CHUNK_FRAMES) -> list[tuple[int, int]]:
    """``[a, b)`` z-frame spans covering ``num_frames``: ``first`` frames, then doubling up to ``max_frames``."""
    spans, a, size = [], 0, max(1, int(first))
    while a < num_frames:
        b = min(num_frames, a + size)
        spans.append((a, b))
        a, size = b, min(max(1, int(max_frames)), size * 2)
    return spans


def decode_chunk(dec: Callable[..., torch.Tensor], latent: torch.Tensor, g: torch.Tensor | None, a: int, b: int,
                 hop: int, context: int) -> np.ndarray:
    """Samples of z frames ``[a, b)`` of ``latent`` [1, C, T], decoded with ``context`` frames each side."""
    n = latent.shape[-1]
    lo, hi = max(0, a - context), min(n, b + context)
    with torch.no_grad():
        o = dec(latent[:, :, lo:hi], g=g)
    return o[0, 0, (a - lo) * hop:(b - lo) * hop].float().cpu().numpy()


# --- faces on the stream's frame grid -----------------------------------------------------------------------------


def frame_range(start_sample: int, end_sample: int, sample_rate: int, fps: float) -> tuple[int, int]:
    """Indices ``[k0, k1)`` of the frames (centres at ``(k + 0.5) / fps``) whose centre lies in the sample span."""
    def first_at_or_after(sample: int) -> int:
        return max(0, int(math.ceil(sample * fps / sample_rate - 0.5 - 1e-9)))

    return first_at_or_after(start_sample), first_at_or_after(end_sample)


def place_frames(local: np.ndarray, fps: float, offset_s: float, k0: int, k1: int) -> np.ndarray:
    """Frames ``k0..k1-1`` of the stream's grid from ``local`` curves of a piece that starts at ``offset_s``.

    ``local`` is sampled at the piece's own frame centres ``(j + 0.5) / fps``; values in between are interpolated
    linearly and the piece's first/last frame is held beyond its ends."""
    local = np.asarray(local, dtype=np.float32)
    if k1 <= k0:
        return np.zeros((0, local.shape[1] if local.ndim == 2 else 0), dtype=np.float32)
    t = (np.arange(k0, k1, dtype=np.float64) + 0.5) / fps - offset_s
    pos = np.clip(t * fps - 0.5, 0.0, max(0, len(local) - 1))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(local) - 1)
    w = (pos - lo).astype(np.float32)[:, None]
    return local[lo] * (1.0 - w) + local[hi] * w


def piece_results(result: Any) -> list[tuple[int, Any]]:
    """Cut a joined result into its pieces' own results: ``(start_sample, SynthesisResult)`` per piece, each covering
    the piece and the pause after it (what the stream hands to the face function)."""
    from bert_vits2.synthesis import SynthesisResult

    sr = int(result.sample_rate)
    pieces = list(result.pieces) or [{"start_s": 0.0, "end_s": result.duration_s}]
    starts = [int(round(p["start_s"] * sr)) for p in pieces] + [len(result.audio)]
    d = np.asarray(result.durations, dtype=np.float64)
    phone_starts = np.concatenate([[0.0], np.cumsum(d)[:-1]]) if len(d) else np.zeros(0)
    out = []
    for i, p in enumerate(pieces):
        s0, s1 = starts[i], starts[i + 1]
        t0, t1 = s0 / sr, s1 / sr
        sel = np.nonzero((phone_starts >= t0 - 1e-6) & ((phone_starts < t1 - 1e-6) if i + 1 < len(pieces)
                                                        else np.ones(len(d), bool)))[0]
        z = None
        if result.z is not None:
            f0, f1 = int(round(t0 * result.z_fps)), int(round(t1 * result.z_fps))
            z = result.z[:, f0:f1]
        meta = {k: v for k, v in p.items() if k not in ("start_s", "end_s")}
        out.append((s0, SynthesisResult(
            audio=result.audio[s0:s1], sample_rate=sr, phones=[result.phones[j] for j in sel],
            durations=d[sel].copy(), phone_langs=[result.phone_langs[j] for j in sel], z=z, z_fps=result.z_fps,
            pieces=[{**meta, "start_s": 0.0, "end_s": p["end_s"] - p["start_s"]}], voice=result.voice,
        )))
    return out


def piecewise_frames(result: Any, face: FaceFn, fps: float) -> np.ndarray:
    """The face of a whole result computed piece by piece, exactly as :func:`run_stream` computes it while
    streaming: ``[ceil(duration * fps), C]`` frames."""
    sr = int(result.sample_rate)
    parts = piece_results(result)
    total = len(result.audio)
    n_total = max(1, int(math.ceil(total / sr * fps - 1e-6)))
    frames = []
    for i, (s0, sub) in enumerate(parts):
        s1 = parts[i + 1][0] if i + 1 < len(parts) else total
        k0, k1 = frame_range(s0, s1, sr, fps)
        if i + 1 == len(parts):
            k1 = n_total
        frames.append(place_frames(face(sub), fps, s0 / sr, k0, k1))
    return np.concatenate(frames, axis=0)


# --- the stream ---------------------------------------------------------------------------------------------------


class _Producer(threading.Thread):
    """Runs ``produce()`` (an iterator of parts) ahead of the consumer, one part buffered."""

    def __init__(self, produce: Callable[[], Iterator[dict[str, Any]]], depth: int = 1) -> None:
        super().__init__(daemon=True, name="bv2-stream-producer")
        self.produce, self.q = produce, queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            it = self.produce()
            for part in it:
                if self.stop.is_set() or not self._put(("part", part)):
                    close = getattr(it, "close", None)
                    if close:
                        close()
                    return
            self._put(("end", None))
        except BaseException as err:  # handed to the consumer, raised there
            self._put(("error", err))


def run_stream(
    produce: Callable[[], Iterator[dict[str, Any]]],
    *,
    sample_rate: int,
    hop: int | None,
    dec: Callable[..., torch.Tensor] | None = None,
    face: FaceFn | None = None,
    face_fps: float = 60.0,
    first_chunk_frames: int = DEFAULT_FIRST_CHUNK_FRAMES,
    max_chunk_frames: int = DEFAULT_MAX_CHUNK_FRAMES,
    context_frames: int = DEFAULT_CONTEXT_FRAMES,
    cancel: threading.Event | None = None,
    voice: str = "",
) -> Iterator[Any]:
    """Yield :class:`~bert_vits2.synthesis.StreamChunk` s for the parts ``produce()`` gives (see the module docstring).

    A part has either ``audio`` (already a waveform: the demo voice) or ``latent`` + ``g`` (decoded here with ``dec``
    in chunks), plus ``phones``, ``durations``, ``phone_langs``, ``pause_after_s``, ``meta`` and maybe ``z``.
    Pauses are rounded as :func:`~bert_vits2.synthesis.join_pieces` rounds them, so the joined stream has exactly the
    samples of the joined result. Without ``face`` every chunk is yielded as soon as it is decoded; with ``face`` a
    piece's chunks are yielded once the piece is complete and its face computed. The last chunk has ``last=True``
    (it may hold no audio, only the face frames past the end of the last piece). Closing the generator (or setting
    ``cancel``) stops the producer after the piece it is working on.
    """
    from bert_vits2.synthesis import StreamChunk, SynthesisError, join_pieces

    t_start = time.perf_counter()
    producer = _Producer(produce)
    producer.start()
    sr = int(sample_rate)
    step = int(hop) if hop else 512
    pos = 0  # samples emitted so far (start of the next chunk)
    index = 0
    last_local: tuple[np.ndarray, int] | None = None  # last piece's local face and start sample
    piece_no = 0
    face_done = 0  # stream frames already handed out
    try:
        while True:
            if cancel is not None and cancel.is_set():
                return
            try:
                kind, item = producer.q.get(timeout=0.05)
            except queue.Empty:
                continue
            if kind == "error":
                raise item
            if kind == "end":
                break
            part = item
            piece_start = pos
            pending: list[StreamChunk] = []
            z_full = part.get("z")

            def emit(audio: np.ndarray, z: np.ndarray | None, pause: bool, timing: dict[str, float]):
                nonlocal pos, index
                ch = StreamChunk(
                    index=index, piece=piece_no, audio=np.asarray(audio, dtype=np.float32), sample_rate=sr,
                    start_sample=pos, z=z, z_start=(pos // step) if hop else 0, face=None, face_start=0,
                    face_fps=float(face_fps), text=str(part.get("meta", {}).get("text", "")), pause=pause,
                    last=False, timings={**timing, "ready_s": time.perf_counter() - t_start}, voice=voice,
                )
                pos += len(ch.audio)
                index += 1
                return ch

            audio_parts = []
            if "latent" in part:
                latent = part["latent"]
                # a run of a multi-language slice: its frames f0..f1 of the slice z, the rest is context
                f0, f1 = part.get("latent_span") or (0, latent.shape[-1])
                for a, b in chunk_spans(f1 - f0, first_chunk_frames, max_chunk_frames):
                    if cancel is not None and cancel.is_set():
                        return
                    t0 = time.perf_counter()
                    samples = decode_chunk(dec, latent, part.get("g"), f0 + a, f0 + b, step, context_frames)
                    audio_parts.append(samples)
                    z = z_full[:, a:b] if z_full is not None else None
                    ch = emit(samples, z, False, {"decode_s": time.perf_counter() - t0})
                    if face is None:
                        yield ch
                    else:
                        pending.append(ch)
                part = {k: v for k, v in part.items() if k not in ("latent", "g", "latent_span")}
                part["audio"] = np.concatenate(audio_parts) if audio_parts else np.zeros(0, np.float32)
            else:
                audio = np.asarray(part["audio"], dtype=np.float32).reshape(-1)
                spans = chunk_spans(len(audio), first_chunk_frames * step, max_chunk_frames * step)
                for a, b in spans:
                    ch = emit(audio[a:b], None, False, {})
                    if face is None:
                        yield ch
                    else:
                        pending.append(ch)
            # the pause after the piece, rounded as join_pieces rounds it
            pause = float(part.get("pause_after_s", 0.0))
            n_pause = (int(round(pause * sr / step)) * step if hop else int(round(pause * sr))) if pause > 0 else 0
            if n_pause > 0:
                zp = None
                if z_full is not None and hop:
                    zp = np.zeros((z_full.shape[0], n_pause // step), dtype=np.float32)
                ch = emit(np.zeros(n_pause, np.float32), zp, True, {})
                if face is None:
                    yield ch
                else:
                    pending.append(ch)
            if face is not None:
                sub = join_pieces([part], sr, hop=hop)
                sub.voice = voice
                t0 = time.perf_counter()
                local = np.asarray(face(sub), dtype=np.float32)
                face_s = time.perf_counter() - t0
                for ch in pending:
                    k0, k1 = frame_range(ch.start_sample, ch.start_sample + len(ch.audio), sr, face_fps)
                    k0 = max(k0, face_done)
                    ch.face = place_frames(local, face_fps, piece_start / sr, k0, k1)
                    ch.face_start = k0
                    face_done = max(face_done, k1)
                    ch.timings.update(face_s=face_s, ready_s=time.perf_counter() - t_start)
                    yield ch
                last_local = (local, piece_start)
            piece_no += 1
        if pos == 0:
            raise SynthesisError("nothing to synthesise: the text is empty after splitting; type some words")
        tail = StreamChunk(
            index=index, piece=max(0, piece_no - 1), audio=np.zeros(0, np.float32), sample_rate=sr, start_sample=pos,
            z=None, z_start=(pos // step) if hop else 0, face=None, face_start=face_done, face_fps=float(face_fps),
            text="", pause=False, last=True, timings={"ready_s": time.perf_counter() - t_start}, voice=voice,
        )
        if face is not None and last_local is not None:
            n_total = max(1, int(math.ceil(pos / sr * face_fps - 1e-6)))
            tail.face = place_frames(last_local[0], face_fps, last_local[1] / sr, face_done, max(face_done, n_total))
        yield tail
    finally:
        producer.stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                producer.q.get_nowait()
            except queue.Empty:
                break
