"""VMC sending: loopback to a python-osc server, the sent rotations' kinematics, the CLI and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import checkout_env
from pythonosc import osc_bundle, osc_server
from pythonosc.dispatcher import Dispatcher

from motion.arkit import INDEX, NUM_VALUES, PERFECT_SYNC_NAMES
from motion.body.skeleton import (
    NUM_JOINTS,
    PARENTS,
    UNITY_BONES,
    check_joints,
    positions_to_rotations,
    quat_mul,
    quat_rotate,
    to_unity_positions,
)
from motion.body.vmc import (
    ADDR_APPLY,
    ADDR_BLEND,
    ADDR_BONE,
    ADDR_OK,
    ADDR_ROOT,
    ADDR_TIME,
    FACE_BONE_OFFSETS,
    MAX_EYE_DEG,
    NECK_SHARE,
    build_bundle,
    face_bone_rotations,
    make_clip,
    stream_clip,
    stream_face,
)
from motion.vmc_cli import main


@pytest.fixture(scope="module")
def joints(motion_ref):
    return check_joints(np.load(motion_ref / "humanml3d_012314_joints.npy"))


def _face(t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(t, NUM_VALUES)).astype(np.float32)


class RecordingDispatcher(Dispatcher):
    """Keeps every datagram the python-osc server receives, with its arrival time."""

    def __init__(self) -> None:
        super().__init__()
        self.packets: list[tuple[float, bytes]] = []
        self.arrived = threading.Condition()  # notified per datagram: waiting needs no polling loop

    def call_handlers_for_packet(self, data, client_address):
        with self.arrived:
            self.packets.append((time.perf_counter(), data))
            self.arrived.notify_all()
        return super().call_handlers_for_packet(data, client_address)


@pytest.fixture()
def receiver():
    disp = RecordingDispatcher()
    server = osc_server.ThreadingOSCUDPServer(("127.0.0.1", 0), disp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], disp
    server.shutdown()
    server.server_close()


@pytest.fixture()
def virtual_clock(monkeypatch):
    """Run stream_clip's schedule on ``motion.playback.VirtualClock``: sleeps advance simulated time at once, so
    the schedule's timing is checked exactly whatever the machine's load. ``clock.sent`` collects
    ``(frame, simulated send time, due)`` for every frame sent."""
    import motion.playback as playback

    clock = playback.VirtualClock()
    clock.sent = []
    run_schedule = playback.run_schedule

    def run_on_virtual_time(num_frames, fps, send, schedule_clock=None, *args, **kwargs):
        def send_and_record(i, due):
            clock.sent.append((i, clock.now(), due))
            send(i, due)

        return run_schedule(num_frames, fps, send_and_record, schedule_clock, *args, sleep=clock.sleep, **kwargs)

    monkeypatch.setattr(playback, "MonotonicClock", lambda: clock)
    monkeypatch.setattr(playback, "run_schedule", run_on_virtual_time)
    return clock


def _type_tags(msg_dgram: bytes) -> str:
    """The OSC type tag string (with its comma) of a message datagram."""
    end = msg_dgram.index(b"\0")
    start = (end // 4 + 1) * 4
    return msg_dgram[start : msg_dgram.index(b"\0", start)].decode()


def _decode(disp: RecordingDispatcher, expected: int):
    _wait_for(disp, expected)
    frames = []
    for arrival, data in disp.packets:
        assert osc_bundle.OscBundle.dgram_is_bundle(data), "every frame must be one OSC bundle"
        bundle = osc_bundle.OscBundle(data)
        msgs = [bundle.content(k) for k in range(bundle.num_contents)]
        frames.append((arrival, [(m.address, _type_tags(m.dgram), list(m.params)) for m in msgs]))
    return frames


def _wait_for(disp: RecordingDispatcher, n: int) -> None:
    with disp.arrived:
        disp.arrived.wait_for(lambda: len(disp.packets) >= n, timeout=2.0)


def test_loopback_body_and_face(receiver, joints):
    """Content over the real network (paced by the wall clock; its timing is checked on the virtual clock below)."""
    port, disp = receiver
    motion = positions_to_rotations(joints[:16])  # 0.8 s at 20 fps
    fps = 30.0
    clip = make_clip(motion, _face(48), face_fps=60.0, fps=fps)
    assert clip.num_frames == 24
    stats = stream_clip(clip, "127.0.0.1", port)
    frames = _decode(disp, clip.num_frames)
    assert len(frames) == clip.num_frames == stats.sent  # one bundle per frame

    for i, (_, msgs) in enumerate(frames):
        addresses = [m[0] for m in msgs]
        nb = NUM_JOINTS + 2  # the 22 humanoid bones, then the face's LeftEye and RightEye
        assert addresses[:3] == [ADDR_OK, ADDR_TIME, ADDR_ROOT]
        assert addresses[3 : 3 + nb] == [ADDR_BONE] * nb
        assert addresses[3 + nb :] == [ADDR_BLEND] * 52 + [ADDR_APPLY]
        tags = {m[0]: m[1] for m in msgs}
        assert tags == {ADDR_OK: ",i", ADDR_TIME: ",f", ADDR_ROOT: ",sfffffff", ADDR_BONE: ",sfffffff",
                        ADDR_BLEND: ",sf", ADDR_APPLY: ","}
        assert msgs[0][2] == [1]
        assert msgs[1][2][0] == pytest.approx(i / fps, abs=1e-5)
        root = msgs[2][2]
        assert root[0] == "root"
        np.testing.assert_allclose(root[1:4], clip.root_positions[i], atol=1e-6)
        assert root[4:] == [0.0, 0.0, 0.0, 1.0]
        bones = msgs[3 : 3 + nb]
        assert [b[2][0] for b in bones] == list(UNITY_BONES) + ["LeftEye", "RightEye"]
        np.testing.assert_allclose([b[2][1:4] for b in bones], clip.bone_positions[i], atol=1e-6)
        np.testing.assert_allclose([b[2][4:8] for b in bones], clip.bone_rotations[i], atol=1e-6)
        blends = msgs[3 + nb : -1]
        assert [b[2][0] for b in blends] == list(PERFECT_SYNC_NAMES)
        np.testing.assert_allclose([b[2][1] for b in blends], clip.blend_values[i], atol=1e-6)
        assert msgs[-1][2] == []


def test_schedule_on_the_virtual_clock(receiver, virtual_clock):
    """One bundle per frame at i / fps (a wrong rate or a burst fails), each carrying its due time."""
    port, disp = receiver
    fps = 30.0
    clip = make_clip(face=_face(24), face_fps=fps, fps=fps)
    stats = stream_clip(clip, "127.0.0.1", port)
    assert stats.sent == 24 and [i for i, _, _ in virtual_clock.sent] == list(range(24))
    sent_at = np.array([t for _, t, _ in virtual_clock.sent])
    due = np.array([d for _, _, d in virtual_clock.sent])
    np.testing.assert_allclose(due, np.arange(24) / fps, atol=1e-9)
    assert (sent_at >= due - 1e-9).all() and (sent_at - due).max() < 1e-3
    frames = _decode(disp, 24)
    assert [msgs[1][2][0] for _, msgs in frames] == pytest.approx(list(due), abs=1e-5)


def test_fast_encoding_matches_python_osc(joints):
    clip = make_clip(positions_to_rotations(joints[:6]), _face(18), face_fps=60.0, fps=30.0)
    for i in (0, clip.num_frames - 1):
        assert clip.bundle(i, i / 30.0) == build_bundle(clip.messages(i, i / 30.0))
    face_only = make_clip(face=_face(4), face_fps=30.0, fps=30.0)
    assert face_only.bundle(3, 0.1) == build_bundle(face_only.messages(3, 0.1))


def test_stream_face_sends_only_the_face(receiver):
    port, disp = receiver
    face = _face(12, seed=3)
    stats = stream_face(face, 60.0, "127.0.0.1", port)
    frames = _decode(disp, 12)
    assert stats.sent == len(frames) == 12
    for i, (_, msgs) in enumerate(frames):  # no Root: the receiver keeps its own body
        assert [m[0] for m in msgs] == [ADDR_OK, ADDR_TIME] + [ADDR_BONE] * 4 + [ADDR_BLEND] * 52 + [ADDR_APPLY]
        assert [m[2][0] for m in msgs[2:6]] == ["Neck", "Head", "LeftEye", "RightEye"]
        np.testing.assert_allclose([m[2][1] for m in msgs[6:-1]], face[i, :52], atol=1e-6)
    disp.packets.clear()
    stream_face(face[:3], 60.0, "127.0.0.1", port, face_bones=False)
    assert [m[0] for m in _decode(disp, 3)[0][1]] == [ADDR_OK, ADDR_TIME] + [ADDR_BLEND] * 52 + [ADDR_APPLY]
    with pytest.raises(ValueError, match=r"\[T, 61\]"):
        stream_face(np.zeros((5, 52)), 60.0, "127.0.0.1", port)


def _head_face(t: int, yaw: float, pitch: float, roll: float, eye_yaw: float = 0.0, eye_pitch: float = 0.0):
    """A neutral face whose head and eyes are turned by the given degrees (stored as Live Link's degrees / 180)."""
    face = np.zeros((t, NUM_VALUES), dtype=np.float32)
    for name, deg in (("HeadYaw", yaw), ("HeadPitch", pitch), ("HeadRoll", roll), ("LeftEyeYaw", eye_yaw),
                      ("RightEyeYaw", eye_yaw), ("LeftEyePitch", eye_pitch), ("RightEyePitch", eye_pitch)):
        face[:, INDEX[name]] = deg / 180.0
    return face


def _angle_deg(q) -> float:
    return float(np.degrees(2.0 * np.arccos(min(1.0, abs(float(np.asarray(q)[3]))))))


def test_face_head_and_eyes_go_out_as_bones(receiver):
    """Head yaw/pitch/roll and eye yaw/pitch reach a python-osc receiver as Neck/Head/LeftEye/RightEye Bone/Pos."""
    port, disp = receiver
    stream_face(_head_face(3, yaw=30.0, pitch=-10.0, roll=5.0, eye_yaw=12.0, eye_pitch=8.0), 60.0, "127.0.0.1", port)
    frames = _decode(disp, 3)
    assert len(frames) == 3
    bones = {m[2][0]: np.array(m[2][1:]) for m in frames[0][1] if m[0] == ADDR_BONE}
    assert list(bones) == ["Neck", "Head", "LeftEye", "RightEye"]
    for name, row in bones.items():
        np.testing.assert_allclose(row[:3], FACE_BONE_OFFSETS[name], atol=1e-6)
        assert np.linalg.norm(row[3:]) == pytest.approx(1.0, abs=1e-5)
    neck, head = bones["Neck"][3:], bones["Head"][3:]
    whole = quat_mul(neck, head)
    assert _angle_deg(neck) == pytest.approx(NECK_SHARE * _angle_deg(whole), abs=0.05)
    # Unity axes (+X the avatar's right, +Y up, +Z forward): yaw 30 turns the face right, pitch -10 lifts it.
    forward = quat_rotate(whole, np.array([0.0, 0.0, 1.0]))
    assert forward[0] == pytest.approx(np.sin(np.radians(30.0)) * np.cos(np.radians(10.0)), abs=1e-4)
    assert forward[1] == pytest.approx(np.sin(np.radians(10.0)), abs=1e-4)
    up = quat_rotate(whole, np.array([0.0, 1.0, 0.0]))
    assert up[0] < 0  # roll 5 tilts the top of the head toward the avatar's left (-X)
    for eye in ("LeftEye", "RightEye"):
        gaze = quat_rotate(bones[eye][3:], np.array([0.0, 0.0, 1.0]))
        assert np.degrees(np.arctan2(gaze[0], gaze[2])) == pytest.approx(12.0, abs=0.05)
        assert gaze[1] == pytest.approx(-np.sin(np.radians(8.0)), abs=1e-4)  # pitch > 0 looks down


def test_face_bones_follow_the_real_gaze_and_clamp(livelink_ref):
    """On a real Live Link Face take, a LeftEye turned toward +X goes with EyeLookInLeft (the shapes sent beside it)."""
    from motion.livelink.app_csv import read_csv

    face, fps = read_csv(livelink_ref / "llf_take_excerpt.csv")
    clip = make_clip(face=face, face_fps=fps, fps=fps)
    left = clip.bone_rotations[:, clip.bone_names.index("LeftEye")].astype(np.float64)
    gaze_x = quat_rotate(left, np.array([0.0, 0.0, 1.0]))[:, 0]
    look = face[:, INDEX["EyeLookInLeft"]] - face[:, INDEX["EyeLookOutLeft"]]
    assert np.corrcoef(gaze_x, look)[0, 1] > 0.8
    assert max(_angle_deg(q) for q in left) <= MAX_EYE_DEG * np.sqrt(2) + 0.01  # ±100° tracking glitches clamped


def test_face_turns_the_body_head(joints):
    """With a body, the face's rotation is applied on top of the body's Neck and Head; eyes are added."""
    body = positions_to_rotations(joints[:10])
    plain = make_clip(body, fps=20.0)
    face = _head_face(10, yaw=20.0, pitch=0.0, roll=0.0)
    both = make_clip(body, face, face_fps=20.0, fps=20.0, neck_share=0.5)
    assert both.bone_names == UNITY_BONES + ("LeftEye", "RightEye")
    extra = face_bone_rotations(face, 0.5)
    for bone in ("Neck", "Head"):
        k = UNITY_BONES.index(bone)
        np.testing.assert_allclose(both.bone_rotations[:, k], quat_mul(plain.bone_rotations[:, k], extra[bone]),
                                   atol=1e-6)
    others = [k for k, n in enumerate(UNITY_BONES) if n not in ("Neck", "Head")]
    np.testing.assert_allclose(both.bone_rotations[:, others], plain.bone_rotations[:, others], atol=1e-7)
    alone = make_clip(body, face, face_fps=20.0, fps=20.0, face_bones=False)
    np.testing.assert_allclose(alone.bone_rotations, plain.bone_rotations, atol=1e-7)
    with pytest.raises(ValueError, match="between 0 and 1"):
        make_clip(face=face, face_fps=20.0, neck_share=1.5)


def test_cli_face_bone_options(tmp_path):
    face = tmp_path / "face.npy"
    np.save(face, _head_face(6, yaw=40.0, pitch=0.0, roll=0.0))
    out = tmp_path / "sent.jsonl"
    assert main(["--face", str(face), "--face-fps", "30", "--fps", "30", "--neck-share", "0.5", "--dry-run", str(out)]) == 0
    msgs = json.loads(out.read_text().splitlines()[0])["messages"]
    neck = next(m[2] for m in msgs if m[0] == ADDR_BONE and m[2][0] == "Neck")
    assert _angle_deg(neck[4:]) == pytest.approx(20.0, abs=0.05)
    assert main(["--face", str(face), "--face-fps", "30", "--no-face-bones", "--dry-run", str(out)]) == 0
    assert ADDR_BONE not in {m[0] for m in json.loads(out.read_text().splitlines()[0])["messages"]}


def test_loop_repeats_until_stopped(receiver, virtual_clock):
    port, disp = receiver
    clip = make_clip(face=_face(4), face_fps=60.0, fps=60.0)

    class StopAfter(threading.Event):  # set 0.2 s into the (virtual) stream
        def is_set(self):
            return virtual_clock.now() >= 0.2

    stats = stream_clip(clip, "127.0.0.1", port, loop=True, stop=StopAfter())
    frames = _decode(disp, stats.sent)
    assert 12 <= stats.sent <= 13 and len(frames) == stats.sent  # 0.2 s at 60 fps: three passes of 4 frames
    assert virtual_clock.now() == pytest.approx(0.2, abs=1e-3)
    times = [msgs[1][2][0] for _, msgs in frames]
    np.testing.assert_allclose(times, np.arange(len(times)) / 60.0, atol=1e-5)  # time keeps running across passes


def test_audio_clock_drives_the_schedule(receiver, virtual_clock, monkeypatch):
    """With audio, frames follow the player's clock (a stand-in for the sound card, on the virtual clock)."""
    import motion.playback

    clock = virtual_clock

    class FakePlayer:
        def __init__(self, audio, sample_rate, device=None):
            self.duration = len(audio) / sample_rate
            player = self

            class Finished:  # the stream's end-of-audio event
                def wait(self, timeout):
                    clock.sleep(timeout)
                    return player.now() >= player.duration

            self.finished = Finished()

        def __enter__(self):
            self._t0 = clock.now() + 0.15  # the first sample is heard 150 ms from now
            return self

        def __exit__(self, *exc):
            pass

        def now(self):
            return clock.now() - self._t0

    monkeypatch.setattr(motion.playback, "AudioPlayer", FakePlayer)
    port, disp = receiver
    clip = make_clip(face=_face(6), face_fps=30.0, fps=30.0)
    stats = stream_clip(clip, "127.0.0.1", port, audio=np.zeros(4800, np.float32), sample_rate=24000)
    frames = _decode(disp, 6)
    assert stats.sent == len(frames) == 6
    sent_at = np.array([t for _, t, _ in clock.sent])
    # frame i at the audio clock's i / fps: frame 0 waits for the first heard sample (150 ms)
    np.testing.assert_allclose(sent_at, 0.15 + np.arange(6) / 30.0, atol=1e-3)
    assert clock.now() >= 0.15 + 0.2  # and stream_clip returned only once the audio (0.2 s) finished
    with pytest.raises(ValueError, match="loop"):
        stream_clip(clip, "127.0.0.1", port, audio=np.zeros(10, np.float32), sample_rate=24000, loop=True)


def test_sent_rotations_reproduce_the_real_bones(joints):
    """FK with exactly what is sent (Unity axes, float32) on the sent rest offsets → HumanML3D bone directions."""
    motion = positions_to_rotations(joints)
    clip = make_clip(motion, fps=20.0)  # the source rate: no resampling
    rot = clip.bone_rotations.astype(np.float64)
    offsets = clip.bone_positions.astype(np.float64)
    glob = np.zeros_like(rot)
    pos = np.zeros(offsets.shape)
    glob[:, 0] = rot[:, 0]
    pos[:, 0] = clip.root_positions + offsets[:, 0]
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        glob[:, j] = quat_mul(glob[:, p], rot[:, j])
        pos[:, j] = pos[:, p] + quat_rotate(glob[:, p], offsets[:, j])
    target = to_unity_positions(joints)
    kids = np.arange(1, NUM_JOINTS)
    a = pos[:, kids] - pos[:, list(PARENTS[1:])]
    b = target[:, kids] - target[:, list(PARENTS[1:])]
    cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    err = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    print(f"max bone direction error of the sent rotations: {err.max():.4f} deg over {err.size} bone-frames")
    assert err.max() < 2.0
    np.testing.assert_allclose(pos[:, 0], target[:, 0], atol=1e-5)  # root + hips = pelvis
    # Unity: facing +Z, the character's left is -X: the left hand is at smaller X than the right in frame 0.
    assert pos[0, UNITY_BONES.index("LeftUpperArm"), 0] < pos[0, UNITY_BONES.index("RightUpperArm"), 0]


def test_cli_dry_run_concatenates_and_writes_times(tmp_path, joints, capsys):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, joints[None, :20].astype(np.float32))  # MotionGPT's [1, T, 22, 3]
    np.save(b, joints[20:40].astype(np.float32))
    face = tmp_path / "face.npy"
    np.save(face, _face(90))
    out = tmp_path / "sent.jsonl"
    assert main([str(a), str(b), "--face", str(face), "--face-fps", "60", "--fps", "30", "--dry-run", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 60  # 40 frames at 20 fps = 2 s at 30 fps (the 1.5 s face holds its last frame)
    assert [r["frame"] for r in rows] == list(range(60))
    np.testing.assert_allclose([r["t"] for r in rows], np.arange(60) / 30.0, atol=1e-6)
    first = rows[0]["messages"]
    assert [m[0] for m in first[:3]] == [ADDR_OK, ADDR_TIME, ADDR_ROOT]
    assert sum(m[0] == ADDR_BONE for m in first) == NUM_JOINTS + 2  # + the face's LeftEye and RightEye
    assert sum(m[0] == ADDR_BLEND for m in first) == 52 and first[-1] == [ADDR_APPLY, ",", []]


def test_cli_a2p_export_and_mixing(tmp_path, joints, capsys):
    from motion.body.skeleton import forward_kinematics

    body = positions_to_rotations(joints[:10])
    pos, glob = forward_kinematics(body)
    states = np.concatenate([pos * 100.0, glob, np.ones((10, NUM_JOINTS, 1))], axis=-1)
    np.savez(tmp_path / "a2p.npz", joint_names=np.array(UNITY_BONES), joint_states=states, fps=np.array(20.0))
    out = tmp_path / "sent.jsonl"
    assert main([str(tmp_path / "a2p.npz"), "--a2p-scale", "100", "--fps", "20", "--dry-run", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10
    sent = np.array([[m[2][4:8] for m in r["messages"] if m[0] == ADDR_BONE] for r in rows])
    direct = make_clip(body, fps=20.0).bone_rotations
    np.testing.assert_allclose(np.abs(np.sum(sent * direct, -1)), 1.0, atol=1e-5)
    np.save(tmp_path / "m.npy", joints[:10])
    assert main([str(tmp_path / "m.npy"), str(tmp_path / "a2p.npz"), "--dry-run", str(out)]) == 2
    assert "cannot join" in capsys.readouterr().err


def test_cli_sends_over_udp(tmp_path, joints, receiver):
    port, disp = receiver
    np.save(tmp_path / "m.npy", joints[:6])
    assert main([str(tmp_path / "m.npy"), "--port", str(port), "--fps", "20", "--no-root-motion"]) == 0
    frames = _decode(disp, 6)
    assert len(frames) == 6
    roots = np.array([msgs[2][2][1:4] for _, msgs in frames])
    assert np.all(roots == 0.0)  # --no-root-motion keeps the root at the origin


def test_cli_face_csv(tmp_path):
    from motion.livelink.app_csv import write_csv

    csv = tmp_path / "take.csv"
    write_csv(csv, _face(30), fps=30.0)
    out = tmp_path / "sent.jsonl"
    assert main(["--face", str(csv), "--fps", "30", "--dry-run", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30
    assert all([m[0] for m in r["messages"][2:7]] == [ADDR_BONE] * 4 + [ADDR_BLEND] for r in rows)
    assert [m[2][0] for m in rows[0]["messages"][2:6]] == ["Neck", "Head", "LeftEye", "RightEye"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: np.save(p / "m.npy", np.zeros((10, 21, 3))), r"\[T, 22, 3\] or \[1, T, 22, 3\], got \[10, 21, 3\]"),
        (lambda p: np.save(p / "m.npy", np.full((10, 22, 3), np.nan)), "10 frames hold NaN"),
        (lambda p: (p / "m.fbx").write_text("x"), "unknown motion format '.fbx'"),
        (lambda p: (p / "m.npy").write_text("not numpy"), "not a readable .npy"),
    ],
)
def test_cli_errors_are_clear(tmp_path, capsys, make, message):
    make(tmp_path)
    path = next(tmp_path.iterdir())
    assert main([str(path), "--dry-run", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert __import__("re").search(message, err), err


def test_cli_bad_face_and_no_input(tmp_path, capsys):
    np.save(tmp_path / "f.npy", np.zeros((5, 52)))
    assert main(["--face", str(tmp_path / "f.npy"), "--dry-run", str(tmp_path / "o")]) == 2
    assert "[T, 61]" in capsys.readouterr().err
    (tmp_path / "f.txt").write_text("x")
    assert main(["--face", str(tmp_path / "f.txt")]) == 2
    assert "unknown face format" in capsys.readouterr().err
    assert main([]) == 2
    assert "nothing to send" in capsys.readouterr().err


def test_script_runs_without_traceback(tmp_path, repo_root):
    np.save(tmp_path / "bad.npy", np.zeros((3, 3)))
    proc = subprocess.run([sys.executable, str(repo_root / "motion" / "vmc_cli.py"), str(tmp_path / "bad.npy")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=checkout_env())
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "error:" in proc.stderr
