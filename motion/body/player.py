"""Load body motion and/or a face and play them to a VMC app, or write BVH / a dry-run log: the library behind
``motion/vmc_cli.py``.
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

import numpy as np

from bert_vits2.audio import load_audio
from motion.arkit import check_frames
from motion.body.a2p import a2p_to_motion, load_a2p, load_name_map
from motion.body.bvh import write_bvh
from motion.body.skeleton import (
    apply_damping,
    check_joints,
    concat_motions,
    join_clips,
    positions_to_rotations,
    resample_motion,
)
from motion.body.vmc import NECK_SHARE, make_clip, stream_clip, write_dry_run
from motion.cli import refuse_overwriting_inputs
from motion.inputs import bone_factor
from motion.inputs import load_npy as load_checked
from motion.livelink.app_csv import read_csv

log = logging.getLogger("vmc_cli")

BODY_NPY_HELP = "MotionGPT / HumanML3D joint positions .npy ([1, T, 22, 3] or [T, 22, 3], metres, 20 fps)"


def _parse_damping(items: list) -> dict[str, float]:
    """``--damping`` values: (bone, factor) pairs from :func:`motion.inputs.bone_factor`, or ``BONE=FACTOR`` strings."""
    out = {}
    for item in items:
        if isinstance(item, str):
            try:
                item = bone_factor(item)
            except argparse.ArgumentTypeError as err:
                raise ValueError(f"--damping {err}") from None
        name, factor = item
        out[name] = float(factor)
    return out


def load_npy(path: Path) -> np.ndarray:
    return load_checked(path)


def load_body(args: argparse.Namespace):
    """The positional inputs → one ``BodyMotion`` (or None when there are none)."""
    if not args.inputs:
        return None
    kinds = []
    for path in args.inputs:
        suffix = path.suffix.lower()
        if suffix == ".npy":
            kinds.append("humanml3d")
        elif suffix in (".npz", ".json"):
            kinds.append("a2p")
        else:
            raise ValueError(f"{path}: unknown motion format {suffix!r}; expected {BODY_NPY_HELP}, or an "
                             "audio2photoreal export (.npz / .json)")
    if len(set(kinds)) > 1:
        raise ValueError(
            "cannot join HumanML3D .npy files and audio2photoreal exports in one run; send them separately"
        )
    damping = _parse_damping(args.damping)
    if kinds[0] == "humanml3d":
        clips = [check_joints(load_npy(p), str(p)) for p in args.inputs]
        return positions_to_rotations(join_clips(clips, align=not args.no_align), fps=args.source_fps,
                                      damping=damping, smooth=args.smooth)

    name_map = load_name_map(args.a2p_map) if args.a2p_map else None
    motions = [
        a2p_to_motion(load_a2p(p, args.a2p_fps), name_map, args.a2p_mode, args.a2p_scale) for p in args.inputs
    ]

    motions = [apply_damping(m, damping) for m in motions]
    return concat_motions(motions)


def load_face(args: argparse.Namespace) -> tuple[np.ndarray, float] | None:
    if args.face is None:
        return None
    suffix = args.face.suffix.lower()
    if suffix == ".npy":
        return check_frames(load_npy(args.face), str(args.face)), args.face_fps
    if suffix == ".csv":
        return read_csv(args.face)
    raise ValueError(f"{args.face}: unknown face format {suffix!r}; expected a [T, 61] .npy or a Live Link Face .csv")


def run(args: argparse.Namespace) -> int:
    if args.fps <= 0:
        raise ValueError(f"--fps must be positive, got {args.fps}")

    inputs = [(f"motion file {p.name}", p) for p in args.inputs] + [
        ("--face", args.face), ("--wav", args.wav), ("--a2p-map", args.a2p_map)]
    refuse_overwriting_inputs("--bvh", args.bvh, inputs)
    refuse_overwriting_inputs("--dry-run", args.dry_run, inputs + [("--bvh", args.bvh)])
    body = load_body(args)
    face = load_face(args)
    if body is None and face is None:
        raise ValueError("nothing to send: give body motion files and/or --face (see --help)")
    if args.bvh:
        if body is None:
            raise ValueError("--bvh needs body motion files")

        write_bvh(resample_motion(body, args.fps), args.bvh, args.bvh_scale)
        log.info("wrote %s", args.bvh)
    face_frames, face_fps = face if face is not None else (None, None)
    clip = make_clip(body, face_frames, face_fps, fps=args.fps, root_motion=not args.no_root_motion,
                     face_bones=not getattr(args, "no_face_bones", False),
                     neck_share=getattr(args, "neck_share", NECK_SHARE))
    if args.dry_run:
        n = write_dry_run(clip, args.dry_run)
        log.info("wrote %d bundles (%.2f s at %.1f fps) to %s", n, clip.duration_s, clip.fps, args.dry_run)
    if args.bvh or args.dry_run:
        return 0
    audio = sr = None
    if args.wav and not args.no_audio:
        if args.loop:
            raise ValueError("--loop cannot be combined with --wav (the sound would not repeat)")

        audio, sr = load_audio(args.wav, sample_rate=None)
    log.info("sending %d frames (%.2f s) at %.1f fps to %s:%d%s", clip.num_frames, clip.duration_s, clip.fps,
             args.host, args.port, " in a loop (Ctrl+C stops)" if args.loop else "")
    stop = threading.Event()
    try:
        stats = stream_clip(clip, args.host, args.port, loop=args.loop, stop=stop, audio=audio, sample_rate=sr,
                            delay_s=args.delay)
    except KeyboardInterrupt:
        stop.set()
        log.info("stopped")
        return 130
    s = stats.summary_ms()
    log.info("sent %d bundles; lateness median %.2f ms, p99 %.2f ms", stats.sent, s["median"], s["p99"])
    return 0
