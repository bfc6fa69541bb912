"""Frame timing: the one place curves are resampled in time.

Every ``[T, C]`` curve array in this project is sampled at frame centres ``(i + 0.5) / fps``; resampling interpolates
linearly between those centres and holds the edge frames.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["frame_centres", "frame_range", "frames_on_grid", "interp_frames", "num_frames_for", "resample_curves"]


def num_frames_for(duration_s: float, fps: float) -> int:
    """Frames needed so that a clip of ``duration_s`` seconds is fully covered at ``fps`` (at least one)."""
    return max(1, int(math.ceil(duration_s * fps - 1e-6)))


def frame_centres(num_frames: int, fps: float) -> np.ndarray:
    """Times (s) of the centres of ``num_frames`` frames at ``fps``."""
    return (np.arange(num_frames, dtype=np.float64) + 0.5) / float(fps)


def frame_range(start_sample: int, end_sample: int, sample_rate: int, fps: float) -> tuple[int, int]:
    """Indices ``[k0, k1)`` of the frames whose centre ``(k + 0.5) / fps`` lies in the sample span (a frame belongs
    to the chunk or segment of audio that holds its centre)."""
    def first_at_or_after(sample: int) -> int:
        return max(0, int(math.ceil(sample * fps / sample_rate - 0.5 - 1e-9)))

    return first_at_or_after(start_sample), first_at_or_after(end_sample)


def frames_on_grid(local: np.ndarray, fps: float, offset_s: float, k0: int, k1: int) -> np.ndarray:
    """Frames ``k0..k1-1`` of a stream's grid from ``local`` curves of a part that starts at ``offset_s``.

    ``local`` is sampled at the part's own frame centres ``offset_s + (j + 0.5) / fps``; the grid's frames are
    interpolated from them (edges held)."""
    local = np.asarray(local, dtype=np.float32)
    width = local.shape[1] if local.ndim == 2 else 0
    if k1 <= k0:
        return np.zeros((0, width), dtype=np.float32)
    src = frame_centres(len(local), fps) + float(offset_s)
    return interp_frames(src, local, (np.arange(k0, k1, dtype=np.float64) + 0.5) / float(fps))


def interp_frames(src_times: np.ndarray, frames: np.ndarray, dst_times: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``frames [T, C]`` sampled at increasing ``src_times`` onto ``dst_times`` (edges held)."""
    frames = np.asarray(frames, dtype=np.float32)
    src_times = np.asarray(src_times, dtype=np.float64)
    n_src = frames.shape[0]
    if n_src == 0:
        return np.zeros((len(dst_times), frames.shape[1]), dtype=np.float32)
    pos = np.interp(np.asarray(dst_times, dtype=np.float64), src_times, np.arange(n_src, dtype=np.float64))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_src - 1)
    w = (pos - lo).astype(np.float32)[:, None]
    return frames[lo] * (1.0 - w) + frames[hi] * w


def resample_curves(frames: np.ndarray, src_fps: float, dst_fps: float, num_frames: int | None = None) -> np.ndarray:
    """Resample ``[T, C]`` curves from ``src_fps`` to ``dst_fps`` at frame centres.

    ``num_frames`` defaults to the count that covers the same duration (``T / src_fps`` seconds).
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2:
        raise ValueError(f"expected curves of shape [T, C], got {list(frames.shape)}")
    if not (math.isfinite(src_fps) and math.isfinite(dst_fps)) or src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"frame rates must be positive numbers (got {src_fps} -> {dst_fps})")
    if num_frames is None:
        num_frames = num_frames_for(frames.shape[0] / src_fps, dst_fps)
    if frames.shape[0] == num_frames and src_fps == dst_fps:
        return frames.copy()
    return interp_frames(frame_centres(frames.shape[0], src_fps), frames, frame_centres(num_frames, dst_fps))
