"""Frame timing: the one place curves are resampled in time.

Every ``[T, C]`` curve array in this project is sampled at frame centres ``(i + 0.5) / fps``; resampling interpolates
linearly between those centres and holds the edge frames.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["frame_centres", "interp_frames", "num_frames_for", "resample_curves"]


def num_frames_for(duration_s: float, fps: float) -> int:
    """Frames needed so that a clip of ``duration_s`` seconds is fully covered at ``fps`` (at least one)."""
    return max(1, int(math.ceil(duration_s * fps - 1e-6)))


def frame_centres(num_frames: int, fps: float) -> np.ndarray:
    """Times (s) of the centres of ``num_frames`` frames at ``fps``."""
    return (np.arange(num_frames, dtype=np.float64) + 0.5) / float(fps)


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
