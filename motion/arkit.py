"""The 61 Live Link Face values and every other name order users meet.

This is the only place in the project that lists the names. Arrays of curves are always
``[T, 61]`` in Live Link *wire order* (Unreal's ``EARFaceBlendShape`` order); convert at the
edges with the helpers below.

- Wire order: 52 ARKit blendshapes (PascalCase) + head yaw/pitch/roll + left/right eye
  yaw/pitch/roll. Shapes are weights in [0, 1]; rotations are degrees / 180, in [-1, 1].
- Apple's documentation order: the 52 shapes in alphabetical camelCase (``browDownLeft`` ...).
- MediaPipe's face blendshapes: ``_neutral`` followed by Apple's order without ``tongueOut``.
- The Live Link Face app's CSV: wire order except that ``JawLeft/JawRight`` and
  ``MouthLeft/MouthRight`` are swapped (always map CSV columns by name).
- VRM "Perfect Sync": the 52 shapes in PascalCase, i.e. the wire names of the first 52 values.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

NAMES: tuple[str, ...] = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft",
    "EyeSquintLeft", "EyeWideLeft",
    "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight",
    "JawForward", "JawLeft", "JawRight", "JawOpen",
    "MouthClose", "MouthFunnel", "MouthPucker", "MouthLeft", "MouthRight",
    "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight",
    "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight",
    "MouthUpperUpLeft", "MouthUpperUpRight",
    "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight",
    "TongueOut",
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
"""The 61 values in Live Link wire order."""

NUM_VALUES = 61
NUM_BLENDSHAPES = 52
BLENDSHAPE_NAMES: tuple[str, ...] = NAMES[:NUM_BLENDSHAPES]
ROTATION_NAMES: tuple[str, ...] = NAMES[NUM_BLENDSHAPES:]
HEAD_ROTATION_NAMES: tuple[str, ...] = NAMES[52:55]
EYE_ROTATION_NAMES: tuple[str, ...] = NAMES[55:61]

INDEX: dict[str, int] = {name: i for i, name in enumerate(NAMES)}

# Shapes that are physically never negative (clamped to >= 0 on output).
NON_NEGATIVE_NAMES: tuple[str, ...] = (
    "JawForward", "JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "CheekPuff", "TongueOut",
)

# Mouth shapes that matter for lip-sync metrics.
MOUTH_NAMES: tuple[str, ...] = tuple(n for n in BLENDSHAPE_NAMES if n.startswith(("Jaw", "Mouth")))


def _camel(name: str) -> str:
    return name[0].lower() + name[1:]


# Apple ARKit documentation order: alphabetical camelCase names of the 52 shapes.
APPLE_NAMES: tuple[str, ...] = tuple(sorted(_camel(n) for n in BLENDSHAPE_NAMES))

# MediaPipe FaceLandmarker blendshape categories (52 entries: _neutral + 51, no tongueOut).
MEDIAPIPE_NAMES: tuple[str, ...] = ("_neutral",) + tuple(n for n in APPLE_NAMES if n != "tongueOut")

# VRM Perfect Sync clip names: the 52 ARKit names in PascalCase.
PERFECT_SYNC_NAMES: tuple[str, ...] = BLENDSHAPE_NAMES


def _csv_order() -> tuple[str, ...]:
    order = list(NAMES)
    for a, b in (("JawLeft", "JawRight"), ("MouthLeft", "MouthRight")):
        ia, ib = order.index(a), order.index(b)
        order[ia], order[ib] = order[ib], order[ia]
    return tuple(order)


# Column order of the Live Link Face app's CSV (after Timecode, BlendShapeCount).
CSV_NAMES: tuple[str, ...] = _csv_order()


def index_of(name: str) -> int:
    """Wire index of a value, accepting PascalCase or camelCase; raises ``KeyError`` with the valid names."""
    key = name[0].upper() + name[1:] if name else name
    if key not in INDEX:
        raise KeyError(f"unknown Live Link value {name!r}; expected one of: {', '.join(NAMES)}")
    return INDEX[key]


def reorder(frames: np.ndarray, from_names: Sequence[str], to_names: Sequence[str], fill: float = 0.0) -> np.ndarray:
    """Reorder the last axis of ``frames`` from one name list to another (matching case-insensitively).

    Names absent from ``from_names`` are filled with ``fill``; names only in ``from_names`` are dropped.
    """
    frames = np.asarray(frames)
    if frames.shape[-1] != len(from_names):
        raise ValueError(f"frames have {frames.shape[-1]} values per frame but {len(from_names)} names were given")
    lookup = {n.lower(): i for i, n in enumerate(from_names)}
    out = np.full(frames.shape[:-1] + (len(to_names),), fill, dtype=frames.dtype if frames.dtype.kind == "f" else np.float32)
    for j, name in enumerate(to_names):
        i = lookup.get(name.lower())
        if i is not None:
            out[..., j] = frames[..., i]
    return out


def to_apple(frames: np.ndarray) -> np.ndarray:
    """[..., 61] wire order → [..., 52] Apple alphabetical order."""
    return reorder(frames, NAMES, APPLE_NAMES)


def from_apple(frames: np.ndarray) -> np.ndarray:
    """[..., 52] Apple alphabetical order → [..., 61] wire order (rotations 0)."""
    return reorder(frames, APPLE_NAMES, NAMES)


def to_mediapipe(frames: np.ndarray) -> np.ndarray:
    """[..., 61] wire order → [..., 52] MediaPipe order (``_neutral`` = 0, no tongueOut)."""
    return reorder(frames, NAMES, MEDIAPIPE_NAMES)


def from_mediapipe(frames: np.ndarray) -> np.ndarray:
    """[..., 52] MediaPipe order → [..., 61] wire order (tongueOut and rotations 0)."""
    return reorder(frames, MEDIAPIPE_NAMES, NAMES)


def to_csv_order(frames: np.ndarray) -> np.ndarray:
    """[..., 61] wire order → [..., 61] Live Link Face CSV column order."""
    return reorder(frames, NAMES, CSV_NAMES)


def from_csv_order(frames: np.ndarray) -> np.ndarray:
    """[..., 61] CSV column order → [..., 61] wire order."""
    return reorder(frames, CSV_NAMES, NAMES)


def to_perfect_sync(frames: np.ndarray) -> dict[str, np.ndarray]:
    """[..., 61] wire order → ``{PerfectSyncName: values}`` for the 52 shapes (VMC ``/VMC/Ext/Blend/Val``)."""
    frames = np.asarray(frames)
    return {name: frames[..., i] for i, name in enumerate(PERFECT_SYNC_NAMES)}


def from_perfect_sync(values: dict[str, "np.ndarray | float"], num_frames: int | None = None) -> np.ndarray:
    """``{PerfectSyncName or camelCase: values}`` → [..., 61] wire order; unknown names raise ``KeyError``."""
    items = {index_of(k): np.asarray(v, dtype=np.float32) for k, v in values.items()}
    shape = np.broadcast_shapes(*(v.shape for v in items.values())) if items else (() if num_frames is None else (num_frames,))
    out = np.zeros(shape + (NUM_VALUES,), dtype=np.float32)
    for i, v in items.items():
        out[..., i] = v
    return out


def check_frames(frames: np.ndarray, what: str = "frames") -> np.ndarray:
    """Validate a ``[T, 61]`` curve array and return it as float32, or raise ``ValueError`` saying what is wrong."""
    arr = np.asarray(frames)
    if arr.ndim != 2 or arr.shape[1] != NUM_VALUES:
        raise ValueError(
            f"{what}: expected an array of shape [T, {NUM_VALUES}] (Live Link wire order), got {list(arr.shape)}"
        )
    if arr.dtype.kind != "f":  # ints, bools, complex: not curves (an int64 file is usually the wrong array)
        raise ValueError(f"{what}: holds {arr.dtype} values; face curves are real floating-point numbers (float32)")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{what}: {bad} values are NaN or infinite")
    return arr
