"""Prepare recorded takes for expression-head training: ``python ./motion/prepare_visemes.py``.

For every take in records/ (wav + npy + json): log-mel features (mel head) and, when a G checkpoint is found, z from
its posterior encoder (z head), face frames on a 60 fps grid with the audio<->face offset estimated and applied, and
filelists/train_visemes.list + val_visemes.list. Then: ``python train_ms.py -m MODEL --config CONFIG --visemes``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from motion.cli import run_cli
from motion.face.prepare import parse_val_size, run
from motion.inputs import bounded_float, bounded_int, cli_parser


def _val_size(text: str) -> int | float:
    try:
        return parse_val_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _n_mels(text: str) -> int:
    value = bounded_int(8, 512)(text)
    if value % 4:
        raise argparse.ArgumentTypeError(f"{value} is not divisible by 4")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = cli_parser("prepare_visemes.py", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("-m", "--model", default="OUTPUT_MODEL",
                    help="TTS model folder (newest G_*.pth in it or in its models/) or a G_*.pth file, for z features; "
                         "when none is found only mel features are made")
    ap.add_argument("-c", "--config", default="./configs/config.json", help="Bert-VITS2 config of that G checkpoint")
    ap.add_argument("--posterior", default=None, help="an exported post_enc.pth to use instead of a G checkpoint")
    ap.add_argument("--records", default="./records", help="folder of takes (<take>.wav + .npy + .json)")
    ap.add_argument("-o", "--output", default="./filelists", help="folder for train_visemes.list / val_visemes.list")
    ap.add_argument("--no-mel", action="store_true", help="do not compute mel features (z head only)")
    ap.add_argument("--no-z", action="store_true", help="do not compute z even if a G checkpoint exists")
    ap.add_argument("--n-mels", type=_n_mels, default=80, help="mel bands of the mel-head features (divisible by 4)")
    ap.add_argument("--z-mode", choices=("mean", "sample"), default="mean",
                    help="z = posterior mean m (deterministic) or a sample m + eps*exp(logs) (the original; augmentation)")
    ap.add_argument("--speaker", default=None, help="condition the posterior encoder on this speaker (name or id); "
                    "default none, as the original")
    ap.add_argument("--offset-ms", type=bounded_float(-2000.0, 2000.0), default=None,
                    help="audio->face offset to apply instead of the estimate (positive: the face lags the audio)")
    ap.add_argument("--max-offset-ms", type=bounded_float(0.0, 2000.0), default=300.0, help="search range of the offset estimate")
    ap.add_argument("--val-size", type=_val_size, default="15%",
                    help="takes held out for validation: a share (15%%, 0.15) or a count (5); at least one, never most")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the train/validation split")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    return run_cli("prepare_visemes.py", run, args)


if __name__ == "__main__":
    sys.exit(main())
