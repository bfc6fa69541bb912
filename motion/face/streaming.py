"""Faces for streams: faces attached to a voice's stream piece by piece, and audio → face of incoming PCM.

- :func:`with_faces` takes a voice's stream (``Voice.stream`` / ``DemoVoice.stream``: typed
  :class:`~bert_vits2.results.StreamChunk` s, no faces) and yields :class:`FacedChunk` s: a piece's chunks are held
  until the piece is complete (its chunk carries the piece's result), the face of that piece is computed and placed on
  the stream's 60 fps grid (:mod:`motion.frames`), and the chunks go out with their frames.
- :func:`piecewise_face` is the whole-utterance face computed the same way (piece by piece, on one frame grid): the
  face of ``synthesize`` that a stream reproduces.
- :class:`AudioFaceStream` takes PCM chunks of any size and gives face frames: the audio is cut into segments at
  pauses (or every ``max_segment_s``) by a rule that only looks at the audio on fixed 10 ms windows, so the segments,
  and therefore the frames, do not depend on how the audio was chunked; :func:`face_for_audio_segmented` is the
  same computation on a whole recording.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from bert_vits2.results import StreamChunk, SynthesisResult
from motion.face.api import FaceMaker, FaceResult
from motion.frames import frame_range, frames_on_grid, num_frames_for

__all__ = ["AudioFaceStream", "FaceFrames", "FacedChunk", "ResultFace", "face_for_audio_segmented", "face_function",
           "piecewise_face", "piecewise_frames", "with_faces"]

FaceFn = Callable[[SynthesisResult], np.ndarray]


class ResultFace:
    """``maker``'s face of one piece (``FaceMaker.for_result``) as a stream needs it: ``needs_audio`` says whether it
    waits for the piece's audio (a mel head) or is made from the piece's plan (phones, z) before the audio."""

    def __init__(self, maker: FaceMaker) -> None:
        self.maker = maker
        self.needs_audio = maker.result_needs_audio

    def __call__(self, result: Any) -> np.ndarray:
        return self.maker.for_result(result).frames


def face_function(maker: FaceMaker) -> ResultFace:
    """``SynthesisResult`` (or ``PiecePlan``) ``-> [T, 61]`` frames at ``maker.fps``, for :func:`with_faces`."""
    return ResultFace(maker)


@dataclass
class FacedChunk:
    """A stream chunk and the face frames ``face_start .. face_start + len(face) - 1`` of the stream's grid (centres
    at ``(k + 0.5) / face_fps``) whose centres lie in the chunk's audio (the last chunk: up to the end)."""

    chunk: StreamChunk
    face: np.ndarray  # [n, 61]
    face_start: int
    face_fps: float


def with_faces(chunks: Iterable[StreamChunk], face: FaceFn, fps: float) -> Iterator[FacedChunk]:
    """Attach faces to a voice's stream (see the module docstring). A face made from the piece's plan (phones or z:
    ``face.needs_audio`` false) goes out chunk by chunk with the audio, computed when the piece's first chunk comes
    (``timings["face_s"]``); a face that reads audio holds the piece's chunks until the piece is decoded."""
    try:
        if getattr(face, "needs_audio", True):
            yield from _faced(chunks, face, fps)
        else:
            yield from _faced_from_plans(chunks, face, fps)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _faced(chunks: Iterable[StreamChunk], face: FaceFn, fps: float) -> Iterator[FacedChunk]:
    pending: list[StreamChunk] = []
    done = 0  # grid frames handed out so far
    last_face: tuple[np.ndarray, int] | None = None  # the last piece's local face and its start sample
    for ch in chunks:
        if ch.last:
            total = num_frames_for(ch.start_sample / ch.sample_rate, fps) if ch.start_sample else 0
            frames = np.zeros((0, 61), np.float32)
            if last_face is not None and total > done:
                frames = frames_on_grid(last_face[0], fps, last_face[1] / ch.sample_rate, done, total)
            yield FacedChunk(ch, frames, done, float(fps))
            return
        pending.append(ch)
        if ch.piece_result is None:
            continue
        t0 = time.perf_counter()
        local = np.asarray(face(ch.piece_result), dtype=np.float32)
        face_s = time.perf_counter() - t0
        for p in pending:
            k0, k1 = frame_range(p.start_sample, p.end_sample, p.sample_rate, fps)
            k0 = max(k0, done)
            p.timings["face_s"] = face_s
            yield FacedChunk(p, frames_on_grid(local, fps, ch.piece_start / ch.sample_rate, k0, max(k0, k1)), k0,
                             float(fps))
            done = max(done, k1)
        pending.clear()
        last_face = (local, ch.piece_start)


def _faced_from_plans(chunks: Iterable[StreamChunk], face: FaceFn, fps: float) -> Iterator[FacedChunk]:
    """Each chunk with its own frames, from the face of its piece's plan (made at the piece's first chunk)."""
    done = 0
    local: tuple[np.ndarray, int] | None = None  # the current piece's face and its start sample
    for ch in chunks:
        if ch.piece_plan is not None:
            t0 = time.perf_counter()
            local = (np.asarray(face(ch.piece_plan), dtype=np.float32), ch.piece_start)
            ch.timings["face_s"] = time.perf_counter() - t0
        if ch.last:
            total = num_frames_for(ch.start_sample / ch.sample_rate, fps) if ch.start_sample else 0
            k0, k1 = done, max(done, total)
        else:
            k0, k1 = frame_range(ch.start_sample, ch.end_sample, ch.sample_rate, fps)
            k0 = max(k0, done)
        frames = np.zeros((0, 61), np.float32)
        if local is not None and k1 > k0:
            frames = frames_on_grid(local[0], fps, local[1] / ch.sample_rate, k0, k1)
        yield FacedChunk(ch, frames, k0, float(fps))
        done = max(done, k1)
        if ch.last:
            return


def piecewise_frames(result: SynthesisResult, face: FaceFn, fps: float) -> np.ndarray:
    """The face of a whole result computed piece by piece, exactly as :func:`with_faces` computes it while
    streaming: ``[ceil(duration * fps), C]`` frames."""
    sr = int(result.sample_rate)
    parts = result.split_pieces()
    total = len(result.audio)
    frames = []
    for i, (s0, sub) in enumerate(parts):
        s1 = parts[i + 1][0] if i + 1 < len(parts) else total
        k0, k1 = frame_range(s0, s1, sr, fps)
        if i + 1 == len(parts):
            k1 = num_frames_for(total / sr, fps)
        frames.append(frames_on_grid(face(sub), fps, s0 / sr, k0, k1))
    return np.concatenate(frames, axis=0)


def piecewise_face(maker: FaceMaker, result: Any) -> FaceResult:
    """The face of a whole synthesis result, piece by piece as a stream computes it."""
    frames = piecewise_frames(result, face_function(maker), maker.fps)
    return FaceResult(frames, maker.fps, f"{maker.describe_result()}, per piece")


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
            k1 = num_frames_for((s0 + length) / self.sr, self.fps)
        if local is None:  # nothing at all was fed since the last segment: hold the previous segment's face
            local, s0_face = self._last if self._last is not None else (np.zeros((1, 61), np.float32), s0)
        else:
            s0_face = s0
            self._last = (local, s0)
        k0 = max(k0, self._frames_done)
        frames = frames_on_grid(local, self.fps, s0_face / self.sr, k0, max(k0, k1))
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
