"""Streaming synthesis: pieces in order, the HiFi-GAN decoded in chunks.

How the stream stays equal to :meth:`bert_vits2.synthesis.Voice.synthesize`:

- **Same pieces, same random draws.** The producer runs the voice's own per-piece generator (the one ``synthesize``
  joins) with ``decode=False``: text frontend, BERT, encoder, duration predictors and flow give the latent ``z`` of a
  piece, exactly as ``synthesize`` computes it. Every request draws from its own ``torch.Generator``, so a seeded
  stream draws the same noise as a seeded ``synthesize`` whatever other requests run in between.
- **Chunked HiFi-GAN, nothing decoded twice.** With the fast decoder (:class:`bert_vits2.inference.FastGenerator`,
  fp32) a piece's chunks go through one :class:`bert_vits2.stream_decoder.IncrementalDecoder`: its early stages
  keep what they computed for the previous chunk, so each of their samples is computed once (full-size v2.3
  decoder, 2-core Ice Lake, fixed lengths: the windowed chunks below 1.34x one whole decode per frame, the
  incremental ones 1.05x; over varied texts the machine's drift was as large as the difference).
- **Or windows with context** (other decoders, the bucketed bf16 path, an explicit ``context_frames``): each chunk
  of z frames ``[a, b)`` is decoded from ``[a - c, b + c)`` (clipped to the piece) and the middle
  ``(b - a) * hop`` samples are kept. ``c`` covers the decoder's receptive field (:func:`decoder_context_frames`),
  so a chunk differs from the whole-piece decode only by float rounding (measured: 9.3e-10 max on the tiny test
  voice's whole stream; 3.3e-7 for the full-size v2.3 decoder with 20 frames, 3.0e-7 with 12, 4e-4 with only 8;
  the default is 18).
- **One thread on the CPU.** On the CPU every step runs in the thread that iterates the stream. A producer thread
  computing piece *i + 1* while piece *i* is decoded made both slower: each thread that runs torch ops gets its own
  OpenMP team, and with more OpenMP threads than cores libgomp stops spinning between parallel regions, so every one
  of the thousands of small ops waits for a wake-up (measured on the 2-core Ice Lake Xeon, full-size v2.3 generator,
  BERT-large-shaped BERT, 2 torch threads: a 10-character clause's generator work 0.34 s in one thread, 0.52 s once a
  second thread had run torch; the first chunk 0.68 s through the pipelined stream against 0.51 s for its parts).
  Where the decoder runs on a GPU, the producer thread still computes the next piece's text and BERT meanwhile
  (bounded queue of one piece): there the overlap is real (``StreamOptions.pipeline`` overrides either way).
- **Typed chunks.** :class:`~bert_vits2.results.StreamChunk` s carry audio and z; the chunk that completes a piece
  carries the piece's own result, which is all a consumer needs to attach faces (``motion.face.streaming`` does;
  this package knows nothing about faces).
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from bert_vits2.request import SynthesisError
from bert_vits2.results import PieceOutput, PiecePlan, StreamChunk, SynthesisResult, join_pieces, pause_samples

__all__ = [
    "DEFAULT_CONTEXT_FRAMES", "DEFAULT_FIRST_CHUNK_FRAMES", "DEFAULT_MAX_CHUNK_FRAMES", "StreamOptions", "WHOLE_PIECES",
    "chunk_spans", "decode_chunk", "decoder_context_frames", "run_stream",
]

DEFAULT_FIRST_CHUNK_FRAMES = 16  # 0.19 s of audio at 44.1 kHz / hop 512: the first chunk comes quickly
DEFAULT_MAX_CHUNK_FRAMES = 256  # chunks grow up to this (fewer, larger decoder calls later on)
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
    """``[a, b)`` z-frame spans covering ``num_frames``: ``first`` frames, then each chunk as long as all before it
    (``first``, ``first``, ``2 first``, ``4 first``, ...) up to ``max_frames``.

    Why not doubling from the first chunk: a chunk must be decoded while the audio before it plays, and a chunk
    costs a fixed part plus a part per frame (full-size v2.3 decoder, 2-core Ice Lake, fp32: 16 frames 106 ms, 32
    frames 168 ms, about 44 ms + 3.9 ms per 11.6 ms frame). A second chunk twice the first (32 frames, 168 ms) was
    due after the first chunk's 186 ms of audio: 18 ms to spare, and this VM's speed varies by 30 %. As long as all
    chunks before it, each chunk keeps about half the audio before it in hand at that speed."""
    spans, a = [], 0
    while a < num_frames:
        b = min(num_frames, a + _scheduled_size(a, first, max_frames))
        spans.append((a, b))
        a = b
    return spans


def _scheduled_size(done: int, first: int, max_frames: int) -> int:
    """The next chunk's frames after ``done`` frames of a piece: as long as all before it, ``first`` to start."""
    return min(max(1, int(max_frames)), max(max(1, int(first)), done))


def decode_chunk(dec: Callable[..., torch.Tensor], latent: torch.Tensor, g: torch.Tensor | None, a: int, b: int,
                 hop: int, context: int) -> np.ndarray:
    """Samples of z frames ``[a, b)`` of ``latent`` [1, C, T], decoded with ``context`` frames each side.

    A decoder with ``decode_span`` (:class:`bert_vits2.inference.FastGenerator`) crops the context stage by stage (the
    later, costlier stages see only the frames they reach: same samples within float rounding, about 40 % less work
    for a 16-frame chunk); others decode the whole window and the middle is kept."""
    n = latent.shape[-1]
    lo, hi = max(0, a - context), min(n, b + context)
    with torch.no_grad():
        span = getattr(dec, "decode_span", None)
        if span is not None:
            return span(latent[:, :, lo:hi], g, a - lo, b - lo)[0].float().cpu().numpy()
        o = dec(latent[:, :, lo:hi], g=g)
    return o[0, 0, (a - lo) * hop:(b - lo) * hop].float().cpu().numpy()


# --- the stream ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamOptions:
    """How a stream cuts its audio: the first chunk's z frames (small: first audio comes quickly), the largest chunk
    (each chunk is as long as the piece's chunks before it, up to this: :func:`chunk_spans`), and the decoder context
    each side (None: from the model config)."""

    first_chunk_frames: int = DEFAULT_FIRST_CHUNK_FRAMES
    max_chunk_frames: int = DEFAULT_MAX_CHUNK_FRAMES
    context_frames: int | None = None
    #: compute the next piece in a producer thread while this one is decoded (None: only when the decoder is on a
    #: GPU; on the CPU a second torch thread slows both, see the module docstring)
    pipeline: bool | None = None
    #: let chunks grow faster than :func:`chunk_spans` (up to ``max_chunk_frames``) when the audio already sent covers
    #: their decode with room to spare (see :class:`_Pacer`); False: exactly :func:`chunk_spans`' sizes. Off by default:
    #: measured on the 2-core Ice Lake (full-size decoder, varied texts, alternating order) it cut three-sentence
    #: requests from 13.6 to 9.0 chunks but the decoder time only within noise (0.98x), and paced chunk boundaries
    #: follow timing, so two runs of a seeded stream would agree within float rounding, not bit for bit
    pace: bool = False

    def __post_init__(self) -> None:
        for name in ("first_chunk_frames", "max_chunk_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be 1 or more, got {getattr(self, name)}")
        if self.context_frames is not None and int(self.context_frames) < 0:
            raise ValueError(f"context_frames must be 0 or more, got {self.context_frames}")


#: decode every piece in one decoder call (one-response routes: the same samples as ``synthesize``)
WHOLE_PIECES = StreamOptions(first_chunk_frames=1 << 20, max_chunk_frames=1 << 20)


class _Producer(threading.Thread):
    """Runs ``produce()`` (an iterator of pieces) ahead of the consumer, one piece buffered.

    Blocking puts on a queue of one; :meth:`halt` sets the stop flag and empties the queue once, which frees a
    blocked put, after which the producer sees the flag and ends (at most one more put can happen, and it finds room).
    """

    def __init__(self, produce: Callable[[], Iterator[PieceOutput]], cancel: threading.Event | None) -> None:
        super().__init__(daemon=True, name="bv2-stream-producer")
        self.produce, self.cancel = produce, cancel
        self.q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        self._stop_flag = threading.Event()

    def stopping(self) -> bool:
        return self._stop_flag.is_set() or (self.cancel is not None and self.cancel.is_set())

    def run(self) -> None:
        it = None
        try:
            it = self.produce()
            for part in it:
                self.q.put(("part", part))
                if self.stopping():
                    return
            self.q.put(("end", None))
        except BaseException as err:  # handed to the consumer, raised there
            self.q.put(("error", err))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def next(self) -> tuple[str, Any]:
        return self.q.get()

    def halt(self) -> None:
        self._stop_flag.set()
        try:
            self.q.get_nowait()
        except queue.Empty:
            pass


class _InThread:
    """``produce()`` stepped in the consumer's own thread (the CPU default): the same ``next`` / ``halt`` as
    :class:`_Producer`, without a second thread."""

    def __init__(self, produce: Callable[[], Iterator[PieceOutput]]) -> None:
        self.produce = produce
        self.it: Iterator[PieceOutput] | None = None

    def start(self) -> None:
        self.it = self.produce()

    def next(self) -> tuple[str, Any]:
        try:
            return "part", next(self.it)
        except StopIteration:
            return "end", None

    def halt(self) -> None:
        close = getattr(self.it, "close", None)
        if close is not None:
            close()


class _Pacer:
    """The size of a piece's next chunk: :func:`chunk_spans`' sizes, or more when the playback lead allows it.

    Why: every chunk costs more per frame than one long decode (a convolution over a few hundred samples runs up to
    40 % slower per sample than over thousands), and restarting at a small chunk for every sentence paid that again
    and again. The lead is the audio already sent minus the time since the first audio went out (what a listener
    who started playing at the first chunk still has buffered); a chunk may take ``SAFETY`` of it at the decoder's
    measured speed (seconds per z frame of the latest chunk). A small rest of the piece joins the chunk when that
    still fits. The first chunk of a stream has no lead yet: it is always ``first_chunk_frames``."""

    SAFETY = 0.5  # of the lead: the VM's speed varies +-30 % from one call to the next

    def __init__(self, options: StreamOptions) -> None:
        self.first, self.max = int(options.first_chunk_frames), int(options.max_chunk_frames)
        self.enabled = bool(options.pace)
        self.s_per_frame: float | None = None

    def _on_grid(self, n: int) -> int:
        """``n`` rounded down to ``first`` times 1, 1.5, 2, 3, 4, 6, ...: chunk lengths that recur from request to
        request, because every new input length makes oneDNN build new convolution primitives (measured: 0.5-0.65 ms
        per convolution for a new length against a cached one, fp32, 128- and 32-channel layers, 2-core Ice Lake),
        and a decoder chunk runs about 100 of them."""
        best, power = 1, self.first
        while power <= n:
            best = power if power * 3 // 2 > n else power * 3 // 2
            power *= 2
        return best

    def record(self, frames: int, seconds: float) -> None:
        if frames > 0:
            self.s_per_frame = seconds / frames

    def size(self, done: int, remaining: int, lead_s: float | None) -> int:
        """Frames of the next chunk of a piece with ``done`` frames decoded and ``remaining`` to go."""
        n = _scheduled_size(done, self.first, self.max)
        if self.enabled:
            n = self._on_grid(n)  # after a paced chunk, ``done`` is off the grid of recurring lengths
        affordable = None
        if self.enabled and lead_s is not None and self.s_per_frame:
            affordable = int(self.SAFETY * lead_s / self.s_per_frame)
            n = max(n, self._on_grid(min(self.max, affordable)))
        n = max(1, min(n, remaining))
        if affordable is not None and n < remaining <= min(affordable, self.max + self.max // 4):
            n = remaining  # the rest of the piece fits the lead: one chunk, not a small one after this
        return n


class _Emitter:
    """Numbers the chunks and keeps their positions on the stream's sample and z-frame axes."""

    def __init__(self, sample_rate: int, hop: int | None, voice: str) -> None:
        self.sr, self.hop, self.voice = int(sample_rate), hop, voice
        self.step = int(hop) if hop else 512
        self.pos = 0  # samples emitted so far: the start of the next chunk
        self.index = 0
        self.t_start = time.perf_counter()
        self.t_first_audio: float | None = None

    def lead_s(self) -> float | None:
        """Seconds of audio sent and not yet played by a listener who started at the first audio (None before it)."""
        if self.t_first_audio is None:
            return None
        return self.pos / self.sr - (time.perf_counter() - self.t_first_audio)

    def chunk(self, audio: np.ndarray, z: np.ndarray | None, piece: int, text: str, pause: bool,
              timings: dict[str, float], piece_start: int, piece_result: SynthesisResult | None,
              piece_plan: PiecePlan | None = None) -> StreamChunk:
        ch = StreamChunk(
            index=self.index, piece=piece, audio=np.asarray(audio, dtype=np.float32), sample_rate=self.sr,
            start_sample=self.pos, z=z, z_start=(self.pos // self.step) if self.hop else 0, text=text, pause=pause,
            timings={**timings, "ready_s": time.perf_counter() - self.t_start}, voice=self.voice,
            piece_start=piece_start, piece_result=piece_result, piece_plan=piece_plan,
        )
        if self.t_first_audio is None and len(ch.audio):
            self.t_first_audio = time.perf_counter()
        self.pos += len(ch.audio)
        self.index += 1
        return ch

    def tail(self, piece: int) -> StreamChunk:
        return StreamChunk(
            index=self.index, piece=piece, audio=np.zeros(0, np.float32), sample_rate=self.sr,
            start_sample=self.pos, z=None, z_start=(self.pos // self.step) if self.hop else 0, text="", pause=False,
            last=True, timings={"ready_s": time.perf_counter() - self.t_start}, voice=self.voice, piece_start=self.pos,
        )


def _paced_spans(num_frames: int, pacer: _Pacer, em: _Emitter) -> Iterator[tuple[int, int]]:
    """``[a, b)`` spans over ``num_frames``, each sized when it is due (:class:`_Pacer`)."""
    a = 0
    while a < num_frames:
        n = pacer.size(a, num_frames - a, em.lead_s())
        yield a, a + n
        a += n


def _piece_chunks(part: PieceOutput, piece: int, em: _Emitter, dec: Callable[..., torch.Tensor] | None,
                  options: StreamOptions, context: int, cancel: threading.Event | None,
                  pacer: _Pacer) -> Iterator[StreamChunk]:
    """The chunks of one piece: its audio (decoded chunk by chunk from its latent, or cut from its waveform), then
    the pause after it. The chunk that completes the piece carries the piece's own result."""
    piece_start, step = em.pos, em.step
    if part.latent is not None:
        f0, f1 = part.latent_span or (0, int(part.latent.shape[-1]))
        spans = _paced_spans(f1 - f0, pacer, em)
        # chunks in order, nothing decoded twice (FastGenerator, unless a context was asked for); else windows
        single = f1 - f0 <= options.first_chunk_frames
        make = getattr(dec, "span_decoder", None) if options.context_frames is None and not single else None
        incremental = make(part.latent, part.g) if make is not None else None

        def decode(a: int, b: int) -> np.ndarray:
            if incremental is not None:
                return incremental.decode(f0 + a, f0 + b).float().cpu().numpy()
            return decode_chunk(dec, part.latent, part.g, f0 + a, f0 + b, step, context)

        def z_of(a: int, b: int) -> np.ndarray | None:
            return part.z[:, a:b] if part.z is not None else None
    else:
        audio = np.asarray(part.audio, dtype=np.float32).reshape(-1)
        spans = chunk_spans(len(audio), options.first_chunk_frames * step, options.max_chunk_frames * step)

        def decode(a: int, b: int) -> np.ndarray:
            return audio[a:b]

        def z_of(a: int, b: int) -> np.ndarray | None:  # a waveform piece with z (a pause): whole frames
            return part.z[:, a // step:b // step] if part.z is not None and em.hop else None
    n_pause = pause_samples(float(part.pause_after_s), em.sr, em.hop)
    n_audio = (f1 - f0) * step if part.latent is not None else len(audio)
    plan: PiecePlan | None = PiecePlan.of(part, n_audio, n_pause, em.sr, em.hop, em.voice)
    decoded: list[np.ndarray] = []

    def finished() -> SynthesisResult:
        whole = dataclasses.replace(part, latent=None, g=None, latent_span=None,
                                    audio=np.concatenate(decoded) if decoded else np.zeros(0, np.float32))
        result = join_pieces([whole], em.sr, hop=em.hop)
        result.voice = em.voice
        return result

    total = f1 - f0 if part.latent is not None else len(audio)
    for a, b in spans:
        if cancel is not None and cancel.is_set():
            return
        t0 = time.perf_counter()
        samples = decode(a, b)
        decoded.append(samples)
        timing = {}
        if part.latent is not None:
            timing = {"decode_s": time.perf_counter() - t0}
            pacer.record(b - a, timing["decode_s"])
        done = finished() if b == total and n_pause == 0 else None
        yield em.chunk(samples, z_of(a, b), piece, part.text, False, timing, piece_start, done, plan)
        plan = None  # only the piece's first chunk carries it
    if n_pause > 0:
        zp = np.zeros((part.z.shape[0], n_pause // step), np.float32) if part.z is not None and em.hop else None
        yield em.chunk(np.zeros(n_pause, np.float32), zp, piece, part.text, True, {}, piece_start, finished(), plan)


def run_stream(
    produce: Callable[[], Iterator[PieceOutput]],
    *,
    sample_rate: int,
    hop: int | None,
    dec: Callable[..., torch.Tensor] | None = None,
    options: StreamOptions = StreamOptions(),
    context_frames: int = DEFAULT_CONTEXT_FRAMES,
    cancel: threading.Event | None = None,
    voice: str = "",
) -> Iterator[StreamChunk]:
    """Yield :class:`~bert_vits2.results.StreamChunk` s for the pieces ``produce()`` gives (see the module docstring).

    A piece has either ``audio`` (already a waveform: the demo voice) or ``latent`` + ``g`` (decoded here with ``dec``
    in chunks). Pauses are rounded as :func:`~bert_vits2.results.join_pieces` rounds them, so the joined stream has
    exactly the samples of the joined result. Every chunk is yielded as soon as it is decoded; the last one has
    ``last=True`` and no audio. Closing the generator (or setting ``cancel``) stops it after the chunk (with a
    pipelined producer thread: after the piece that thread is working on).
    """
    context = options.context_frames if options.context_frames is not None else context_frames
    em = _Emitter(sample_rate, hop, voice)
    pacer = _Pacer(options)
    pipeline = options.pipeline if options.pipeline is not None else _decoder_device(dec).type != "cpu"
    pieces = _Producer(produce, cancel) if pipeline else _InThread(produce)
    pieces.start()
    piece = 0
    try:
        while True:
            if cancel is not None and cancel.is_set():
                return
            kind, item = pieces.next()
            if kind == "error":
                raise item
            if kind == "end":
                break
            yield from _piece_chunks(item, piece, em, dec, options, context, cancel, pacer)
            piece += 1
        if em.pos == 0:
            raise SynthesisError("nothing to synthesise: the text is empty after splitting; type some words")
        yield em.tail(max(0, piece - 1))
    finally:
        pieces.halt()


def _decoder_device(dec: Any) -> torch.device:
    """Where ``dec`` computes (the CPU when it has no tensors: a waveform-only voice)."""
    for tensor in (*getattr(dec, "parameters", lambda: [])(), *getattr(dec, "buffers", lambda: [])()):
        return tensor.device
    return torch.device("cpu")
