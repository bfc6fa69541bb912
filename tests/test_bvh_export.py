"""BVH export parses back (with the `bvh` package) to the same skeleton and rotations."""

from __future__ import annotations

import numpy as np
import pytest
from bvh import Bvh

from motion.body.bvh import ROTATION_CHANNELS, bvh_euler_to_matrix, write_bvh
from motion.body.skeleton import (
    NUM_JOINTS,
    PARENTS,
    UNITY_BONES,
    BodyMotion,
    check_joints,
    positions_to_rotations,
    quat_to_matrix,
)
from motion.vmc_cli import main


@pytest.fixture(scope="module")
def motion(motion_ref):
    joints = check_joints(np.load(motion_ref / "humanml3d_012314_joints.npy"))[:40]
    return positions_to_rotations(joints), joints


def test_bvh_round_trip(tmp_path, motion):
    body, joints = motion
    path = write_bvh(body, tmp_path / "m.bvh", scale=100.0)
    mocap = Bvh(path.read_text())
    assert mocap.get_joints_names() == [UNITY_BONES[j] for j in _dfs()]
    assert mocap.nframes == body.num_frames
    assert mocap.frame_time == pytest.approx(1.0 / body.fps, rel=1e-6)
    for j in range(1, NUM_JOINTS):
        name = UNITY_BONES[j]
        assert mocap.joint_parent(name).name == UNITY_BONES[PARENTS[j]]
        np.testing.assert_allclose(mocap.joint_offset(name), body.rest.offsets[j] * 100.0, atol=1e-5)
    root = np.array(mocap.frames_joint_channels("Hips", ["Xposition", "Yposition", "Zposition"]), dtype=float)
    np.testing.assert_allclose(root, body.root_positions * 100.0, atol=1e-5)

    # Rotations: rebuild each joint's matrix from the parsed Euler angles, compare with the motion's quaternions.
    parsed = np.stack(
        [np.array(mocap.frames_joint_channels(UNITY_BONES[j], list(ROTATION_CHANNELS)), dtype=float)
         for j in range(NUM_JOINTS)], axis=1,
    )  # [T, 22, 3]
    got = bvh_euler_to_matrix(parsed)
    want = quat_to_matrix(body.rotations)
    err = np.abs(got - want).max()
    print(f"max rotation matrix difference after the BVH round trip: {err:.2e}")
    assert err < 1e-5
    # Curves are continuous (unwrapped): no jumps near 360 degrees between frames.
    assert np.abs(np.diff(parsed, axis=0)).max() < 180.0

    # Forward kinematics of the parsed file reproduces the real bone directions.
    pos = np.zeros((body.num_frames, NUM_JOINTS, 3))
    glob = np.zeros((body.num_frames, NUM_JOINTS, 3, 3))
    glob[:, 0] = got[:, 0]
    pos[:, 0] = root / 100.0
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        glob[:, j] = glob[:, p] @ got[:, j]
        pos[:, j] = pos[:, p] + glob[:, p] @ (np.array(mocap.joint_offset(UNITY_BONES[j])) / 100.0)
    a = pos[:, 1:] - pos[:, list(PARENTS[1:])]
    b = joints[:, 1:] - joints[:, list(PARENTS[1:])]
    cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 2.0


def _dfs() -> list[int]:
    from motion.body.skeleton import CHILDREN

    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for c in CHILDREN[j]:
            visit(c)

    visit(0)
    return order


def test_cli_bvh_resamples_to_fps(tmp_path, motion):
    _, joints = motion
    np.save(tmp_path / "m.npy", joints[None].astype(np.float32))
    out = tmp_path / "out.bvh"
    assert main([str(tmp_path / "m.npy"), "--bvh", str(out), "--fps", "30"]) == 0
    mocap = Bvh(out.read_text())
    assert mocap.nframes == 60 and mocap.frame_time == pytest.approx(1 / 30, rel=1e-6)  # 40 frames at 20 fps = 2 s
    assert not (tmp_path / "out.bvh.part").exists()


def test_short_motion(tmp_path):
    body = BodyMotion(
        rotations=np.tile(np.array([0.0, 0.0, 0.0, 1.0]), (1, NUM_JOINTS, 1)),
        root_positions=np.zeros((1, 3)),
        rest=positions_to_rotations(np.random.default_rng(0).normal(size=(2, 22, 3))).rest,
        fps=20.0,
    )
    mocap = Bvh(write_bvh(body, tmp_path / "one.bvh").read_text())
    assert mocap.nframes == 1
    np.testing.assert_allclose(mocap.frame_joint_channels(0, "LeftUpperArm", list(ROTATION_CHANNELS)), 0.0, atol=1e-9)
