"""Everything done to [T, 61] curves after a model or a rule set made them, in one place.

- ``resample_curves``: change the frame rate, interpolating on frame-centre times (frame i of a clip at
  ``fps`` covers [i/fps, (i+1)/fps) and is sampled at its centre).
- ``postprocess``: clamp to the valid ranges (shapes [0, 1], rotations [-1, 1]), keep the never-negative
  shapes >= 0, optionally mirror left/right pairs and inject periodic blinks.
"""

from __future__ import annotations

import math

import numpy as np

from motion.arkit import BLENDSHAPE_NAMES, INDEX, NAMES, NON_NEGATIVE_NAMES, NUM_BLENDSHAPES, check_frames

DEFAULT_FPS = 60.0


def num_frames_for(duration_s: float, fps: float) -> int:
    """Frames needed so that a clip of ``duration_s`` seconds is fully covered at ``fps``."""
    return max(1, int(math.ceil(duration_s * fps - 1e-6)))


def resample_curves(frames: np.ndarray, src_fps: float, dst_fps: float, num_frames: int | None = None) -> np.ndarray:
    """Resample ``[T, C]`` curves from ``src_fps`` to ``dst_fps`` by linear interpolation at frame centres.

    ``num_frames`` defaults to the count that covers the same duration (``T / src_fps`` seconds). Values before the
    first / after the last source centre hold the edge frame.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2:
        raise ValueError(f"expected curves of shape [T, C], got {list(frames.shape)}")
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"frame rates must be positive (got {src_fps} -> {dst_fps})")
    t_src = frames.shape[0]
    if num_frames is None:
        num_frames = num_frames_for(t_src / src_fps, dst_fps)
    if t_src == 0:
        return np.zeros((num_frames, frames.shape[1]), dtype=np.float32)
    if t_src == num_frames and src_fps == dst_fps:
        return frames.copy()
    src_t = (np.arange(t_src) + 0.5) / src_fps
    dst_t = (np.arange(num_frames) + 0.5) / dst_fps
    pos = np.interp(dst_t, src_t, np.arange(t_src, dtype=np.float64))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t_src - 1)
    w = (pos - lo).astype(np.float32)[:, None]
    return frames[lo] * (1.0 - w) + frames[hi] * w


def _mirror_pairs() -> list[tuple[int, int]]:
    pairs = []
    for name in BLENDSHAPE_NAMES:
        if name.endswith("Left"):
            other = name[: -len("Left")] + "Right"
            if other in INDEX:
                pairs.append((INDEX[name], INDEX[other]))
    return pairs


MIRROR_PAIRS: tuple[tuple[int, int], ...] = tuple(_mirror_pairs())
_NON_NEGATIVE = np.array([INDEX[n] for n in NON_NEGATIVE_NAMES])


def clamp(frames: np.ndarray) -> np.ndarray:
    """Shapes to [0, 1], head/eye rotations to [-1, 1] (degrees / 180)."""
    out = np.array(frames, dtype=np.float32, copy=True)
    out[:, :NUM_BLENDSHAPES] = np.clip(out[:, :NUM_BLENDSHAPES], 0.0, 1.0)
    out[:, NUM_BLENDSHAPES:] = np.clip(out[:, NUM_BLENDSHAPES:], -1.0, 1.0)
    out[:, _NON_NEGATIVE] = np.maximum(out[:, _NON_NEGATIVE], 0.0)
    return out


def mirror(frames: np.ndarray) -> np.ndarray:
    """Set each left/right shape pair to the pair's maximum (symmetric face)."""
    out = np.array(frames, dtype=np.float32, copy=True)
    for a, b in MIRROR_PAIRS:
        m = np.maximum(out[:, a], out[:, b])
        out[:, a] = m
        out[:, b] = m
    return out


def add_blinks(
    frames: np.ndarray,
    fps: float,
    interval_s: float = 4.0,
    duration_s: float = 0.15,
    jitter_s: float = 1.5,
    seed: int | None = 0,
) -> np.ndarray:
    """Inject blinks (a triangular ramp up and down on both EyeBlink shapes) every ``interval_s`` ± ``jitter_s``.

    Existing blink values are kept where they are larger, so a tracked blink is never weakened.
    """
    out = np.array(frames, dtype=np.float32, copy=True)
    rng = np.random.default_rng(seed)
    n = out.shape[0]
    half = max(1, int(round(duration_s * fps / 2)))
    t = interval_s * 0.5
    left, right = INDEX["EyeBlinkLeft"], INDEX["EyeBlinkRight"]
    while True:
        centre = int(round(t * fps))
        if centre >= n:
            break
        for k in range(-half, half + 1):
            i = centre + k
            if 0 <= i < n:
                v = 1.0 - abs(k) / (half + 1)
                out[i, left] = max(out[i, left], v)
                out[i, right] = max(out[i, right], v)
        t += interval_s + (rng.uniform(-jitter_s, jitter_s) if jitter_s > 0 else 0.0)
    return out


def postprocess(
    frames: np.ndarray,
    fps: float = DEFAULT_FPS,
    *,
    do_mirror: bool = False,
    blink: bool = False,
    zero_rotations: bool = False,
) -> np.ndarray:
    """The standard output chain: validate, optional mirror / blinks / zeroed head+eye rotations, then clamp."""
    out = check_frames(frames)
    if do_mirror:
        out = mirror(out)
    if blink:
        out = add_blinks(out, fps)
    if zero_rotations:
        out = out.copy()
        out[:, NUM_BLENDSHAPES:] = 0.0
    return clamp(out)


__all__ = [
    "DEFAULT_FPS", "MIRROR_PAIRS", "NAMES", "add_blinks", "clamp", "mirror", "num_frames_for", "postprocess",
    "resample_curves",
]
