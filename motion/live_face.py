"""Live face: a microphone (or a file played as one) drives the avatar's face as you speak.

    python motion/live_face.py --livelink 127.0.0.1:11111             # the default microphone -> Unreal's Live Link
    python motion/live_face.py --vmc 127.0.0.1:39539 --out records     # -> VSeeFace etc., and keep the take
    python motion/live_face.py --wav speech.wav --livelink             # a file played as if live (--no-realtime: fast)
    python motion/live_face.py --wav speech.wav --out takes --emotion joy:0.7   # a smiling face (as wav_to_visemes.py)
    python motion/live_face.py --list-devices

Each 60 fps frame leaves as soon as its audio (plus the causal head's lookahead, at most 0.1 s) has arrived; the
measured latency (capture of the frame's centre -> frame sent) is logged once a second. Ctrl-C stops and keeps the
take (``--out``: ``<stem>.wav`` + ``.npy`` [T, 61] + ``.csv`` (Live Link Face app) + ``.json``, written atomically).
The take is streamed to ``<stem>.partial/`` as it is captured, so a kill or a power cut keeps it too:
``python motion/live_face.py --recover DIR`` (or the next run with ``--out DIR``) finishes it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from motion.cli import run_cli
from motion.face.emotion import EMOTIONS
from motion.inputs import bounded_float, cli_parser, non_negative_int, sample_rate_hz
from motion.wav_to_visemes import emotion_arg  # one parser for --emotion (wav_to_visemes.py's)


def _device_arg(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser(
        "live_face.py",
        description="Microphone (or --wav FILE played as if live) -> face frames as you speak -> Unreal Live Link, "
        "a VMC app and/or a take on disk.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--wav", default=None, metavar="FILE", help="play this audio file as if live instead of the microphone")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                   help="with --wav: deliver the file at its real pace (--no-realtime: as fast as possible)")
    p.add_argument("--device", type=_device_arg, default=None, help="input device index or name (see --list-devices)")
    p.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    p.add_argument("--sample-rate", type=sample_rate_hz, default=None,
                   help="microphone sample rate (default 48000; a --wav keeps its own)")
    p.add_argument("--livelink", nargs="?", const="127.0.0.1:11111", default=None, metavar="HOST:PORT",
                   help="send Live Link Face packets (Unreal's Apple ARKit Face source; default 127.0.0.1:11111)")
    p.add_argument("--subject", default=None, help="Live Link subject name (default: as tts2ue)")
    p.add_argument("--vmc", nargs="?", const="127.0.0.1:39539", default=None, metavar="HOST:PORT",
                   help="send Perfect Sync blendshapes + head/eye bones over VMC (default 127.0.0.1:39539)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="keep the take in DIR: <stem>.wav + .npy [T, 61] + .csv (app) + .json")
    p.add_argument("--recover", nargs="?", const="", default=None, metavar="DIR",
                   help="finish the takes a killed run left as <stem>.partial/ folders in DIR (default: --out) and exit; "
                   "a run with --out DIR also finishes those first")
    p.add_argument("--seconds", type=bounded_float(0.01, 24 * 3600.0), default=None,
                   help="stop after this much audio (default: the file's end, or Ctrl-C)")
    p.add_argument("--head", default=None, metavar="V_*.pth",
                   help="a causal expression head (train_ms.py --visemes --causal); default: the shipped causal head")
    p.add_argument("--alive", action=argparse.BooleanOptionalAction, default=True,
                   help="blinks, brows, nods and idle head/eye motion decided from the audio so far")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the alive layer")
    p.add_argument("--emotion", type=emotion_arg, default=None, metavar="NAME[:WEIGHT][,NAME:WEIGHT]",
                   help=f"an emotion on the face: {', '.join(EMOTIONS)}; weights 0..1, e.g. joy:0.7 or "
                   "joy:0.5,surprise:0.3 (as wav_to_visemes.py; lips still close on /p b m/)")
    p.add_argument("--emotion-intensity", type=bounded_float(0.0, 2.0), default=1.0, help="scales the emotion, 0..2")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    from motion.face.live_run import run  # torch + the head: not for --help

    return run_cli(build_parser().prog, run, args)


if __name__ == "__main__":
    sys.exit(main())
