"""The HumanML3D 22-joint skeleton, its T-pose, and joint positions → per-joint local rotations.

Conventions (one place for all of them):

- Quaternions are ``(x, y, z, w)`` arrays (VMC's order), unit length, acting on column vectors.
- HumanML3D / MotionGPT positions are metres, right-handed, Y up, the character facing +Z with its left at +X
  (checked against the real data in tests/test_skeleton.py, not taken from a label list).
- A bone (parent joint → child joint) turns with its **parent** joint: joint ``j``'s global rotation ``G[j]`` maps
  the rest offset of each child ``c`` onto the observed bone: ``p[c] - p[j] = G[j] @ rest.offsets[c]``.
  Local rotations are relative to the parent joint's global rotation, ``G[j] = G[parent[j]] ⊗ L[j]``, and are
  identity in the T-pose (what VMC receivers and VRM "normalized" bones expect).
- Joints with one child get the minimal (swing) rotation *in the parent's frame* from the rest direction to the
  observed one (positions carry no twist). Joints with several children (Pelvis, Spine3) get the best-fit rotation
  of all their child offsets (Kabsch); in HumanML3D those offsets are rigid, so this is exact too. Leaf joints
  (toes, head, wrists) have no bone to measure and keep the identity local rotation.
- Unity / VMC is left-handed Y up: convert by mirroring X, i.e. positions ``(x, y, z) → (-x, y, z)`` and
  quaternions ``(x, y, z, w) → (x, -y, -z, w)`` (``to_unity_positions`` / ``to_unity_quats``). The character then
  faces +Z with its left at -X, which is Unity's humanoid convention.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np

from motion.frames import num_frames_for

SOURCE_FPS = 20.0
"""HumanML3D and MotionGPT motion is sampled at 20 frames per second."""

JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle", "Spine3",
    "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
    "L_Wrist", "R_Wrist",
)
NUM_JOINTS = 22
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

CHAINS: dict[str, tuple[int, ...]] = {
    "right_leg": (0, 2, 5, 8, 11),
    "left_leg": (0, 1, 4, 7, 10),
    "spine": (0, 3, 6, 9, 12, 15),
    "right_arm": (9, 14, 17, 19, 21),
    "left_arm": (9, 13, 16, 18, 20),
}

# Unity HumanBodyBones name of each joint (VMC / VRM), index-aligned with JOINT_NAMES.
UNITY_BONES: tuple[str, ...] = (
    "Hips", "LeftUpperLeg", "RightUpperLeg", "Spine", "LeftLowerLeg", "RightLowerLeg", "Chest", "LeftFoot",
    "RightFoot", "UpperChest", "LeftToes", "RightToes", "Neck", "LeftShoulder", "RightShoulder", "Head",
    "LeftUpperArm", "RightUpperArm", "LeftLowerArm", "RightLowerArm", "LeftHand", "RightHand",
)
JOINT_INDEX: dict[str, int] = {n: i for i, n in enumerate(JOINT_NAMES)}
BONE_INDEX: dict[str, int] = {n: i for i, n in enumerate(UNITY_BONES)}
LEFT_JOINTS: tuple[int, ...] = tuple(i for i, n in enumerate(JOINT_NAMES) if n.startswith("L_"))
RIGHT_JOINTS: tuple[int, ...] = tuple(JOINT_INDEX["R_" + JOINT_NAMES[i][2:]] for i in LEFT_JOINTS)


def _children() -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(c for c in range(NUM_JOINTS) if PARENTS[c] == j) for j in range(NUM_JOINTS))


CHILDREN: tuple[tuple[int, ...], ...] = _children()

# T-pose direction of each bone (parent → this joint), right-handed Y up, facing +Z, left at +X.
# Bones hanging from Pelvis and Spine3 are not listed: their rest offsets are taken from the data (rigid sets).
_FOOT = np.array([0.0, -0.42, 1.0]) / np.linalg.norm([0.0, -0.42, 1.0])  # ankle → toes: forward, ~23° down
_REST_DIRECTIONS: dict[int, tuple[float, float, float]] = {
    4: (0, -1, 0), 5: (0, -1, 0), 7: (0, -1, 0), 8: (0, -1, 0),
    10: tuple(_FOOT), 11: tuple(_FOOT),
    6: (0, 1, 0), 9: (0, 1, 0), 15: (0, 1, 0),
    16: (1, 0, 0), 18: (1, 0, 0), 20: (1, 0, 0),
    17: (-1, 0, 0), 19: (-1, 0, 0), 21: (-1, 0, 0),
}
# Joints with several children: (joint, left child, right child) spanning the frame's X axis; Y from the first child.
_RIGID_SETS: dict[int, tuple[int, int, tuple[int, ...]]] = {0: (1, 2, (3, 1, 2)), 9: (13, 14, (12, 13, 14))}


class MotionFormatError(ValueError):
    """Input motion has the wrong shape or bad values; the message says what was expected."""


# ---------------------------------------------------------------------------------------------------------------
# Quaternions (x, y, z, w), vectorised over leading axes.


def quat_identity(shape: tuple[int, ...] = ()) -> np.ndarray:
    q = np.zeros(tuple(shape) + (4,), dtype=np.float64)
    q[..., 3] = 1.0
    return q


def quat_normalize(q: np.ndarray) -> np.ndarray:
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_conj(q: np.ndarray) -> np.ndarray:
    """Inverse of a unit quaternion."""
    return np.concatenate([-q[..., :3], q[..., 3:]], axis=-1)


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a ⊗ b`` (apply ``b`` first, then ``a``)."""
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` [..., 3] by unit quaternions ``q`` [..., 4]."""
    u = q[..., :3]
    t = 2.0 * np.cross(u, v)
    return v + q[..., 3:] * t + np.cross(u, t)


def quat_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The minimal rotation (swing) taking direction ``u`` to direction ``v`` (any lengths, > 0)."""
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    u, v = np.broadcast_arrays(u, v)
    w = 1.0 + np.sum(u * v, axis=-1, keepdims=True)
    q = np.concatenate([np.cross(u, v), w], axis=-1)
    opposite = w[..., 0] < 1e-9
    if np.any(opposite):  # 180°: any axis perpendicular to u
        uo = u[opposite]
        axis = np.cross(uo, np.array([1.0, 0.0, 0.0]))
        small = np.linalg.norm(axis, axis=-1) < 1e-6
        axis[small] = np.cross(uo[small], np.array([0.0, 1.0, 0.0]))
        q[opposite] = np.concatenate([axis, np.zeros(axis.shape[:-1] + (1,))], axis=-1)
    return quat_normalize(q)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    ).reshape(q.shape[:-1] + (3, 3))


def quat_from_matrix(m: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation  # scipy.spatial: ~0.8 s import; vmc_cli --help needs none

    shape = m.shape[:-2]
    return Rotation.from_matrix(m.reshape(-1, 3, 3)).as_quat().reshape(shape + (4,))


def quat_angle(q: np.ndarray) -> np.ndarray:
    """Rotation angle in radians, in [0, π]."""
    return 2.0 * np.arctan2(np.linalg.norm(q[..., :3], axis=-1), np.abs(q[..., 3]))


def quat_slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation from ``a`` (t=0) to ``b`` (t=1) along the shorter arc; ``t`` broadcasts."""
    t = np.asarray(t, dtype=np.float64)
    if t.ndim:
        t = t[..., None]
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    theta = np.arccos(dot)
    sin = np.sin(theta)
    near = sin < 1e-6
    safe = np.where(near, 1.0, sin)
    wa = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    wb = np.where(near, t, np.sin(t * theta) / safe)
    return quat_normalize(wa * a + wb * b)


def quat_scale_angle(q: np.ndarray, factor: np.ndarray | float) -> np.ndarray:
    """Scale each rotation's angle by ``factor`` about the same axis (slerp from identity)."""
    return quat_slerp(quat_identity(q.shape[:-1]), q, factor)


# ---------------------------------------------------------------------------------------------------------------
# Input validation.


def check_joints(joints: np.ndarray, what: str = "motion") -> np.ndarray:
    """Validate HumanML3D positions (``[T, 22, 3]`` or MotionGPT's ``[1, T, 22, 3]``) → float64 ``[T, 22, 3]``."""
    arr = np.asarray(joints)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3):
        raise MotionFormatError(
            f"{what}: expected HumanML3D joint positions of shape [T, 22, 3] or [1, T, 22, 3], "
            f"got {list(np.shape(joints))}"
        )
    if arr.shape[0] == 0:
        raise MotionFormatError(f"{what}: the motion has no frames")
    if arr.dtype.kind not in "fiu":
        raise MotionFormatError(f"{what}: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr).all(axis=(1, 2)))[:, 0]
        raise MotionFormatError(
            f"{what}: {len(bad)} frames hold NaN or infinite positions (first: frame {bad[0]}); fix or trim the file"
        )
    return arr


# ---------------------------------------------------------------------------------------------------------------
# Skeleton and motion.


@dataclass(frozen=True)
class RestSkeleton:
    """T-pose: ``offsets[j]`` is joint j's position relative to its parent (``offsets[0]``: pelvis above the floor)."""

    offsets: np.ndarray  # [22, 3], metres, HumanML3D axes

    def positions(self) -> np.ndarray:
        """Rest (T-pose) joint positions [22, 3]."""
        pos = np.zeros((NUM_JOINTS, 3))
        for j in range(NUM_JOINTS):
            pos[j] = self.offsets[j] + (pos[PARENTS[j]] if PARENTS[j] >= 0 else 0.0)
        return pos


def facing_direction(joints: np.ndarray) -> np.ndarray:
    """Per-frame unit forward direction on the floor [T, 3], from the feet alone (ankle → toes, both feet).

    Independent of which side is called left, so it can check the left/right labels.
    """
    j = check_joints(joints)
    fwd = (j[:, 10] - j[:, 7]) + (j[:, 11] - j[:, 8])
    fwd[:, 1] = 0.0
    return fwd / np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-9)


def body_forward(joints: np.ndarray) -> np.ndarray:
    """Per-frame unit forward direction on the floor [T, 3] from the hip and shoulder lines (left x up = forward)."""
    j = check_joints(joints)
    left = (j[:, JOINT_INDEX["L_Hip"]] - j[:, JOINT_INDEX["R_Hip"]]) + (
        j[:, JOINT_INDEX["L_Shoulder"]] - j[:, JOINT_INDEX["R_Shoulder"]]
    )
    fwd = np.cross(left, np.array([0.0, 1.0, 0.0]))
    fwd[:, 1] = 0.0
    return fwd / np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-9)


def join_clips(clips: list[np.ndarray], align: bool = True) -> np.ndarray:
    """Concatenate joint-position clips; with ``align`` each clip is turned about Y and moved on the floor so it
    starts where and facing how the previous one ended (MotionGPT clips all start at the origin facing +Z)."""
    out = [check_joints(c, f"clip {k}") for k, c in enumerate(clips)]
    if not out:
        raise MotionFormatError("no motion clips to join")
    if align:
        for k in range(1, len(out)):
            prev, cur = out[k - 1], out[k]
            a, b = body_forward(cur[:1])[0], body_forward(prev[-1:])[0]
            yaw = np.arctan2(a[2] * b[0] - a[0] * b[2], a[0] * b[0] + a[2] * b[2])  # about +Y, from a to b
            c, s = np.cos(yaw), np.sin(yaw)
            rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
            pivot = cur[0, 0] * np.array([1.0, 0.0, 1.0])
            target = prev[-1, 0] * np.array([1.0, 0.0, 1.0])
            out[k] = (cur - pivot) @ rot.T + target
    return np.concatenate(out, axis=0)


def _rigid_frame(j: np.ndarray, centre: int, left: int, right: int, first: int) -> np.ndarray:
    """Orthonormal frames [T, 3, 3] (columns x=left→, y=up-ish, z=forward) of a rigid joint set."""
    x = j[:, left] - j[:, right]
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    s = j[:, first] - j[:, centre]
    y = s - np.sum(s * x, axis=-1, keepdims=True) * x
    y /= np.linalg.norm(y, axis=-1, keepdims=True)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def rest_skeleton(joints: np.ndarray) -> RestSkeleton:
    """A T-pose for this motion: its own (median) bone lengths along the canonical T-pose directions.

    The bones hanging from Pelvis and Spine3 keep the shape they have in the data (measured in a frame spanned
    by the left-right line and the first child), so the Kabsch fit reproduces them.
    """
    j = check_joints(joints)
    offsets = np.zeros((NUM_JOINTS, 3))
    offsets[0] = [0.0, float(np.median(j[:, 0, 1])), 0.0]
    lengths = np.median(np.linalg.norm(j[:, 1:] - j[:, list(PARENTS[1:])], axis=-1), axis=0)
    for c, d in _REST_DIRECTIONS.items():
        offsets[c] = np.asarray(d) * lengths[c - 1]
    for centre, (left, right, kids) in _RIGID_SETS.items():
        frame = _rigid_frame(j, centre, left, right, kids[0])
        for k in kids:
            local = np.einsum("tji,tj->ti", frame, j[:, k] - j[:, centre])  # frame^T @ offset
            offsets[k] = np.median(local, axis=0)
    return RestSkeleton(offsets)


@dataclass(frozen=True)
class BodyMotion:
    """Local joint rotations relative to the T-pose plus the pelvis trajectory, at ``fps``."""

    rotations: np.ndarray  # [T, 22, 4] local (parent-relative) quaternions, HumanML3D axes
    root_positions: np.ndarray  # [T, 3] pelvis position, metres, HumanML3D axes
    rest: RestSkeleton
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotations R [T, 3, 3] minimising sum |R @ src_k - dst_tk|^2; src [K, 3], dst [T, K, 3]."""
    h = np.einsum("ki,tkj->tij", src, dst)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("tij,tjk->tik", u, vt).transpose(0, 2, 1)))
    diag = np.ones(u.shape[:-1])
    diag[:, -1] = d
    return np.einsum("tji,tj,tkj->tik", vt, diag, u)


def smooth_positions(joints: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` frames (odd; edges padded with the edge frame)."""
    if window <= 1:
        return joints
    if window % 2 == 0:
        raise ValueError(f"the smoothing window must be odd, got {window}")
    half = window // 2
    padded = np.concatenate([np.repeat(joints[:1], half, 0), joints, np.repeat(joints[-1:], half, 0)], axis=0)
    csum = np.cumsum(np.concatenate([np.zeros_like(joints[:1]), padded], axis=0), axis=0)
    return (csum[window:] - csum[:-window]) / window


def _damping_array(damping: Mapping[str, float] | None) -> np.ndarray | None:
    if not damping:
        return None
    factors = np.ones(NUM_JOINTS)
    for name, f in damping.items():
        if name in BONE_INDEX:
            factors[BONE_INDEX[name]] = f
        elif name in JOINT_INDEX:
            factors[JOINT_INDEX[name]] = f
        else:
            raise KeyError(f"unknown bone {name!r} in damping; use Unity names: {', '.join(UNITY_BONES)}")
    return factors


def positions_to_rotations(
    joints: np.ndarray,
    fps: float = SOURCE_FPS,
    rest: RestSkeleton | None = None,
    damping: Mapping[str, float] | None = None,
    smooth: int = 1,
) -> BodyMotion:
    """HumanML3D joint positions → local rotations (see the module docstring for the method).

    ``damping`` scales the angle of chosen joints' local rotations (``{"LeftUpperArm": 0.8}``; Unity or
    HumanML3D names); ``smooth`` is an odd moving-average window applied to the positions first (1 = off).
    The loop runs over the 22 joints only; every step is vectorised over frames.
    """
    j = smooth_positions(check_joints(joints), smooth)
    rest = rest or rest_skeleton(j)
    t = j.shape[0]
    local = quat_identity((t, NUM_JOINTS))
    glob = quat_identity((t, NUM_JOINTS))
    for jt in range(NUM_JOINTS):
        parent = PARENTS[jt]
        parent_glob = glob[:, parent] if parent >= 0 else quat_identity((t,))
        kids = CHILDREN[jt]
        if len(kids) == 1:
            observed = quat_rotate(quat_conj(parent_glob), j[:, kids[0]] - j[:, jt])
            local[:, jt] = quat_between(rest.offsets[kids[0]], observed)
        elif kids:
            observed = quat_rotate(quat_conj(parent_glob)[:, None], j[:, list(kids)] - j[:, jt, None])
            local[:, jt] = quat_from_matrix(_kabsch(rest.offsets[list(kids)], observed))
        glob[:, jt] = quat_mul(parent_glob, local[:, jt]) if parent >= 0 else local[:, jt]
    motion = BodyMotion(rotations=make_continuous(local), root_positions=j[:, 0].copy(), rest=rest, fps=float(fps))
    return apply_damping(motion, damping)


def apply_damping(motion: BodyMotion, damping: Mapping[str, float] | None) -> BodyMotion:
    """Scale chosen joints' local rotation angles (``{"LeftUpperArm": 0.8}``, Unity or HumanML3D names)."""
    factors = _damping_array(damping)
    if factors is None:
        return motion
    factors = np.broadcast_to(factors, motion.rotations.shape[:-1])
    return replace(motion, rotations=make_continuous(quat_scale_angle(motion.rotations, factors)))


def make_continuous(q: np.ndarray) -> np.ndarray:
    """Flip signs so consecutive frames' quaternions lie in the same hemisphere (same rotations)."""
    dots = np.sum(q[1:] * q[:-1], axis=-1)
    flips = np.cumsum(dots < 0, axis=0) % 2
    out = q.copy()
    out[1:][flips.astype(bool)] *= -1
    return out


def forward_kinematics(motion: BodyMotion) -> tuple[np.ndarray, np.ndarray]:
    """Apply the local rotations to the rest skeleton → (positions [T, 22, 3], global rotations [T, 22, 4])."""
    t = motion.num_frames
    glob = np.empty((t, NUM_JOINTS, 4))
    pos = np.empty((t, NUM_JOINTS, 3))
    glob[:, 0] = motion.rotations[:, 0]
    pos[:, 0] = motion.root_positions
    for jt in range(1, NUM_JOINTS):
        p = PARENTS[jt]
        glob[:, jt] = quat_mul(glob[:, p], motion.rotations[:, jt])
        pos[:, jt] = pos[:, p] + quat_rotate(glob[:, p], np.broadcast_to(motion.rest.offsets[jt], (t, 3)))
    return pos, glob


def resample_motion(motion: BodyMotion, dst_fps: float, num_frames: int | None = None) -> BodyMotion:
    """Change the frame rate: slerp the rotations, lerp the root, sampling at frame centres.

    Frame i of a clip at ``fps`` covers [i/fps, (i+1)/fps) and is sampled at its centre (as
    ``motion.frames.resample_curves`` does for face curves), so 20 → 30 fps keeps the clip's duration.
    """
    if dst_fps <= 0:
        raise ValueError(f"the frame rate must be positive, got {dst_fps}")
    src_fps, t_src = motion.fps, motion.num_frames
    if num_frames is None:
        num_frames = num_frames_for(t_src / src_fps, dst_fps)
    if src_fps == dst_fps and num_frames == t_src:
        return motion
    src_t = (np.arange(t_src) + 0.5) / src_fps
    dst_t = (np.arange(num_frames) + 0.5) / dst_fps
    pos = np.interp(dst_t, src_t, np.arange(t_src, dtype=np.float64))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t_src - 1)
    w = pos - lo
    rot = quat_slerp(motion.rotations[lo], motion.rotations[hi], np.broadcast_to(w[:, None], (num_frames, NUM_JOINTS)))
    root = motion.root_positions[lo] * (1.0 - w[:, None]) + motion.root_positions[hi] * w[:, None]
    return replace(motion, rotations=rot, root_positions=root, fps=float(dst_fps))


def concat_motions(motions: list[BodyMotion]) -> BodyMotion:
    """Join clips (same rest skeleton and fps as the first) end to end."""
    if not motions:
        raise ValueError("no motions to join")
    first = motions[0]
    for m in motions[1:]:
        if m.fps != first.fps:
            raise ValueError(f"cannot join motions at {first.fps} and {m.fps} fps; resample first")
    return replace(
        first,
        rotations=make_continuous(np.concatenate([m.rotations for m in motions], axis=0)),
        root_positions=np.concatenate([m.root_positions for m in motions], axis=0),
    )


# ---------------------------------------------------------------------------------------------------------------
# Unity (VMC) coordinates.


def to_unity_positions(p: np.ndarray) -> np.ndarray:
    """Right-handed Y-up → Unity's left-handed Y-up: mirror X."""
    out = np.array(p, dtype=np.float64, copy=True)
    out[..., 0] *= -1.0
    return out


def to_unity_quats(q: np.ndarray) -> np.ndarray:
    """The same X mirror for rotations: ``(x, y, z, w) → (x, -y, -z, w)`` (axis is a pseudovector)."""
    out = np.array(q, dtype=np.float64, copy=True)
    out[..., 1:3] *= -1.0
    return out


__all__ = [
    "apply_damping", "body_forward", "join_clips", "BodyMotion", "BONE_INDEX", "CHAINS", "check_joints", "CHILDREN", "concat_motions",
    "facing_direction", "forward_kinematics", "JOINT_INDEX", "JOINT_NAMES", "LEFT_JOINTS", "make_continuous",
    "MotionFormatError", "NUM_JOINTS", "PARENTS", "positions_to_rotations", "quat_angle", "quat_between",
    "quat_conj", "quat_from_matrix", "quat_identity", "quat_mul", "quat_rotate", "quat_scale_angle", "quat_slerp",
    "quat_to_matrix", "resample_motion", "rest_skeleton", "RestSkeleton", "RIGHT_JOINTS", "smooth_positions",
    "SOURCE_FPS", "to_unity_positions", "to_unity_quats", "UNITY_BONES",
]
