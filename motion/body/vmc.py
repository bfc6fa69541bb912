"""Sending body motion and faces to VMC apps (VSeeFace, VMagicMirror, Warudo, EVMC4U, VMC4UE, ...).

The VMC protocol is OSC over UDP. We act as a Performer: every frame is one OSC bundle, in this order::

    /VMC/Ext/OK 1                                   (int: model loaded)
    /VMC/Ext/T <seconds>                            (float: time since the stream started)
    /VMC/Ext/Root/Pos "root" px py pz qx qy qz qw   (only with a body)
    /VMC/Ext/Bone/Pos <HumanBodyBones> px py pz qx qy qz qw   (one per mapped bone, only with a body)
    /VMC/Ext/Bone/Pos Neck|Head|LeftEye|RightEye ...          (the face's head and eye rotations, with a face)
    /VMC/Ext/Blend/Val <PerfectSyncName> value      (52 ARKit shapes, only with a face)
    /VMC/Ext/Blend/Apply                            (only with a face)

Coordinates are Unity's (left-handed, Y up, character facing +Z); see ``motion.body.skeleton`` for the conversion.
Bone rotations are local and identity in the T-pose; bone positions are the rest offsets from the parent, except
Hips, whose position carries the pelvis height. The root carries the horizontal travel (``root_motion=True``) and
identity rotation (the hips carry the facing).

A face's head rotation (Live Link ``HeadYaw/Pitch/Roll``, degrees / 180) is shared between Neck (``neck_share``)
and Head, and its eye rotations (``Left/RightEyeYaw/Pitch``) turn LeftEye / RightEye, as VSeeFace and VMagicMirror
read them (see :func:`face_bone_rotations` for the axes); with a body, they are applied on top of the body's Neck and
Head. Face-only bundles carry no Root (the receiver keeps its own body). Frames are sent by time (``motion.playback.run_schedule``), on the
audio stream's clock when a wav plays, so long clips do not drift.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from bert_vits2.fileio import atomic_write
from motion import playback
from motion.arkit import INDEX, check_frames, to_perfect_sync
from motion.body.skeleton import (
    BONE_INDEX,
    UNITY_BONES,
    BodyMotion,
    quat_mul,
    resample_motion,
    to_unity_positions,
    to_unity_quats,
)
from motion.constants import BODY_FPS as DEFAULT_FPS
from motion.constants import DEFAULT_HOST
from motion.constants import VMC_PORT as DEFAULT_PORT
from motion.frames import resample_curves

log = logging.getLogger(__name__)


ADDR_OK = "/VMC/Ext/OK"
ADDR_TIME = "/VMC/Ext/T"
ADDR_ROOT = "/VMC/Ext/Root/Pos"
ADDR_BONE = "/VMC/Ext/Bone/Pos"
ADDR_BLEND = "/VMC/Ext/Blend/Val"
ADDR_APPLY = "/VMC/Ext/Blend/Apply"

TYPE_TAGS: dict[str, str] = {
    ADDR_OK: "i", ADDR_TIME: "f", ADDR_ROOT: "sfffffff", ADDR_BONE: "sfffffff", ADDR_BLEND: "sf", ADDR_APPLY: "",
}
"""OSC type tags (without the leading comma) each address is sent with."""

Message = tuple[str, list]

FACE_BONES: tuple[str, ...] = ("Neck", "Head", "LeftEye", "RightEye")
"""The bones a face drives (Unity ``HumanBodyBones`` names)."""
EYE_BONES: tuple[str, ...] = ("LeftEye", "RightEye")
NECK_SHARE = 0.3
"""Default share of the face's head rotation given to the Neck (the Head gets the rest), as a real neck bends."""
MAX_EYE_DEG = 45.0
"""Eye yaw/pitch are clamped to this (real phone captures reach ±100° on frames where tracking lost the eyes)."""
FACE_BONE_OFFSETS: dict[str, tuple[float, float, float]] = {
    "Neck": (0.0, 0.10, 0.0), "Head": (0.0, 0.09, 0.01), "LeftEye": (-0.032, 0.065, 0.075),
    "RightEye": (0.032, 0.065, 0.075),
}
"""Rest offsets from the parent (metres, Unity axes, +X the avatar's right) sent as the positions of face bones that
the body does not have; receivers that apply bone positions (EVMC4U's position sync) get a typical adult head."""


@dataclass(frozen=True)
class VmcClip:
    """Everything sent, precomputed per frame at ``fps`` in Unity coordinates (arrays are float32)."""

    fps: float
    num_frames: int
    root_positions: np.ndarray | None  # [N, 3]
    bone_positions: np.ndarray | None  # [N, B, 3]
    bone_rotations: np.ndarray | None  # [N, B, 4]
    blend_names: tuple[str, ...]
    blend_values: np.ndarray | None  # [N, 52]
    bone_names: tuple[str, ...] = UNITY_BONES

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def messages(self, i: int, time_s: float) -> list[Message]:
        """The frame's messages as ``(address, args)`` in sending order."""
        msgs: list[Message] = [(ADDR_OK, [1]), (ADDR_TIME, [float(time_s)])]
        if self.root_positions is not None:
            root = self.root_positions[i].tolist()
            msgs.append((ADDR_ROOT, ["root", *root, 0.0, 0.0, 0.0, 1.0]))
        if self.bone_rotations is not None:
            pos = self.bone_positions[i].tolist()
            rot = self.bone_rotations[i].tolist()
            msgs.extend((ADDR_BONE, [name, *p, *q]) for name, p, q in zip(self.bone_names, pos, rot))
        if self.blend_values is not None:
            msgs.extend((ADDR_BLEND, [n, v]) for n, v in zip(self.blend_names, self.blend_values[i].tolist()))
            msgs.append((ADDR_APPLY, []))
        return msgs

    def bundle(self, i: int, time_s: float) -> bytes:
        """One OSC bundle (datagram bytes) holding frame ``i``; the same bytes as ``build_bundle(messages(i, t))``.

        Encoded from precomputed message prefixes and big-endian float32 rows (about 20x faster than building
        each message with python-osc, which matters at 30-60 fps beside other work).
        """
        enc = _encoder(self.bone_names if self.bone_rotations is not None else (), self.blend_names)
        parts = [_BUNDLE_HEADER, enc.ok, enc.time, _F32.pack(time_s)]
        if self.root_positions is not None:
            root = np.empty(7, dtype=">f4")
            root[:3] = self.root_positions[i]
            root[3:] = (0.0, 0.0, 0.0, 1.0)
            parts += [enc.root, root.tobytes()]
        if self.bone_rotations is not None:
            rows = np.concatenate([self.bone_positions[i], self.bone_rotations[i]], axis=-1).astype(">f4").tobytes()
            for k, prefix in enumerate(enc.bones):
                parts += [prefix, rows[28 * k : 28 * k + 28]]
        if self.blend_values is not None:
            values = self.blend_values[i].astype(">f4").tobytes()
            for k, prefix in enumerate(enc.blends):
                parts += [prefix, values[4 * k : 4 * k + 4]]
            parts.append(enc.apply)
        return b"".join(parts)


def build_bundle(messages: list[Message]) -> bytes:
    """Encode ``(address, args)`` messages as one OSC bundle with python-osc, with the type tags of ``TYPE_TAGS``."""
    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, args in messages:
        builder = OscMessageBuilder(address=address)
        for arg, tag in zip(args, TYPE_TAGS[address]):
            builder.add_arg(arg, tag)
        bundle.add_content(builder.build())
    return bundle.build().dgram


# --- fast OSC encoding of VMC frames (checked byte for byte against python-osc in tests/test_vmc.py) ---

_BUNDLE_HEADER = b"#bundle\0" + (1).to_bytes(8, "big")  # time tag 1 = "immediately"
_F32 = struct.Struct(">f")


def _osc_string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return raw + b"\0" * (-len(raw) % 4)


def _element_prefix(address: str, string_arg: str | None, num_numbers: int) -> bytes:
    """Bundle element size + address + type tags (+ leading string argument), before the numeric arguments."""
    body = _osc_string(address) + _osc_string("," + TYPE_TAGS[address])
    if string_arg is not None:
        body += _osc_string(string_arg)
    return struct.pack(">i", len(body) + 4 * num_numbers) + body


@dataclass(frozen=True)
class _Encoder:
    ok: bytes
    time: bytes
    root: bytes
    bones: tuple[bytes, ...]
    blends: tuple[bytes, ...]
    apply: bytes


@functools.lru_cache(maxsize=8)
def _encoder(bone_names: tuple[str, ...], blend_names: tuple[str, ...]) -> _Encoder:
    return _Encoder(
        ok=_element_prefix(ADDR_OK, None, 1) + struct.pack(">i", 1),
        time=_element_prefix(ADDR_TIME, None, 1),
        root=_element_prefix(ADDR_ROOT, "root", 7),
        bones=tuple(_element_prefix(ADDR_BONE, n, 7) for n in bone_names),
        blends=tuple(_element_prefix(ADDR_BLEND, n, 1) for n in blend_names),
        apply=_element_prefix(ADDR_APPLY, None, 0),
    )


def _hold_to(arr: np.ndarray, n: int) -> np.ndarray:
    """Pad the frame axis to ``n`` by repeating the last frame."""
    if arr.shape[0] >= n:
        return arr[:n]
    return np.concatenate([arr, np.repeat(arr[-1:], n - arr.shape[0], axis=0)], axis=0)


def _unity_euler(pitch_deg: np.ndarray, yaw_deg: np.ndarray, roll_deg: np.ndarray) -> np.ndarray:
    """Unity's ``Quaternion.Euler(pitch, yaw, roll)`` [N, 4]: roll about Z first, then pitch about X, then yaw about Y
    (the product ``q_yaw ⊗ q_pitch ⊗ q_roll`` written out, as this runs per frame in the server's push)."""
    hp, hy, hr = (np.radians(np.asarray(a, dtype=np.float64)) / 2.0 for a in (pitch_deg, yaw_deg, roll_deg))
    sx, cx, sy, cy, sz, cz = np.sin(hp), np.cos(hp), np.sin(hy), np.cos(hy), np.sin(hr), np.cos(hr)
    x, y, z, w = cy * sx, sy * cx, -sy * sx, cy * cx  # q_yaw ⊗ q_pitch
    return np.stack([x * cz + y * sz, y * cz - x * sz, w * sz + z * cz, w * cz - z * sz], axis=-1)


def _scale_angle(q: np.ndarray, share: float) -> np.ndarray:
    """``share`` of each unit quaternion's rotation about the same axis (``quat_scale_angle``, without a slerp)."""
    q = np.where(q[..., 3:] < 0, -q, q)  # the short way round
    half = np.arccos(np.clip(q[..., 3], -1.0, 1.0))
    norm = np.linalg.norm(q[..., :3], axis=-1)
    axis = np.divide(q[..., :3], norm[..., None], out=np.zeros_like(q[..., :3]), where=norm[..., None] > 1e-12)
    return np.concatenate([axis * np.sin(share * half)[..., None], np.cos(share * half)[..., None]], axis=-1)


def face_bone_rotations(face: np.ndarray, neck_share: float = NECK_SHARE) -> dict[str, np.ndarray]:
    """Local Unity rotations ``{Neck, Head, LeftEye, RightEye: [N, 4]}`` from a face ``[N, 61]`` (wire order).

    Live Link's rotations are degrees / 180 in the face's own frame, and they map onto Unity's axes with the same
    signs: yaw > 0 turns toward the side the ARKit names call Right (the way ``EyeLookInLeft`` / ``EyeLookOutRight``
    move the gaze, as real captures show), i.e. Unity +Y; pitch > 0 looks down (Unity +X); roll > 0 tilts the top of
    the head toward the Left side (Unity +Z). The head rotation is split along its own axis: Neck gets ``neck_share``
    of the angle and Head the rest, so Neck ⊗ Head is the whole rotation. Eyes use yaw and pitch only (eyes do not
    visibly roll), clamped to ±``MAX_EYE_DEG``.
    """
    if not 0.0 <= neck_share <= 1.0:
        raise ValueError(f"the neck share must be between 0 and 1, got {neck_share}")
    face = np.asarray(face, dtype=np.float64)
    deg = lambda name: face[:, INDEX[name]] * 180.0  # noqa: E731
    head = _unity_euler(deg("HeadPitch"), deg("HeadYaw"), deg("HeadRoll"))
    out = {"Neck": _scale_angle(head, neck_share), "Head": _scale_angle(head, 1.0 - neck_share)}
    for side in ("Left", "Right"):
        yaw = np.clip(deg(f"{side}EyeYaw"), -MAX_EYE_DEG, MAX_EYE_DEG)
        pitch = np.clip(deg(f"{side}EyePitch"), -MAX_EYE_DEG, MAX_EYE_DEG)
        out[f"{side}Eye"] = _unity_euler(pitch, yaw, np.zeros_like(yaw))
    return out


def _body_arrays(body: BodyMotion, root_motion: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Root positions [N, 3], bone positions [N, B, 3] and local rotations [N, B, 4] of a body, in Unity axes."""
    pelvis = to_unity_positions(body.root_positions)
    root = np.zeros_like(pelvis)
    if root_motion:
        root[:, [0, 2]] = pelvis[:, [0, 2]]
    offsets = to_unity_positions(body.rest.offsets)
    pos = np.repeat(offsets[None], body.num_frames, axis=0)
    pos[:, 0] = pelvis - root  # hips relative to the root
    return root, pos, to_unity_quats(body.rotations)


def _add_face_bones(
    face: np.ndarray, neck_share: float, pos: np.ndarray | None, rot: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Bone positions/rotations/names with the face's Neck, Head and eyes: on top of the body's, or alone."""
    n = face.shape[0]
    quats = face_bone_rotations(face, neck_share)
    if rot is None:
        names = FACE_BONES
        pos = np.repeat(np.array([FACE_BONE_OFFSETS[b] for b in names])[None], n, axis=0)
        return pos, np.stack([quats[b] for b in names], axis=1), names
    rot = rot.copy()
    for bone in ("Neck", "Head"):
        k = BONE_INDEX[bone]
        rot[:, k] = quat_mul(rot[:, k], quats[bone])  # the face turns the head on top of the body's pose
    eye_pos = np.repeat(np.array([FACE_BONE_OFFSETS[b] for b in EYE_BONES])[None], n, axis=0)
    eye_rot = np.stack([quats[b] for b in EYE_BONES], axis=1)
    return (np.concatenate([pos, eye_pos], axis=1), np.concatenate([rot, eye_rot], axis=1),
            UNITY_BONES + EYE_BONES)


def make_clip(
    body: BodyMotion | None = None,
    face: np.ndarray | None = None,
    face_fps: float | None = None,
    fps: float = DEFAULT_FPS,
    root_motion: bool = True,
    face_bones: bool = True,
    neck_share: float = NECK_SHARE,
) -> VmcClip:
    """Resample a body (slerp) and/or a face ``[T, 61]`` (linear, frame centres) to ``fps`` and convert to Unity.

    The clip lasts as long as the longer input; the shorter one holds its last frame. With a face and
    ``face_bones``, its head and eye rotations go out as Neck/Head/LeftEye/RightEye bones (:func:`face_bone_rotations`).
    """
    if body is None and face is None:
        raise ValueError("nothing to send: give a body motion, a face, or both")
    if fps <= 0:
        raise ValueError(f"--fps must be positive, got {fps}")
    if not 0.0 <= neck_share <= 1.0:
        raise ValueError(f"--neck-share must be between 0 and 1, got {neck_share}")
    lengths = []
    rot = pos = root = None
    if body is not None:
        body = resample_motion(body, fps)
        lengths.append(body.num_frames)
    blend = None
    names: tuple[str, ...] = ()
    if face is not None:
        if face_fps is None or face_fps <= 0:
            raise ValueError(f"the face needs a positive frame rate, got {face_fps}")
        face = resample_curves(check_frames(face, "face"), face_fps, fps)
        shapes = to_perfect_sync(face)
        names = tuple(shapes)
        blend = np.clip(np.stack([shapes[n] for n in names], axis=-1), 0.0, 1.0).astype(np.float32)
        lengths.append(blend.shape[0])
    n = max(lengths)
    bone_names = UNITY_BONES
    if body is not None:
        root, pos, rot = (_hold_to(a, n) for a in _body_arrays(body, root_motion))
    if face is not None and face_bones:
        pos, rot, bone_names = _add_face_bones(_hold_to(face, n), neck_share, pos, rot)
    if rot is not None:
        pos, rot = pos.astype(np.float32), rot.astype(np.float32)
    if root is not None:
        root = root.astype(np.float32)
    if blend is not None:
        blend = _hold_to(blend, n)
    return VmcClip(
        fps=float(fps), num_frames=n, root_positions=root, bone_positions=pos, bone_rotations=rot,
        blend_names=names, blend_values=blend, bone_names=bone_names,
    )


class VmcSender:
    """UDP sender of OSC datagrams to one VMC receiver (a Marionette, usually on port 39539)."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        if not 0 < int(port) < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        try:
            family, _, _, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
        except OSError as err:
            raise OSError(f"cannot resolve VMC receiver host {host!r} ({err}); check --host") from err
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._address = address
        self.host, self.port = host, int(port)

    def send(self, dgram: bytes) -> None:
        try:
            self._sock.sendto(dgram, self._address)
        except OSError as err:  # e.g. nobody listening on a local port (ICMP refused): keep streaming
            log.debug("send to %s:%d failed: %s", self.host, self.port, err)

    def close(self) -> None:
        self._sock.close()


def iter_frames(clip: VmcClip) -> Iterator[tuple[int, float, list[Message]]]:
    """``(index, time, messages)`` for each frame of one pass, time = index / fps."""
    for i in range(clip.num_frames):
        t = i / clip.fps
        yield i, t, clip.messages(i, t)


def write_dry_run(clip: VmcClip, path: str | Path) -> int:
    """Write what would be sent to a JSON Lines file (one bundle per line: frame, time, messages); no network.

    Returns the number of frames written. The file is written atomically.
    """
    with atomic_write(path, "w") as f:
        for i, t, msgs in iter_frames(clip):
            rows = [[addr, "," + TYPE_TAGS[addr], args] for addr, args in msgs]
            f.write(json.dumps({"frame": i, "t": round(t, 6), "messages": rows}) + "\n")
    return clip.num_frames


def stream_clip(
    clip: VmcClip,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    loop: bool = False,
    stop: threading.Event | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    delay_s: float = 0.0,
):
    """Send ``clip`` one bundle per frame, scheduled by time; returns ``motion.playback.ScheduleStats``.

    With ``audio`` the frames follow the audio output stream's clock (frame 0 at the first heard sample);
    ``loop`` repeats until ``stop`` is set (not with audio: the sound would not repeat).
    """
    if audio is not None and loop:
        raise ValueError("looping is not supported together with audio; drop --loop or --wav")
    if audio is not None and not sample_rate:
        raise ValueError("audio needs its sample_rate")
    sender = VmcSender(host, port)

    def send(i: int, due: float) -> None:
        sender.send(clip.bundle(i, due))

    try:
        if audio is None:
            return playback.run_schedule(clip.num_frames, clip.fps, send, playback.MonotonicClock(), delay_s, loop,
                                         stop)
        with playback.AudioPlayer(audio, int(sample_rate)) as player:
            stats = playback.run_schedule(clip.num_frames, clip.fps, send, player, delay_s, False, stop)
            # Let the tail of the audio play out (bounded, in case the stream never reports its end).
            audio_s = len(np.asarray(audio).reshape(-1)) / float(sample_rate)
            while (stop is None or not stop.is_set()) and player.now() < audio_s + 0.5:
                if player.finished.wait(0.05):
                    break
            return stats
    finally:
        sender.close()


def stream_face(
    frames: np.ndarray,
    fps: float,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    stop: threading.Event | None = None,
    face_bones: bool = True,
):
    """Stream a face ``[T, 61]`` (Live Link wire order, at ``fps``) as Perfect Sync blendshapes, ± audio in sync.

    With ``face_bones`` the head and eye rotations go along as Neck/Head/LeftEye/RightEye bones. Sent at the face's
    own rate; blocks until done or ``stop`` is set; returns the schedule's timing stats.
    """
    clip = make_clip(face=frames, face_fps=fps, fps=fps, face_bones=face_bones)
    log.info("streaming %d face frames at %.1f fps to %s:%d", clip.num_frames, fps, host, port)
    return stream_clip(clip, host, port, stop=stop, audio=audio, sample_rate=sample_rate)


__all__ = [
    "ADDR_APPLY", "ADDR_BLEND", "ADDR_BONE", "ADDR_OK", "ADDR_ROOT", "ADDR_TIME", "DEFAULT_FPS", "DEFAULT_HOST",
    "DEFAULT_PORT", "EYE_BONES", "FACE_BONE_OFFSETS", "FACE_BONES", "MAX_EYE_DEG", "NECK_SHARE", "TYPE_TAGS", "VmcClip",
    "VmcSender", "build_bundle", "face_bone_rotations", "iter_frames", "make_clip", "stream_clip", "stream_face",
    "write_dry_run",
]
