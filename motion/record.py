"""Record speech and the iPhone's Live Link Face stream together into ``records/`` (one take per run by default).

    python motion/record.py                      # 20 s from the default microphone + the app on UDP 0.0.0.0:11111
    python motion/record.py --takes 5 --seconds 10
    python motion/record.py --audio-file speech.wav          # play a file in place of the microphone
    python motion/record.py --import Slate_3_iPhone.csv --audio Slate_3.mov   # a take the app recorded itself

Each take is ``<YYYY-mm-dd-HH-MM-SS>.wav`` (mono PCM16, 44.1 kHz) + ``.npy`` ([N, 61] float32, Live Link order) +
``.json`` (per-frame arrival times relative to the first audio sample, frame numbers, packet counts, gaps; see
``motion/livelink/take.py``). Audio and frames are streamed to ``<stem>.partial/`` while recording, so Ctrl-C,
SIGTERM, an error, or even a kill keeps what was captured: the partial take is finished at the end of the take, by the
next run into the same folder, or by ``record.py --recover [DIR]``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from motion.constants import LIVELINK_PORT, TTS_SAMPLE_RATE
from motion.inputs import bounded_float, cli_parser, port_number, positive_int, sample_rate_hz
from motion.livelink.recorder import run

DEFAULT_PORT, SAMPLE_RATE = LIVELINK_PORT, TTS_SAMPLE_RATE


def _device_arg(text: str) -> int | str:
    return int(text) if text.isdigit() else text


MAX_TAKE_SECONDS = 24 * 3600.0


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser(
        "record.py",
        description="Record a microphone and the Live Link Face app's UDP stream together into a take "
        "(<out-dir>/<YYYY-mm-dd-HH-MM-SS>.wav/.npy/.json). In the app: Settings > Live Link > add this machine's IP, "
        f"port {DEFAULT_PORT}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--seconds", type=bounded_float(0.01, MAX_TAKE_SECONDS), default=None, help="length of each take (default 20, or the --audio-file's length)")
    p.add_argument("--takes", type=positive_int, default=1, help="record this many takes in a row, with a countdown before each")
    p.add_argument("--countdown", type=bounded_float(0.0, 3600.0), default=3.0, help="seconds of countdown before each take when --takes > 1")
    p.add_argument("--out-dir", default="records", help="folder for the takes")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on for the app's packets (0.0.0.0 = all)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="UDP port the app sends to")
    p.add_argument("--device", type=_device_arg, default=None, help="input device index or name (see --list-devices)")
    p.add_argument("--sample-rate", type=sample_rate_hz, default=SAMPLE_RATE, help="audio sample rate (mono)")
    p.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    p.add_argument("--audio-file", default=None, help="play this audio file in place of the microphone (same timing "
                   "as a live input; for machines without a sound card)")
    p.add_argument("--import", dest="import_csv", metavar="CSV", default=None,
                   help="import a take the Live Link Face app recorded itself (its CSV) instead of recording")
    p.add_argument("--audio", default=None, help="with --import: the take's .mov (audio track via ffmpeg) or a wav "
                   "(default: the .mov beside the CSV)")
    p.add_argument("--offset-ms", type=bounded_float(-3.6e6, 3.6e6), default=None, help="with --import: when the first CSV row happens "
                   "relative to the audio start (default: from the video's timecode, else 0)")
    p.add_argument("--recover", nargs="?", const="", default=None, metavar="DIR",
                   help="finish the takes a killed recorder left as <stem>.partial/ folders in DIR (default: --out-dir) "
                   "and exit; a normal run also finishes those in --out-dir before recording")
    p.add_argument("--accept-device", default=None, metavar="ID",
                   help="keep only frames from this device id (the app's UUID; see a take's JSON); others are counted "
                   "as ignored")
    p.add_argument("--accept-subject", default=None, metavar="NAME",
                   help="keep only frames of this Live Link subject name; others are counted as ignored")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
