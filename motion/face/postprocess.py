"""Everything done to [T, 61] curves after a model or a rule set made them, in one place.

- ``resample_curves``: change the frame rate, interpolating on frame-centre times (frame i of a clip at
  ``fps`` covers [i/fps, (i+1)/fps) and is sampled at its centre).
- ``postprocess``: clamp to the valid ranges (shapes [0, 1], rotations [-1, 1]), keep the never-negative
  shapes >= 0, optionally mirror left/right pairs and inject periodic blinks.
"""

from __future__ import annotations

import numpy as np

from motion.arkit import BLENDSHAPE_NAMES, INDEX, NAMES, NON_NEGATIVE_NAMES, NUM_BLENDSHAPES, check_frames
from motion.constants import FACE_FPS as DEFAULT_FPS
from motion.frames import frame_centres, interp_frames, num_frames_for, resample_curves  # noqa: F401 - re-exported


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


def shift_frames(frames: np.ndarray, delay_s: float, fps: float = DEFAULT_FPS) -> np.ndarray:
    """Delay (positive) or advance (negative) curves by ``delay_s`` seconds, holding the edge frames."""
    if abs(delay_s) < 1e-9 or len(frames) == 0:
        return frames
    t = frame_centres(len(frames), fps)
    return interp_frames(t, frames, t - float(delay_s))


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
    "resample_curves", "shift_frames",
]
