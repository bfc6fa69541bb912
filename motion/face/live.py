"""Live audio -> face: microphone-sized chunks in, 60 fps Live Link frames out, within a stated lookahead.

:class:`LiveFace` runs a causal head (:class:`motion.face.heads.CausalMelHead`: causal convolutions, a
unidirectional GRU, a few frames of right context) on the log-mel computed as the audio arrives
(:class:`motion.face.features.OnlineLogMel`), resamples its 86.13 frames/s output to the face rate on frame centres,
and adds the alive layer online (:class:`motion.face.alive.AliveStream`). The path for one frame::

    chunk (any rate, int16/float, mono or [N, C]) -> mono -> 44.1 kHz (windowed-sinc, 16 input samples of delay)
      -> STFT frame (waits for the 1024 samples after its centre) -> causal head (waits lookahead_frames more)
      -> 60 fps frame centred at (k + 0.5) / 60 s

:attr:`LiveFace.lookahead_s` is the sum of those waits (0.081 s with the shipped head at 44.1 kHz): after a feed
that brings the audio to ``t`` seconds, every frame centred at or before ``t - lookahead_s`` has been returned. All
the frames of a stream (``feed`` calls + ``close``) are ``ceil(duration * fps)``. Every stage is computed sample by
sample or frame by frame with carried state, so how the audio is chunked changes the frames only by float rounding
(tests/test_live_face.py bounds it), and memory does not grow with the stream.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from motion.arkit import NUM_VALUES
from motion.constants import FEATURE_FPS

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
#: the shipped causal head (scripts/train_default_head.py --causal; provenance in motion/assets/README.md)
DEFAULT_CAUSAL_HEAD = ASSETS / "default_causal_head.pth"
#: the rate the features are computed at
_TTS_RATE = 44100
#: half-width of the resampler's windowed-sinc kernel in input samples (its delay)
RESAMPLE_HALF_WIDTH = 16
#: the most a live face may wait for
MAX_LOOKAHEAD_S = 0.10


class LiveFaceError(ValueError):
    """Input or a head that a live face cannot use; the one-line message says what to do."""


class StreamResampler:
    """Any rate -> ``out_rate``, chunk by chunk, with a Kaiser-windowed sinc of :data:`RESAMPLE_HALF_WIDTH` input
    samples each side (anti-aliased when going down). Output sample ``j`` is at input time ``j * in / out`` and
    leaves once the kernel's right half is in, so the delay is ``RESAMPLE_HALF_WIDTH / in_rate`` s (0.33 ms at
    48 kHz); each output is computed from the same samples whatever the chunking. The start is zero-padded; ``flush``
    zero-pads the end and gives the outputs up to the input's duration."""

    def __init__(self, in_rate: int, out_rate: int = _TTS_RATE, half_width: int = RESAMPLE_HALF_WIDTH) -> None:
        self.inp, self.out = int(in_rate), int(out_rate)
        g = math.gcd(self.inp, self.out)
        self.num, self.den = self.inp // g, self.out // g  # input time of output j: j * num / den samples
        self.w = int(half_width)
        self.cut = min(1.0, self.out / self.inp) * (0.97 if self.out < self.inp else 1.0)
        self.beta = 8.0
        self.buf = np.zeros(self.w, np.float32)  # zeros before the start
        self.buf_start = -self.w
        self.n_in = 0
        self.j = 0  # next output sample
        self.table: np.ndarray | None = None

    @property
    def delay_s(self) -> float:
        return 0.0 if self.inp == self.out else (self.w + 1) / self.inp

    def _kernel(self, frac: np.ndarray) -> np.ndarray:
        """Kernel weights [n, 2w] for outputs at fractional input positions ``frac`` (0..1)."""
        k = np.arange(-self.w + 1, self.w + 1)
        d = frac[:, None] - k[None, :]  # distance from the output's time to each input sample
        u = np.clip(d / self.w, -1.0, 1.0)
        win = np.i0(self.beta * np.sqrt(np.maximum(0.0, 1.0 - u * u))) / np.i0(self.beta)
        return (self.cut * np.sinc(self.cut * d) * win).astype(np.float32)

    def _emit(self, upto_j: int) -> np.ndarray:
        if upto_j <= self.j:
            return np.zeros(0, np.float32)
        j = np.arange(self.j, upto_j, dtype=np.int64)
        base = (j * self.num) // self.den
        phase = (j * self.num) % self.den
        if self.table is None and self.den <= 8192:  # the phases repeat every den outputs: one table for all
            self.table = self._kernel(np.arange(self.den) / self.den)
        h = self.table[phase] if self.table is not None else self._kernel(phase / self.den)
        idx = base[:, None] + np.arange(-self.w + 1, self.w + 1)[None, :]
        y = np.einsum("ij,ij->i", self.buf[idx - self.buf_start], h)
        self.j = upto_j
        keep = int((self.j * self.num) // self.den) - self.w + 1
        if keep > self.buf_start + 8192:
            self.buf = self.buf[keep - self.buf_start:].copy()
            self.buf_start = keep
        return y.astype(np.float32)

    def push(self, x: np.ndarray) -> np.ndarray:
        if self.inp == self.out:
            self.n_in += len(x)
            return np.asarray(x, np.float32)
        self.buf = np.concatenate([self.buf, np.asarray(x, np.float32)])
        self.n_in += len(x)
        # output j needs input samples up to base + w <= n_in - 1
        last = self.n_in - 1 - self.w
        upto = (last * self.den) // self.num + 1 if last >= 0 else 0
        return self._emit(upto)

    def flush(self) -> np.ndarray:
        if self.inp == self.out:
            return np.zeros(0, np.float32)
        self.buf = np.concatenate([self.buf, np.zeros(self.w + 1, np.float32)])
        total = -(-self.n_in * self.den // self.num)  # outputs whose time is inside the input
        return self._emit(total)


def _load_causal_head(head: Any):
    """A causal head from a path (``V_*.pth``), a module, or None (the shipped default); refuses offline heads."""
    import torch

    from motion.face.heads import is_causal
    from motion.face.model import HeadLoadError, load_head_checkpoint

    if isinstance(head, torch.nn.Module):
        module, name = head, "the given head"
    else:
        path = Path(head) if head is not None else DEFAULT_CAUSAL_HEAD
        if head is None and not path.is_file():
            raise LiveFaceError(f"{path}: the shipped causal head is missing; run scripts/train_default_head.py "
                                f"--causal or pass head=V_*.pth (a causal head)")
        try:
            module, _ = load_head_checkpoint(path)
        except HeadLoadError as err:
            raise LiveFaceError(str(err)) from None
        name = str(path)
    if not is_causal(module):
        raise LiveFaceError(f"{name}: an offline (bidirectional) head reads the whole clip, so it cannot run live; "
                            f"train a causal one with `train_ms.py --visemes --causal` or leave head out")
    module.eval()
    return module


class LiveFace:
    """Audio chunks -> the next frames of the 60 fps face (Live Link order, ``[n, 61]``); see the module docstring.

    ``head``: a causal head checkpoint (``V_*.pth`` of ``train_ms.py --visemes --causal``) or module; None = the
    shipped default. ``alive``: add blinks, brows, nods, idle head and eye motion online; ``keep``: groups the alive
    layer leaves to the head (default: none for the shipped head, which predicts none; all for a user's head, which
    learnt the performer's). ``threads``: torch threads for the head (1 is fastest for 10 ms chunks).
    ``emotion`` / ``emotion_intensity``: an emotion on every frame, as ``FaceMaker(emotion=...)`` puts it on offline
    faces (:func:`motion.face.emotion.apply_emotion`, last: lips still close on /p b m/); per frame, so it adds no
    lookahead."""

    def __init__(self, sample_rate: int = 48000, head: Any = None, alive: bool = True, seed: int = 0,
                 fps: float = 60.0, keep: set[str] | None = None, threads: int | None = 1, *,
                 emotion: Any = None, emotion_intensity: float = 1.0) -> None:
        import torch

        from motion.face.alive import GROUPS, AliveOptions, AliveStream
        from motion.face.emotion import EmotionError, emotion_vector
        from motion.face.features import OnlineLogMel
        from motion.face.heads import CausalMelStream

        try:
            sr = int(sample_rate)
        except (TypeError, ValueError):
            raise LiveFaceError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}") from None
        if not 1000 <= sr <= 768000 or sr != sample_rate:
            raise LiveFaceError(f"sample_rate must be a whole number of Hz between 1000 and 768000, got {sample_rate!r}")
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 1 <= fps <= 240):
            raise LiveFaceError(f"fps must be 1..240, got {fps!r}")
        try:  # before the head loads: a typo is said at once
            weights = emotion_vector(emotion, emotion_intensity)
        except EmotionError as err:
            raise LiveFaceError(str(err)) from None
        self.emotion = weights if np.any(weights) else None
        if threads:
            torch.set_num_threads(int(threads))
        self.sample_rate, self.fps = sr, float(fps)
        self.head = _load_causal_head(head)
        self.is_default = head is None
        self.resampler = StreamResampler(sr, _TTS_RATE)
        self.mel = OnlineLogMel(int(self.head.config["n_mels"]))
        self.stream = CausalMelStream(self.head)
        if keep is None:
            keep = set() if self.is_default else set(GROUPS)
        self.alive = AliveStream(self.fps, AliveOptions(seed=int(seed)), keep) if alive else None
        self.raw = np.zeros((0, NUM_VALUES), np.float32)  # head output at the feature rate, frames raw_start..
        self.raw_start = 0
        self.samples_in = 0
        self.frames_out = 0
        self.closed = False

    @property
    def lookahead_s(self) -> float:
        """How long after a frame's centre its audio must have arrived before the frame goes out (s): the
        resampler's delay + the STFT's half window (1024 samples) + one feature frame for the interpolation + the
        head's right context."""
        hop = 512
        return self.resampler.delay_s + (self.head.lookahead + 3) * hop / _TTS_RATE

    @property
    def duration_s(self) -> float:
        """Audio fed so far (s)."""
        return self.samples_in / self.sample_rate

    def _mono(self, chunk: Any) -> np.ndarray:
        a = np.asarray(chunk)
        if a.dtype == np.int16:
            a = a.astype(np.float32) / 32768.0
        elif a.dtype == np.int32:
            a = a.astype(np.float32) / 2147483648.0
        elif a.dtype.kind == "f":
            a = a.astype(np.float32, copy=False)
        else:
            raise LiveFaceError(f"audio must be float (-1..1), int16 or int32 samples, got {a.dtype}")
        if a.ndim == 2:
            a = a.mean(axis=1, dtype=np.float32) if a.shape[1] > 1 else a[:, 0]
        elif a.ndim != 1:
            raise LiveFaceError(f"audio chunks must be mono [N] or [N, channels], got shape {list(a.shape)}")
        if not np.isfinite(a).all():
            raise LiveFaceError("audio chunk holds NaN or infinite samples; send float samples in -1..1")
        return np.ascontiguousarray(a, dtype=np.float32)

    def _frames(self, final: bool) -> np.ndarray:
        """The 60 fps frames now computable from the raw curves (all remaining ones when ``final``)."""
        have = self.raw_start + len(self.raw)
        if final:
            total = max(0, int(math.ceil(self.samples_in / self.sample_rate * self.fps - 1e-9)))
        else:  # frame k needs raw frames up to ceil(p_k), p_k = (k + 0.5) / fps * FEATURE_FPS - 0.5
            total = int(math.floor(((have - 1) + 0.5) / FEATURE_FPS * self.fps - 0.5)) + 1 if have else 0
        if total <= self.frames_out or have == 0:
            return np.zeros((0, NUM_VALUES), np.float32)
        k = np.arange(self.frames_out, total)
        p = np.clip((k + 0.5) / self.fps * FEATURE_FPS - 0.5, 0.0, have - 1)
        lo = np.floor(p).astype(np.int64)
        hi = np.minimum(lo + 1, have - 1)
        w = (p - lo)[:, None].astype(np.float32)
        out = self.raw[lo - self.raw_start] * (1 - w) + self.raw[hi - self.raw_start] * w
        self.frames_out = total
        drop = int(np.floor((total + 0.5) / self.fps * FEATURE_FPS - 0.5)) - 1 - self.raw_start
        if drop > 64:
            self.raw = self.raw[drop:].copy()
            self.raw_start += drop
        return out.astype(np.float32)

    def _run(self, audio44: np.ndarray, final: bool) -> np.ndarray:
        feats = self.mel.push(audio44) if len(audio44) else np.zeros((self.mel.n_mels, 0), np.float32)
        if final:
            feats = np.concatenate([feats, self.mel.finish()], axis=1)
        raw = [self.stream.push(feats)] + ([self.stream.finish()] if final else [])
        raw = np.concatenate(raw)
        if len(raw):
            self.raw = np.concatenate([self.raw, raw])
        if self.alive is not None and len(audio44):
            self.alive.push_audio(audio44)
        frames = self._frames(final)
        if self.alive is not None:
            frames = self.alive.apply(frames)
        if self.emotion is not None and len(frames):
            from motion.face.emotion import apply_emotion

            frames = apply_emotion(frames, self.emotion)
        return frames

    def feed(self, chunk: Any) -> np.ndarray:
        """A chunk of audio (any length; float -1..1, int16 or int32; mono ``[N]`` or ``[N, C]``) -> the frames
        ``[n, 61]`` completed by it (often 0 or 1 for a 10 ms chunk)."""
        if self.closed:
            raise LiveFaceError("this LiveFace was closed; make a new one for a new stream")
        a = self._mono(chunk)
        self.samples_in += len(a)
        return self._run(self.resampler.push(a), final=False)

    def close(self) -> np.ndarray:
        """The remaining frames (the end of the audio padded as the offline face pads it); the stream is done."""
        if self.closed:
            return np.zeros((0, NUM_VALUES), np.float32)
        self.closed = True
        return self._run(self.resampler.flush(), final=True)


__all__ = ["DEFAULT_CAUSAL_HEAD", "LiveFace", "LiveFaceError", "MAX_LOOKAHEAD_S", "StreamResampler"]
