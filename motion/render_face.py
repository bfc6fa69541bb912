"""Render a face animation with its audio as an MP4 (for sharing, and for checking sync frame by frame).

    python motion/render_face.py records/2023-12-23-17-19-54 -o take.mp4           # a recorded take (its wav)
    python motion/render_face.py out/speech.npy --wav out/speech.wav -o speech.mp4  # any [T, 61] .npy or app CSV
    python motion/render_face.py records/X --compare out/X.v.npy --labels recorded predicted -o cmp.mp4

The face is the 2D face of ``motion/face/render.py`` drawn from the 61 Live Link values (the web UI's preview draws
the same face). ``--compare`` puts a second curve set beside the first (resampled to the first one's frames).
Needs ffmpeg.
"""

from __future__ import annotations

import argparse
import logging
import sys

from motion.cli import run_cli
from motion.face.render import render_face_file
from motion.inputs import cli_parser, finite_float, positive_float, positive_int


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser("render_face.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("take_or_npy", help="records/<take>, one of its files, a [T, 61] .npy or a Live Link Face app .csv")
    p.add_argument("--wav", default=None, help="audio (any format ffmpeg reads; default: the take's / the .wav beside)")
    p.add_argument("-o", "--out", required=True, help="MP4 to write")
    p.add_argument("--compare", default=None, help="second curve set drawn beside the first (e.g. predicted)")
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL", help="captions of the faces")
    p.add_argument("--fps", type=positive_float, default=None, help="rate of a bare .npy (default: its JSON, else 60)")
    p.add_argument("--delay-ms", type=finite_float, default=0.0,
                   help="show the curves this much later (positive) or earlier than the audio")
    p.add_argument("--size", type=positive_int, default=480, help="height (and width) of one face in pixels (even)")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    out = render_face_file(args.take_or_npy, args.out, wav=args.wav, compare=args.compare, labels=args.labels,
                           fps=args.fps, delay_s=args.delay_ms / 1000.0, size=args.size)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    return run_cli("render_face", run, args)


if __name__ == "__main__":
    sys.exit(main())
