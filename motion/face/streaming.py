"""Faces for streams: per-piece faces from a :class:`~motion.face.api.FaceMaker`, and audio → face of incoming PCM.

- :func:`face_function` turns a ``FaceMaker`` into the face function ``Voice.stream`` / ``DemoVoice.stream`` take
  (``SynthesisResult -> [T, 61]``), applied to each piece's own result.
- :func:`piecewise_face` is the whole-utterance face computed the same way (piece by piece, placed on one frame
  grid by :func:`bert_vits2.streaming.piecewise_frames`): the face of ``synthesize`` that a stream reproduces.
- :class:`AudioFaceStream` takes PCM chunks of any size and gives face frames: the audio is cut into segments at
  pauses (or every ``max_segment_s``) by a rule that only looks at the audio on fixed 10 ms windows, so the segments,
  and therefore the frames, do not depend on how the audio was chunked; :func:`face_for_audio_segmented` is the
  same computation on a whole recording.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bert_vits2.streaming import frame_range, piecewise_frames, place_frames
from motion.face.api import FaceMaker, FaceResult

__all__ = ["AudioFaceStream", "FaceFrames", "face_for_audio_segmented", "face_function", "piecewise_face"]


def face_function(maker: FaceMaker) -> Callable[[Any], np.ndarray]:
    """``SynthesisResult -> [T, 61]`` frames at ``maker.fps`` (``FaceMaker.for_result`` on one piece)."""
    return lambda result: maker.for_result(result).frames


def piecewise_face(maker: FaceMaker, result: Any) -> FaceResult:
    """The face of a whole synthesis result, piece by piece as a stream computes it."""
    frames = piecewise_frames(result, face_function(maker), maker.fps)
    return FaceResult(frames, maker.fps, f"{maker.describe()}, per piece")


@dataclass
class FaceFrames:
    """Frames ``start .. start + len(frames) - 1`` of the stream's face grid (centres at ``(k + 0.5) / fps``)."""

    start: int
    frames: np.ndarray  # [n, 61]
    fps: float


class AudioFaceStream:
    """Audio chunks in, face frames out (see the module docstring).

    ``feed(pcm)`` accepts float (-1..1) or int16 samples (mono, or ``[N, C]`` averaged) at ``sample_rate`` and
    returns the frames of every segment it completed; ``close()`` returns the rest. A segment ends after
    ``pause_s`` of audio below ``silence_db`` (once it is ``min_segment_s`` long) or at ``max_segment_s``: the face
    lags the audio by at most ``max_segment_s`` plus the face computation.
    """

    WINDOW_S = 0.01

    def __init__(self, maker: FaceMaker, sample_rate: int, *, silence_db: float = -45.0, pause_s: float = 0.2,
                 min_segment_s: float = 0.5, max_segment_s: float = 2.0) -> None:
        if sample_rate <= 0:
            raise ValueError(f"the sample rate must be positive, got {sample_rate}")
        if not 0 < min_segment_s <= max_segment_s:
            raise ValueError("need 0 < min_segment_s <= max_segment_s")
        self.maker, self.sr = maker, int(sample_rate)
        self.fps = float(maker.fps)
        self.win = max(1, int(round(self.WINDOW_S * self.sr)))
        self.threshold = 10.0 ** (float(silence_db) / 20.0)
        self.pause_windows = max(1, int(round(pause_s / self.WINDOW_S)))
        self.min_windows = max(1, int(round(min_segment_s / self.WINDOW_S)))
        self.max_windows = max(self.min_windows, int(round(max_segment_s / self.WINDOW_S)))
        self._buf = np.zeros(0, np.float32)  # audio of the open segment (from self._seg_start)
        self._seg_start = 0  # sample where the open segment starts
        self._scanned = 0  # samples of the open segment already looked at (whole windows)
        self._silent_run = 0
        self._frames_done = 0
        self._last: tuple[np.ndarray, int] | None = None
        self.total = 0

    @staticmethod
    def _as_float(pcm: np.ndarray) -> np.ndarray:
        a = np.asarray(pcm)
        if a.ndim == 2:
            a = a.mean(axis=1)
        if a.dtype == np.int16:
            return a.astype(np.float32) / 32768.0
        return a.astype(np.float32).reshape(-1)

    def feed(self, pcm: np.ndarray) -> list[FaceFrames]:
        a = self._as_float(pcm)
        self._buf = np.concatenate([self._buf, a])
        self.total += len(a)
        out = []
        while self._scanned + self.win <= len(self._buf):
            w = self._buf[self._scanned:self._scanned + self.win]
            self._scanned += self.win
            silent = float(np.sqrt(np.mean(w.astype(np.float64) ** 2))) < self.threshold
            self._silent_run = self._silent_run + 1 if silent else 0
            n_windows = self._scanned // self.win
            if (n_windows >= self.min_windows and self._silent_run >= self.pause_windows) \
                    or n_windows >= self.max_windows:
                out.append(self._close_segment(self._scanned))
        return out

    def _close_segment(self, length: int, final: bool = False) -> FaceFrames:
        seg = self._buf[:length]
        s0 = self._seg_start
        local = self.maker.for_audio(seg, self.sr, start_s=s0 / self.sr).frames if len(seg) else None
        k0, k1 = frame_range(s0, s0 + length, self.sr, self.fps)
        if final:
            k1 = max(1, int(math.ceil((s0 + length) / self.sr * self.fps - 1e-6)))
        if local is None:  # nothing at all was fed since the last segment: hold the previous segment's face
            local, s0_face = self._last if self._last is not None else (np.zeros((1, 61), np.float32), s0)
        else:
            s0_face = s0
            self._last = (local, s0)
        k0 = max(k0, self._frames_done)
        frames = place_frames(local, self.fps, s0_face / self.sr, k0, max(k0, k1))
        self._frames_done = max(self._frames_done, k1)
        self._buf = self._buf[length:]
        self._seg_start += length
        self._scanned = 0
        self._silent_run = 0
        return FaceFrames(k0, frames, self.fps)

    def close(self) -> list[FaceFrames]:
        """The frames of the last (open) segment, up to ``ceil(duration * fps)`` frames in all."""
        if self.total == 0:
            return []
        return [self._close_segment(len(self._buf), final=True)]


def face_for_audio_segmented(maker: FaceMaker, audio: np.ndarray, sample_rate: int, **options: Any) -> FaceResult:
    """What :class:`AudioFaceStream` gives for ``audio`` fed in one piece (the reference for a chunked feed)."""
    stream = AudioFaceStream(maker, sample_rate, **options)
    parts = stream.feed(audio) + stream.close()
    frames = np.concatenate([p.frames for p in parts], axis=0) if parts else np.zeros((0, 61), np.float32)
    return FaceResult(frames, maker.fps, f"{maker.describe()}, per audio segment")
