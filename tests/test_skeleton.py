"""Skeleton, positions → rotations, Unity conversion, resampling, audio2photoreal exports (real HumanML3D data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from motion.body.a2p import A2PFormatError, a2p_to_motion, load_a2p
from motion.body.skeleton import (
    BONE_INDEX,
    CHILDREN,
    JOINT_NAMES,
    LEFT_JOINTS,
    NUM_JOINTS,
    PARENTS,
    RIGHT_JOINTS,
    UNITY_BONES,
    BodyMotion,
    MotionFormatError,
    body_forward,
    check_joints,
    facing_direction,
    forward_kinematics,
    join_clips,
    positions_to_rotations,
    quat_angle,
    quat_between,
    quat_mul,
    quat_normalize,
    quat_rotate,
    quat_slerp,
    resample_motion,
    rest_skeleton,
    smooth_positions,
    to_unity_positions,
    to_unity_quats,
)

UP = np.array([0.0, 1.0, 0.0])
PAIRS = [("LeftUpperLeg", "RightUpperLeg"), ("LeftShoulder", "RightShoulder"), ("LeftUpperArm", "RightUpperArm")]


@pytest.fixture(scope="module")
def joints(motion_ref):
    return check_joints(np.load(motion_ref / "humanml3d_012314_joints.npy"))


@pytest.fixture(scope="module")
def motion(joints):
    return positions_to_rotations(joints)


def bone_direction_errors_deg(positions: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Angle [T, 21] between each bone (parent → joint) of two position arrays."""
    kids = np.arange(1, NUM_JOINTS)
    a = positions[:, kids] - positions[:, list(PARENTS[1:])]
    b = reference[:, kids] - reference[:, list(PARENTS[1:])]
    cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def test_names_and_tree():
    assert len(JOINT_NAMES) == len(UNITY_BONES) == len(PARENTS) == NUM_JOINTS
    assert all(PARENTS[j] < j for j in range(1, NUM_JOINTS))  # parents come first
    for left, right in zip(LEFT_JOINTS, RIGHT_JOINTS):
        assert UNITY_BONES[left].startswith("Left") and UNITY_BONES[right].startswith("Right")
        assert UNITY_BONES[left][4:] == UNITY_BONES[right][5:]


def test_left_is_the_characters_left_on_real_data(joints):
    """Facing from the feet alone; the joints named Left must lie on the character's left in every frame."""
    forward = facing_direction(joints)
    assert forward[0, 2] > 0.9  # HumanML3D starts facing +Z
    left_axis = np.cross(UP, forward)  # right-handed Y up: up x forward points to the character's left
    for left, right in PAIRS:
        side = np.sum((joints[:, BONE_INDEX[left]] - joints[:, BONE_INDEX[right]]) * left_axis, axis=-1)
        assert (side > 0.02).all(), f"{left} is not on the character's left in {int((side <= 0.02).sum())} frames"
    # In Unity (left-handed, X right when facing +Z) the left side is at -X relative to the facing.
    uj = to_unity_positions(joints)
    uf = to_unity_positions(forward)
    right_axis_unity = np.cross(UP, uf)  # numerically the same formula gives "right" in a left-handed frame
    side = np.sum((uj[:, BONE_INDEX["LeftUpperLeg"]] - uj[:, BONE_INDEX["RightUpperLeg"]]) * right_axis_unity, -1)
    assert (side < 0).all()


def test_forward_kinematics_reproduces_real_bones(joints, motion):
    pos, _ = forward_kinematics(motion)
    err = bone_direction_errors_deg(pos, joints)
    print(f"max bone direction error over {err.size} bone-frames: {err.max():.2e} deg")
    assert err.max() < 2.0
    # The reconstructed left arm is still on the character's left.
    left_axis = np.cross(UP, facing_direction(joints))
    side = np.sum((pos[:, BONE_INDEX["LeftUpperArm"]] - pos[:, BONE_INDEX["RightUpperArm"]]) * left_axis, -1)
    assert (side > 0).all()
    # Leaf joints have no bone to measure: identity local rotations.
    leaves = [j for j in range(NUM_JOINTS) if not CHILDREN[j]]
    assert np.allclose(np.abs(motion.rotations[:, leaves, 3]), 1.0)


def test_rest_pose_is_a_t_pose(joints):
    rest = rest_skeleton(joints).positions()
    lw, rw = rest[BONE_INDEX["LeftHand"]], rest[BONE_INDEX["RightHand"]]
    ls = rest[BONE_INDEX["LeftUpperArm"]]
    assert lw[0] > 0.5 and rw[0] < -0.5 and abs(lw[1] - ls[1]) < 1e-9  # arms out horizontally, left at +X
    assert rest[BONE_INDEX["LeftFoot"], 1] < rest[BONE_INDEX["LeftLowerLeg"], 1] < rest[BONE_INDEX["LeftUpperLeg"], 1]
    assert rest[BONE_INDEX["Head"], 1] > rest[BONE_INDEX["Neck"], 1] > rest[0, 1]


def test_unity_conversion_is_a_consistent_mirror():
    rng = np.random.default_rng(0)
    q = quat_normalize(rng.normal(size=(50, 4)))
    v = rng.normal(size=(50, 3))
    # Rotating then converting equals converting then rotating with the converted quaternion.
    np.testing.assert_allclose(
        to_unity_positions(quat_rotate(q, v)), quat_rotate(to_unity_quats(q), to_unity_positions(v)), atol=1e-12
    )
    # Composition is preserved (a bone chain converts bone by bone).
    q2 = quat_normalize(rng.normal(size=(50, 4)))
    np.testing.assert_allclose(
        to_unity_quats(quat_mul(q, q2)), quat_mul(to_unity_quats(q), to_unity_quats(q2)), atol=1e-12
    )
    # Example: right-handed +90 deg about Y turns +Z to +X; in Unity the mirrored vector (0,0,1) goes to (-1,0,0).
    qy = np.array([0.0, np.sin(np.pi / 4), 0.0, np.cos(np.pi / 4)])
    np.testing.assert_allclose(quat_rotate(qy, np.array([0.0, 0.0, 1.0])), [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(quat_rotate(to_unity_quats(qy), np.array([0.0, 0.0, 1.0])), [-1.0, 0.0, 0.0], atol=1e-12)


def test_quat_between_handles_opposite_directions():
    u = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 2.0]])
    v = -u
    q = quat_between(u, v)
    np.testing.assert_allclose(quat_rotate(q, u), v, atol=1e-9)


def _z_rotation(deg: np.ndarray) -> np.ndarray:
    half = np.radians(deg) / 2
    return np.stack([np.zeros_like(half), np.zeros_like(half), np.sin(half), np.cos(half)], -1)


def test_resample_uses_slerp_on_frame_centres(joints, motion):
    up = resample_motion(motion, 30.0)
    assert up.num_frames == 255 and up.fps == 30.0  # 170 frames at 20 fps = 8.5 s
    # Two source frames (0 deg, 120 deg about Z) at 1 fps; at 4 fps the centre t = 0.625 s is 1/8 of the way.
    rest = motion.rest
    rot = np.repeat(_z_rotation(np.array([0.0, 120.0]))[:, None], NUM_JOINTS, axis=1)
    two = BodyMotion(rotations=rot, root_positions=np.array([[0.0, 0, 0], [1.0, 0, 0]]), rest=rest, fps=1.0)
    out = resample_motion(two, 4.0)
    assert out.num_frames == 8
    angles = np.degrees(quat_angle(out.rotations[:, 0]))
    np.testing.assert_allclose(angles[2], 15.0, atol=1e-9)  # slerp; lerp + normalise would give ~9.9 deg
    np.testing.assert_allclose(angles[:2], 0.0, atol=1e-9)  # before the first centre: hold
    np.testing.assert_allclose(out.root_positions[2, 0], 0.125)
    np.testing.assert_allclose(quat_slerp(rot[0, 0], rot[1, 0], 0.25), _z_rotation(np.array(30.0)), atol=1e-12)


def test_damping_scales_angles_and_smoothing_reduces_jitter(joints, motion):
    damped = positions_to_rotations(joints, damping={"LeftUpperArm": 0.5, "R_Elbow": 0.0})
    j_arm, j_elbow = BONE_INDEX["LeftUpperArm"], BONE_INDEX["RightLowerArm"]
    np.testing.assert_allclose(quat_angle(damped.rotations[:, j_arm]), 0.5 * quat_angle(motion.rotations[:, j_arm]),
                               atol=1e-9)
    np.testing.assert_allclose(quat_angle(damped.rotations[:, j_elbow]), 0.0, atol=1e-9)
    with pytest.raises(KeyError, match="unknown bone"):
        positions_to_rotations(joints[:5], damping={"LeftArm": 0.5})
    rng = np.random.default_rng(1)
    noisy = joints + rng.normal(scale=0.01, size=joints.shape)
    smoothed = smooth_positions(noisy, 9)
    assert smoothed.shape == noisy.shape
    jitter = lambda x: np.abs(np.diff(x, 2, axis=0)).mean()  # noqa: E731
    assert jitter(smoothed) < 0.2 * jitter(noisy)
    assert positions_to_rotations(noisy, smooth=9).num_frames == joints.shape[0]


def test_join_clips_continues_position_and_facing(joints):
    first, second = joints[:60], joints[100:140]
    joined = join_clips([first, second])
    assert joined.shape == (100, 22, 3)
    np.testing.assert_allclose(joined[:60], first)
    np.testing.assert_allclose(joined[60, 0, [0, 2]], first[-1, 0, [0, 2]], atol=1e-12)  # starts where it ended
    np.testing.assert_allclose(joined[60, 0, 1], second[0, 0, 1])  # height untouched
    np.testing.assert_allclose(body_forward(joined[60:61]), body_forward(first[-1:]), atol=1e-9)  # same facing
    # A rigid motion of the clip: bone lengths and the left/right sides are kept.
    kids = list(range(1, 22))
    lengths = lambda x: np.linalg.norm(x[:, kids] - x[:, list(PARENTS[1:])], axis=-1)  # noqa: E731
    np.testing.assert_allclose(lengths(joined[60:]), lengths(second), atol=1e-9)
    np.testing.assert_allclose(join_clips([first, second], align=False)[60:], second)


def test_check_joints_errors(joints):
    assert check_joints(joints[None]).shape == joints.shape  # MotionGPT's [1, T, 22, 3]
    with pytest.raises(MotionFormatError, match=r"\[T, 22, 3\]"):
        check_joints(np.zeros((10, 21, 3)))
    bad = joints.copy()
    bad[7, 3, 1] = np.nan
    with pytest.raises(MotionFormatError, match="NaN.*frame 7"):
        check_joints(bad)


# --- audio2photoreal exports (synthetic: the real rig's pose written as world joint states) ---


def _synthetic_export(motion: BodyMotion, path, fmt: str = "npz"):
    """A 30-joint export: the 22 humanoid joints under SMPL-style names, shuffled, plus distractors."""
    pos, glob = forward_kinematics(motion)
    t = motion.num_frames
    names = [("left_" + n[2:] if n.startswith("L_") else "right_" + n[2:] if n.startswith("R_") else n).lower()
             for n in JOINT_NAMES]
    extra = [f"b_extra_{k}" for k in range(8)]
    order = np.random.default_rng(2).permutation(NUM_JOINTS + len(extra))
    all_names = names + extra
    states = np.zeros((t, len(all_names), 8))
    states[:, :NUM_JOINTS, :3] = pos * 100.0  # centimetres
    states[:, :NUM_JOINTS, 3:7] = glob
    states[:, NUM_JOINTS:, 6] = 1.0
    states[..., 7] = 1.0
    names_out = [all_names[i] for i in order]
    states_out = states[:, order]
    if fmt == "npz":
        np.savez(path, joint_names=np.array(names_out), joint_states=states_out, fps=np.array(20.0))
    else:
        path.write_text(json.dumps({"joint_names": names_out, "joint_states": states_out.tolist(), "fps": 20}))
    return path


def test_a2p_export_round_trip(tmp_path, joints, motion):
    short = BodyMotion(motion.rotations[:12], motion.root_positions[:12], motion.rest, motion.fps)
    export = load_a2p(_synthetic_export(short, tmp_path / "a2p.npz"))
    assert export.states.shape == (12, 30, 8) and export.fps == 20.0
    got = a2p_to_motion(export, position_scale=100.0)
    # Same local rotations as the source motion (up to quaternion sign).
    dots = np.abs(np.sum(got.rotations * short.rotations, axis=-1))
    assert dots.min() > 1 - 1e-9
    np.testing.assert_allclose(got.root_positions, short.root_positions, atol=1e-9)
    # Positions mode refits the T-pose skeleton: bone directions still match the source joints.
    by_pos = a2p_to_motion(export, mode="positions", position_scale=100.0)
    pos, _ = forward_kinematics(by_pos)
    assert bone_direction_errors_deg(pos, joints[:12]).max() < 2.0
    # JSON holds the same.
    j = load_a2p(_synthetic_export(short, tmp_path / "a2p.json", fmt="json"))
    np.testing.assert_allclose(j.states, export.states)


def test_a2p_unity_names_bind_pose_and_name_map(tmp_path, motion):
    """Unity-named joints whose bind pose is not identity (``rest_states``), one joint renamed via a name map."""
    from motion.body.a2p import load_name_map

    short = BodyMotion(motion.rotations[:6], motion.root_positions[:6], motion.rest, motion.fps)
    pos, glob = forward_kinematics(short)
    bind = quat_normalize(np.random.default_rng(4).normal(size=(NUM_JOINTS, 4)))
    names = list(UNITY_BONES)
    names[BONE_INDEX["LeftFoot"]] = "b_l_ankle"  # not a Unity name: needs the map
    states = np.zeros((6, NUM_JOINTS, 8))
    states[..., :3] = pos
    states[..., 3:7] = quat_mul(glob, bind[None])  # the rig's joint frames = T-pose-relative rotation x bind
    rest_states = np.zeros((NUM_JOINTS, 8))
    rest_states[:, :3] = short.rest.positions()
    rest_states[:, 3:7] = bind
    np.savez(tmp_path / "u.npz", joint_names=np.array(names), joint_states=states, rest_states=rest_states)
    export = load_a2p(tmp_path / "u.npz", fps=25.0)
    assert export.fps == 25.0
    with pytest.raises(A2PFormatError, match="lacks 1 humanoid joints: LeftFoot"):
        a2p_to_motion(export)
    (tmp_path / "map.json").write_text(json.dumps({"LeftFoot": "B_L_Ankle"}))
    got = a2p_to_motion(export, name_map=load_name_map(tmp_path / "map.json"))
    assert np.abs(np.sum(got.rotations * short.rotations, axis=-1)).min() > 1 - 1e-9
    np.testing.assert_allclose(got.rest.offsets, short.rest.offsets, atol=1e-9)


def test_a2p_errors(tmp_path, motion):
    with pytest.raises(A2PFormatError, match="no such file"):
        load_a2p(tmp_path / "missing.npz")
    np.savez(tmp_path / "nokeys.npz", foo=np.zeros(3))
    with pytest.raises(A2PFormatError, match="joint_names.*found keys: foo"):
        load_a2p(tmp_path / "nokeys.npz")
    np.savez(tmp_path / "shape.npz", joint_names=np.array(["a", "b"]), joint_states=np.zeros((4, 3, 8)))
    with pytest.raises(A2PFormatError, match=r"\[T, 2, 8\]"):
        load_a2p(tmp_path / "shape.npz")
    states = np.zeros((4, 2, 8))
    states[1, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", joint_names=np.array(["a", "b"]), joint_states=states)
    with pytest.raises(A2PFormatError, match="NaN"):
        load_a2p(tmp_path / "nan.npz")
    states = np.zeros((4, 2, 8))
    states[..., 6] = 1
    np.savez(tmp_path / "few.npz", joint_names=np.array(["pelvis", "head"]), joint_states=states)
    with pytest.raises(A2PFormatError, match="lacks 20 humanoid joints.*LeftUpperLeg"):
        a2p_to_motion(load_a2p(tmp_path / "few.npz"))
    with pytest.raises(A2PFormatError, match="unknown audio2photoreal export format"):
        (tmp_path / "x.txt").write_text("x")
        load_a2p(tmp_path / "x.txt")
