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
from pathlib import Path

from motion.body.player import run
from motion.body.skeleton import SOURCE_FPS
from motion.body.vmc import DEFAULT_FPS, DEFAULT_HOST, DEFAULT_PORT, NECK_SHARE
from motion.cli import user_error_types
from motion.face.postprocess import DEFAULT_FPS as FACE_FPS
from motion.inputs import bone_factor, bounded_float, bounded_int, cli_parser, port_number, positive_float

log = logging.getLogger("vmc_cli")

BODY_NPY_HELP = "MotionGPT / HumanML3D joint positions .npy ([1, T, 22, 3] or [T, 22, 3], metres, 20 fps)"


_EPILOG = __doc__.split("Examples::", 1)[1] + """
Each frame is one OSC bundle: /VMC/Ext/OK, /VMC/Ext/T, /VMC/Ext/Root/Pos, /VMC/Ext/Bone/Pos for the 22 humanoid
bones (local rotations, identity in the T-pose, Unity axes), then the 52 Perfect Sync /VMC/Ext/Blend/Val and
/VMC/Ext/Blend/Apply. The face's head and eye rotations go out as /VMC/Ext/Bone/Pos Neck (--neck-share of the head
rotation), Head, LeftEye and RightEye (on top of the body's Neck/Head; a face alone sends no Root). The receiver's
avatar needs Perfect Sync blendshapes for the face.
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser(
        "vmc_cli.py",
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
    g.add_argument("--face-fps", type=bounded_float(1.0, 1000.0), default=FACE_FPS, help="frame rate of a .npy face (a CSV has its own)")
    g.add_argument("--wav", type=Path, help="audio to play in sync (frames follow the sound card's clock)")
    g.add_argument("--no-audio", action="store_true",
                   help="do not play --wav (no sound card); frames use the wall clock")
    g.add_argument("--no-face-bones", action="store_true",
                   help="send the face's blendshapes only, not its head and eye rotations (Neck/Head/LeftEye/RightEye)")
    g.add_argument("--neck-share", type=bounded_float(0.0, 1.0), default=NECK_SHARE,
                   help="share of the face's head rotation given to the Neck bone (the Head gets the rest)")
    g = p.add_argument_group("sending")
    g.add_argument("--host", default=DEFAULT_HOST, help="VMC receiver (Marionette) address")
    g.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="VMC receiver port")
    g.add_argument("--fps", type=bounded_float(1.0, 1000.0), default=DEFAULT_FPS, help="send rate; motion is resampled to it (slerp)")
    g.add_argument("--loop", action="store_true", help="repeat until Ctrl+C (not with --wav)")
    g.add_argument("--delay", type=bounded_float(0.0, 3600.0), default=0.0, help="seconds to wait before the first frame")
    g.add_argument("--dry-run", type=Path, metavar="OUT",
                   help="write every bundle (frame, time, messages) as JSON Lines to OUT and send nothing")
    g.add_argument("--bvh", type=Path, metavar="OUT", help="write the body as BVH to OUT (at --fps) and send nothing")
    g.add_argument("--bvh-scale", type=bounded_float(1e-6, 1e6), default=1.0, help="BVH length unit per metre (100 = centimetres)")
    g = p.add_argument_group("body conversion")
    g.add_argument("--source-fps", type=bounded_float(1.0, 1000.0), default=SOURCE_FPS, help="frame rate of the .npy body files")
    g.add_argument("--smooth", type=bounded_int(1, 301), default=1, help="odd moving-average window on joint positions (1 = off)")
    g.add_argument("--damping", type=bone_factor, action="append", default=[], metavar="BONE=FACTOR",
                   help="scale a bone's rotation angle, e.g. LeftUpperArm=0.8 (Unity bone names; repeatable)")
    g.add_argument("--no-align", action="store_true",
                   help="join .npy clips as they are (each starts at its own origin and facing) instead of "
                   "continuing from where the previous clip ended")
    g.add_argument("--no-root-motion", action="store_true", help="keep the character in place (no horizontal travel)")
    g.add_argument("--a2p-mode", choices=("rotations", "positions"), default="rotations",
                   help="audio2photoreal: use the rig's rotations, or refit the T-pose to its joint positions")
    g.add_argument("--a2p-map", type=Path, help='audio2photoreal: JSON {"Hips": "<rig joint>", ...} for other rigs')
    g.add_argument("--a2p-scale", type=positive_float, default=1.0, help="audio2photoreal: position units per metre")
    g.add_argument("--a2p-fps", type=bounded_float(1.0, 1000.0), help="audio2photoreal: override the export's frame rate")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")

    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except (KeyError, RuntimeError, *user_error_types()) as err:
        if args.verbose:
            log.exception("failed")
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
