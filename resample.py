"""Resample a folder of audio (any format, rate, channel count) to 44.1 kHz mono 16-bit PCM wav for training.

    python resample.py --in-dir audios/raw --out-dir audios/wavs

Sub-folders are kept (audios/raw/alice/001.mp3 -> audios/wavs/alice/001.wav). Files already converted are skipped
unless --overwrite, so an interrupted run can simply be started again.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bert_vits2.config_yml import YmlError, add_yml_argument, apply_yml, first_use
from bert_vits2.preprocess import AUDIO_EXTENSIONS, resample_folder
from motion.inputs import cli_parser, sample_rate_hz, whole_number


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("resample.py",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Readable formats: " + " ".join(sorted(AUDIO_EXTENSIONS)) + " (soundfile; others through ffmpeg).",
    )
    parser.add_argument("--in-dir", "--in_dir", default="audios/raw", help="folder with the raw audio (default: %(default)s)")
    parser.add_argument("--out-dir", "--out_dir", default="audios/wavs", help="where the wavs go (default: %(default)s)")
    parser.add_argument("--sr", "--sampling-rate", type=sample_rate_hz, default=44100, dest="sr",
                        help="output sampling rate; must match data.sampling_rate of the config (default: %(default)s)")
    parser.add_argument("--processes", type=whole_number(0, 256, "process count"), default=0,
                        help="worker processes; 0 = cpu_count-2 on machines with more than 4 cores, else 1 (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="convert again even if the output wav exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_yml_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if first_use(args.yml_config, argv, "resample.py"):
        return 0
    try:
        apply_yml(parser, args, argv, "resample")  # config.yml's resample section; command-line options win
    except (FileNotFoundError, YmlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = resample_folder(args.in_dir, args.out_dir, args.sr, args.processes, args.overwrite, not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.describe(f"resample {args.in_dir} -> {args.out_dir} at {args.sr} Hz"))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
