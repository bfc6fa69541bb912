"""Check a take at a glance: waveform on top, the main face shapes below on the same time axis, drops marked.

    python motion/plot_take.py records/2023-12-23-17-19-54          # writes records/2023-12-23-17-19-54.png
    python motion/plot_take.py records/X --show
    python motion/plot_take.py out/tmp.npy --fps 86.1328125 --wav out/tmp.wav
    python motion/plot_take.py Slate_3_iPhone.csv                     # a Live Link Face app take

Also prints a summary: duration, frames, rate, gaps, value ranges and the shapes that never move.
"""

from __future__ import annotations

import argparse
import logging
import sys

from motion.cli import run_cli
from motion.inputs import bounded_float, cli_parser
from motion.livelink.plot import run


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser("plot_take.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("take", help="records/<name>, one of its files, any [T, 61] .npy (with --fps) or an app .csv")
    p.add_argument("--fps", type=bounded_float(0.1, 1000.0), default=None, help="frame rate of a bare .npy (default: the take's JSON)")
    p.add_argument("--wav", default=None, help="audio for a bare .npy (default: the .wav beside it)")
    p.add_argument("--out", default=None, help="PNG to write (default: beside the take, <name>.png)")
    p.add_argument("--show", action="store_true", help="open a window as well")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    return run_cli("plot_take.py", run, args)


if __name__ == "__main__":
    sys.exit(main())
