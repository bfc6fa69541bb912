"""Send body motion (MotionGPT / HumanML3D, audio2photoreal) and a face to a VMC app, or export it as BVH.

Examples::

    python motion/vmc_cli.py walk.npy wave.npy                       # to VSeeFace etc. on 127.0.0.1:39539
    python motion/vmc_cli.py walk.npy --face face.csv --wav voice.wav  # body + Perfect Sync face + audio in sync
    python motion/vmc_cli.py --face face.npy --face-fps 60 --loop     # face only
    python motion/vmc_cli.py walk.npy --bvh walk.bvh                   # write BVH for Blender, send nothing
    python motion/vmc_cli.py walk.npy --dry-run sent.jsonl             # write the messages with times, send nothing
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger("vmc_cli")

BODY_NPY_HELP = "MotionGPT / HumanML3D joint positions .npy ([1, T, 22, 3] or [T, 22, 3], metres, 20 fps)"


_EPILOG = __doc__.split("Examples::", 1)[1] + """
Each frame is one OSC bundle: /VMC/Ext/OK, /VMC/Ext/T, /VMC/Ext/Root/Pos, /VMC/Ext/Bone/Pos for the 22 humanoid
bones (local rotations, identity in the T-pose, Unity axes), then the 52 Perfect Sync /VMC/Ext/Blend/Val and
/VMC/Ext/Blend/Apply. The receiver's avatar needs Perfect Sync blendshapes for the face.
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    from motion.postprocess import DEFAULT_FPS as FACE_FPS
    from motion.skeleton import SOURCE_FPS
    from motion.vmc import DEFAULT_FPS, DEFAULT_HOST, DEFAULT_PORT

    p = argparse.ArgumentParser(
        prog="vmc_cli.py",
        description="Stream body motion and/or a face to a VMC receiver (VSeeFace, VMagicMirror, Warudo, EVMC4U, "
        "VMC4UE, VMCtoMOP...) as OSC bundles, one per frame, scheduled by time; or write them / a BVH to a file.",
        formatter_class=_HelpFormatter,
        epilog=_EPILOG,
    )
    p.add_argument(
        "inputs", nargs="*", type=Path,
        help=f"body motion files, played one after another: {BODY_NPY_HELP}; or audio2photoreal joint-state "
        "exports (.npz / .json with joint_names and joint_states [T, J, 8]). Do not mix the two kinds.",
    )
    g = p.add_argument_group("face and audio")
    g.add_argument("--face", type=Path, help="face curves: [T, 61] .npy (Live Link wire order) or a Live Link Face CSV")
    g.add_argument("--face-fps", type=float, default=FACE_FPS, help="frame rate of a .npy face (a CSV has its own)")
    g.add_argument("--wav", type=Path, help="audio to play in sync (frames follow the sound card's clock)")
    g.add_argument("--no-audio", action="store_true",
                   help="do not play --wav (no sound card); frames use the wall clock")
    g = p.add_argument_group("sending")
    g.add_argument("--host", default=DEFAULT_HOST, help="VMC receiver (Marionette) address")
    g.add_argument("--port", type=int, default=DEFAULT_PORT, help="VMC receiver port")
    g.add_argument("--fps", type=float, default=DEFAULT_FPS, help="send rate; motion is resampled to it (slerp)")
    g.add_argument("--loop", action="store_true", help="repeat until Ctrl+C (not with --wav)")
    g.add_argument("--delay", type=float, default=0.0, help="seconds to wait before the first frame")
    g.add_argument("--dry-run", type=Path, metavar="OUT",
                   help="write every bundle (frame, time, messages) as JSON Lines to OUT and send nothing")
    g.add_argument("--bvh", type=Path, metavar="OUT", help="write the body as BVH to OUT (at --fps) and send nothing")
    g.add_argument("--bvh-scale", type=float, default=1.0, help="BVH length unit per metre (100 = centimetres)")
    g = p.add_argument_group("body conversion")
    g.add_argument("--source-fps", type=float, default=SOURCE_FPS, help="frame rate of the .npy body files")
    g.add_argument("--smooth", type=int, default=1, help="odd moving-average window on joint positions (1 = off)")
    g.add_argument("--damping", action="append", default=[], metavar="BONE=FACTOR",
                   help="scale a bone's rotation angle, e.g. LeftUpperArm=0.8 (Unity bone names; repeatable)")
    g.add_argument("--no-align", action="store_true",
                   help="join .npy clips as they are (each starts at its own origin and facing) instead of "
                   "continuing from where the previous clip ended")
    g.add_argument("--no-root-motion", action="store_true", help="keep the character in place (no horizontal travel)")
    g.add_argument("--a2p-mode", choices=("rotations", "positions"), default="rotations",
                   help="audio2photoreal: use the rig's rotations, or refit the T-pose to its joint positions")
    g.add_argument("--a2p-map", type=Path, help='audio2photoreal: JSON {"Hips": "<rig joint>", ...} for other rigs')
    g.add_argument("--a2p-scale", type=float, default=1.0, help="audio2photoreal: position units per metre")
    g.add_argument("--a2p-fps", type=float, help="audio2photoreal: override the export's frame rate")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    return p


def _parse_damping(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--damping {item!r}: expected BONE=FACTOR, e.g. LeftUpperArm=0.8") from None
        if not sep:
            raise ValueError(f"--damping {item!r}: expected BONE=FACTOR, e.g. LeftUpperArm=0.8")
    return out


def load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from err


def load_body(args: argparse.Namespace):
    """The positional inputs → one ``BodyMotion`` (or None when there are none)."""
    from motion.skeleton import check_joints, concat_motions, join_clips, positions_to_rotations

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
    from motion.a2p import a2p_to_motion, load_a2p, load_name_map

    name_map = load_name_map(args.a2p_map) if args.a2p_map else None
    motions = [
        a2p_to_motion(load_a2p(p, args.a2p_fps), name_map, args.a2p_mode, args.a2p_scale) for p in args.inputs
    ]
    from motion.skeleton import apply_damping

    motions = [apply_damping(m, damping) for m in motions]
    return concat_motions(motions)


def load_face(args: argparse.Namespace) -> tuple[np.ndarray, float] | None:
    if args.face is None:
        return None
    suffix = args.face.suffix.lower()
    if suffix == ".npy":
        from motion.arkit import check_frames

        return check_frames(load_npy(args.face), str(args.face)), args.face_fps
    if suffix == ".csv":
        from motion.llf_csv import read_csv

        return read_csv(args.face)
    raise ValueError(f"{args.face}: unknown face format {suffix!r}; expected a [T, 61] .npy or a Live Link Face .csv")


def run(args: argparse.Namespace) -> int:
    from motion.vmc import make_clip, stream_clip, write_dry_run

    if args.fps <= 0:
        raise ValueError(f"--fps must be positive, got {args.fps}")
    body = load_body(args)
    face = load_face(args)
    if body is None and face is None:
        raise ValueError("nothing to send: give body motion files and/or --face (see --help)")
    if args.bvh:
        if body is None:
            raise ValueError("--bvh needs body motion files")
        from motion.bvh_export import write_bvh
        from motion.skeleton import resample_motion

        write_bvh(resample_motion(body, args.fps), args.bvh, args.bvh_scale)
        log.info("wrote %s", args.bvh)
    face_frames, face_fps = face if face is not None else (None, None)
    clip = make_clip(body, face_frames, face_fps, fps=args.fps, root_motion=not args.no_root_motion)
    if args.dry_run:
        n = write_dry_run(clip, args.dry_run)
        log.info("wrote %d bundles (%.2f s at %.1f fps) to %s", n, clip.duration_s, clip.fps, args.dry_run)
    if args.bvh or args.dry_run:
        return 0
    audio = sr = None
    if args.wav and not args.no_audio:
        if args.loop:
            raise ValueError("--loop cannot be combined with --wav (the sound would not repeat)")
        from motion.audio import load_audio

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        if args.verbose:
            log.exception("failed")
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
