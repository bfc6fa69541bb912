"""Writing converted body motion as BVH (Blender: File > Import > Motion Capture; Unreal via Blender or a BVH plugin).

The hierarchy is the 22-joint skeleton named with Unity HumanBodyBones names; OFFSETs are the T-pose
(``BodyMotion.rest``), so the rest pose is a T-pose facing +Z. Axes are HumanML3D's (right-handed, Y up, metres
times ``scale``): BVH readers expect right-handed Y-up. Channels: the root has
``Xposition Yposition Zposition Zrotation Xrotation Yrotation``, the other joints the three rotations; a joint's
rotation matrix is ``Rz @ Rx @ Ry`` (degrees), exactly the local rotation the VMC sender sends (before the Unity
mirror). Angles are unwrapped over time so curves have no ±180° jumps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bert_vits2.fileio import write_text_atomic
from motion.body.skeleton import CHILDREN, NUM_JOINTS, UNITY_BONES, BodyMotion

ROTATION_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
EULER_ORDER = "ZXY"  # scipy intrinsic order matching the channel order above


def quats_to_bvh_euler(q: np.ndarray) -> np.ndarray:
    """Quaternions [..., 4] (x, y, z, w) → BVH angles [..., 3] in degrees, in channel order (Z, X, Y)."""
    from scipy.spatial.transform import Rotation  # scipy.spatial: ~0.8 s import, only for BVH angles

    shape = q.shape[:-1]
    return Rotation.from_quat(q.reshape(-1, 4)).as_euler(EULER_ORDER, degrees=True).reshape(shape + (3,))


def bvh_euler_to_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """BVH angles [..., 3] (Z, X, Y order, degrees) → rotation matrices [..., 3, 3] (``Rz @ Rx @ Ry``)."""
    from scipy.spatial.transform import Rotation  # scipy.spatial: ~0.8 s import, only for BVH angles

    shape = angles_deg.shape[:-1]
    return Rotation.from_euler(EULER_ORDER, angles_deg.reshape(-1, 3), degrees=True).as_matrix().reshape(shape + (3, 3))


def _fmt(v: np.ndarray) -> str:
    return " ".join(f"{x:.6f}" for x in v)


def bvh_text(motion: BodyMotion, scale: float = 1.0) -> str:
    """The BVH file's text for ``motion`` (positions multiplied by ``scale``: 100 for centimetres)."""
    offsets = motion.rest.offsets * scale
    lines: list[str] = ["HIERARCHY"]

    def joint(j: int, depth: int) -> None:
        pad = "  " * depth
        if j == 0:
            lines.append(f"ROOT {UNITY_BONES[0]}")
            lines.append("{")
            lines.append(f"{pad}  OFFSET {_fmt(np.zeros(3))}")
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {' '.join(ROTATION_CHANNELS)}")
        else:
            lines.append(f"{pad}JOINT {UNITY_BONES[j]}")
            lines.append(f"{pad}{{")
            lines.append(f"{pad}  OFFSET {_fmt(offsets[j])}")
            lines.append(f"{pad}  CHANNELS 3 {' '.join(ROTATION_CHANNELS)}")
        if CHILDREN[j]:
            for c in CHILDREN[j]:
                joint(c, depth + 1)
        else:  # leaf: an end site half the incoming bone's length along it
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {_fmt(offsets[j] * 0.5)}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    joint(0, 0)
    order = _dfs_order()
    euler = quats_to_bvh_euler(motion.rotations[:, order])  # [T, 22, 3]
    euler = np.degrees(np.unwrap(np.radians(euler), axis=0))
    root = motion.root_positions * scale
    data = np.concatenate([root, euler.reshape(motion.num_frames, -1)], axis=1)
    lines += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / motion.fps:.8f}"]
    lines += [_fmt(row) for row in data]
    return "\n".join(lines) + "\n"


def _dfs_order() -> list[int]:
    """Joint indices in the order their channels appear in the file (depth first, children in index order)."""
    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for c in CHILDREN[j]:
            visit(c)

    visit(0)
    assert len(order) == NUM_JOINTS
    return order


def write_bvh(motion: BodyMotion, path: str | Path, scale: float = 1.0) -> Path:
    """Write ``motion`` to ``path`` atomically (temp file + rename); returns the path."""
    return write_text_atomic(path, bvh_text(motion, scale))


__all__ = ["EULER_ORDER", "ROTATION_CHANNELS", "bvh_euler_to_matrix", "bvh_text", "quats_to_bvh_euler", "write_bvh"]
