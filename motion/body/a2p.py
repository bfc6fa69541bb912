"""audio2photoreal joint-state exports → ``BodyMotion`` for the VMC sender and the BVH writer.

A modified audio2photoreal exports, per frame, the state of every joint of its 159-joint body rig as
``(x, y, z, qx, qy, qz, qw, scale)``. We read such an export, pick the 22 humanoid joints by name and convert them
to the same local, T-pose-relative rotations as HumanML3D motion (``motion.body.skeleton``), so everything downstream
(Unity conversion, VMC, BVH) is shared.

Accepted files (the loader says what is missing when a file does not fit):

- ``.npz`` with ``joint_states`` (or ``states``) ``[T, J, 8]``, ``joint_names`` (or ``names``) ``[J]`` strings, and
  optionally ``fps`` (default 30) and ``rest_states`` ``[J, 8]`` (the rig's bind pose).
- ``.json`` with the same keys (lists).

Assumptions, stated because the export's documentation is thin: positions and quaternions are global (world),
right-handed Y-up like HumanML3D, positions in ``position_scale`` units per metre (1 = metres, 100 = centimetres).
``mode="rotations"`` takes each joint's world rotation relative to the bind pose (``rest_states`` if present,
else identity) and makes it parent-relative over the humanoid hierarchy; this is right when the bind pose is a
T-pose. ``mode="positions"`` ignores the rotations and fits the T-pose skeleton to the 22 joint positions exactly
as for HumanML3D (robust to any bind pose, but without twist).

Rig joint names are matched case-insensitively ignoring ``_``/``-``/spaces, either all as Unity bone names or all
as HumanML3D/SMPL names (``L_Hip``, ``left_hip``, ...), whichever matches more; pass ``name_map`` (Unity bone →
rig joint name, e.g. from a JSON file) for other rigs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from motion.body.skeleton import (
    JOINT_NAMES,
    NUM_JOINTS,
    PARENTS,
    UNITY_BONES,
    BodyMotion,
    RestSkeleton,
    make_continuous,
    positions_to_rotations,
    quat_conj,
    quat_mul,
    quat_normalize,
    rest_skeleton,
)
from motion.constants import BODY_FPS as DEFAULT_FPS

STATE_SIZE = 8


class A2PFormatError(ValueError):
    """The export cannot be read or does not hold the humanoid joints; the message says why and what to do."""


@dataclass(frozen=True)
class A2PExport:
    names: tuple[str, ...]
    states: np.ndarray  # [T, J, 8] x y z qx qy qz qw scale
    fps: float
    rest_states: np.ndarray | None = None  # [J, 8]


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).lower()


def _candidates(j: int, convention: str) -> list[str]:
    """Names joint ``j`` may have under one naming convention ("unity" or "smpl").

    The conventions collide ("LeftFoot" is Unity's ankle but SMPL's toes), so an export is matched against one
    convention at a time.
    """
    if convention == "unity":
        return [UNITY_BONES[j]]
    smpl = JOINT_NAMES[j]
    out = [smpl]
    if smpl[:2] in ("L_", "R_"):
        side = "left" if smpl[0] == "L" else "right"
        out += [side + smpl[2:], smpl[0].lower() + smpl[2:]]
    return out


def _first(data: Mapping, keys: tuple[str, ...], path: Path):
    for k in keys:
        if k in data:
            return data[k]
    return None


def load_a2p(path: str | Path, fps: float | None = None) -> A2PExport:
    """Read an export (``.npz`` or ``.json``, see the module docstring); ``fps`` overrides the file's rate."""
    path = Path(path)
    if not path.is_file():
        raise A2PFormatError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise A2PFormatError(f"{path}: expected a JSON object with joint_names and joint_states")
        else:
            raise A2PFormatError(f"{path}: unknown audio2photoreal export format {suffix!r}; expected .npz or .json")
    except (OSError, ValueError) as err:
        if isinstance(err, A2PFormatError):
            raise
        raise A2PFormatError(f"{path}: cannot read the export ({err})") from err
    names = _first(data, ("joint_names", "names"), path)
    states = _first(data, ("joint_states", "states"), path)
    if names is None or states is None:
        raise A2PFormatError(
            f"{path}: an audio2photoreal export needs 'joint_names' [J] and 'joint_states' [T, J, 8]; "
            f"found keys: {', '.join(sorted(data)) or 'none'}"
        )
    names = tuple(str(n) for n in np.asarray(names).reshape(-1).tolist())
    try:
        states = np.asarray(states, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise A2PFormatError(f"{path}: joint_states is not a numeric array ({err})") from err
    if states.ndim != 3 or states.shape[1:] != (len(names), STATE_SIZE) or states.shape[0] == 0:
        raise A2PFormatError(
            f"{path}: joint_states must be [T, {len(names)}, {STATE_SIZE}] (x y z qx qy qz qw scale per joint, "
            f"one per name), got {list(states.shape)}"
        )
    if not np.isfinite(states).all():
        raise A2PFormatError(f"{path}: joint_states holds NaN or infinite values")
    rest = data.get("rest_states")
    if rest is not None:
        rest = np.asarray(rest, dtype=np.float64)
        if rest.shape != (len(names), STATE_SIZE):
            raise A2PFormatError(f"{path}: rest_states must be [{len(names)}, {STATE_SIZE}], got {list(rest.shape)}")
    file_fps = data.get("fps")
    rate = float(fps if fps is not None else (np.asarray(file_fps).item() if file_fps is not None else DEFAULT_FPS))
    if rate <= 0:
        raise A2PFormatError(f"{path}: frame rate must be positive, got {rate}")
    return A2PExport(names=names, states=states, fps=rate, rest_states=rest)


def pick_bones(names: tuple[str, ...], name_map: Mapping[str, str] | None = None) -> np.ndarray:
    """Indices [22] into ``names`` of the humanoid joints (HumanML3D order); raises listing what is missing."""
    lookup = {_key(n): i for i, n in enumerate(names)}
    name_map = dict(name_map or {})
    unknown = [k for k in name_map if k not in UNITY_BONES]
    if unknown:
        raise A2PFormatError(f"name map: unknown Unity bones {unknown}; use: {', '.join(UNITY_BONES)}")
    best: tuple[list, list] | None = None
    for convention in ("unity", "smpl"):
        picked, missing = [], []
        for j in range(NUM_JOINTS):
            wanted = [name_map[UNITY_BONES[j]]] if UNITY_BONES[j] in name_map else _candidates(j, convention)
            idx = next((lookup[_key(w)] for w in wanted if _key(w) in lookup), None)
            if idx is None:
                missing.append(f"{UNITY_BONES[j]} (tried {', '.join(wanted)})")
            picked.append(idx)
        if best is None or len(missing) < len(best[1]):
            best = (picked, missing)
    picked, missing = best
    if missing:
        shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
        raise A2PFormatError(
            f"the export lacks {len(missing)} humanoid joints: {'; '.join(missing)}. Its joints: {shown}. "
            "Pass a name map (JSON: {\"Hips\": \"<rig joint>\", ...}) to say which rig joint is which bone."
        )
    return np.asarray(picked)


def a2p_to_motion(
    export: A2PExport,
    name_map: Mapping[str, str] | None = None,
    mode: str = "rotations",
    position_scale: float = 1.0,
) -> BodyMotion:
    """Convert an export to local T-pose-relative rotations on the HumanML3D skeleton (see the module docstring)."""
    idx = pick_bones(export.names, name_map)
    states = export.states[:, idx]
    positions = states[..., :3] / position_scale
    if mode == "positions":
        return positions_to_rotations(positions, fps=export.fps)
    if mode != "rotations":
        raise ValueError(f"mode must be 'rotations' or 'positions', got {mode!r}")
    quats = states[..., 3:7]
    norms = np.linalg.norm(quats, axis=-1)
    if np.any(norms < 1e-6):
        raise A2PFormatError("joint_states holds zero quaternions (columns 3-6 must be qx qy qz qw)")
    world = quat_normalize(quats)
    if export.rest_states is not None:
        rest_q = quat_normalize(export.rest_states[idx, 3:7])
        world = quat_mul(world, quat_conj(rest_q)[None])  # world delta from the bind pose
        offsets = export.rest_states[idx, :3] / position_scale
        offsets = offsets - np.where(np.asarray(PARENTS)[:, None] >= 0, offsets[list(np.maximum(PARENTS, 0))], 0.0)
        rest = RestSkeleton(offsets)
    else:
        rest = rest_skeleton(positions)
    parent_world = world[:, list(np.maximum(PARENTS, 0))]
    local = quat_mul(quat_conj(parent_world), world)
    local[:, 0] = world[:, 0]
    return BodyMotion(
        rotations=make_continuous(local), root_positions=positions[:, 0].copy(), rest=rest, fps=export.fps
    )


def load_name_map(path: str | Path) -> dict[str, str]:
    """Read a JSON object ``{UnityBone: rig joint name}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise A2PFormatError(f"{path}: cannot read the name map ({err})") from err
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise A2PFormatError(f"{path}: the name map must be a JSON object of strings {{\"Hips\": \"pelvis\", ...}}")
    return data


__all__ = ["A2PExport", "A2PFormatError", "a2p_to_motion", "load_a2p", "load_name_map", "pick_bones"]
