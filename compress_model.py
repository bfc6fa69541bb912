"""Write a release checkpoint: ``python compress_model.py -i models/G_8000.pth [-c CONFIG] [-o OUT] [-hf]``.

Same options and output as upstream's compress_model.py: the generator without its posterior encoder (``enc_q``),
fp32 or fp16 (``-hf/--half``), a fresh optimizer and iteration 0, written to ``G_8000_release.pth``
(``G_8000_release_half.pth`` with ``--half``) unless ``-o`` says otherwise. The result synthesizes speech (webui,
tts2ue) but cannot extract z from audio or be fine-tuned: keep the full G_*.pth for that.
"""

from __future__ import annotations

import argparse
import logging
import sys

from motion.inputs import cli_parser


def build_parser() -> argparse.ArgumentParser:
    parser = cli_parser("compress_model.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default="configs/config.json",
                        help="config.json the checkpoint was trained with (default: %(default)s)")
    parser.add_argument("-i", "--input", required=True, help="generator checkpoint G_*.pth")
    parser.add_argument("-o", "--output", default=None,
                        help="output file (default: <input>_release.pth, <input>_release_half.pth with --half)")
    parser.add_argument("-hf", "--half", action="store_true", default=False, help="save the weights as fp16")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import os

    from bert_vits2.checkpoint import CheckpointError
    from bert_vits2.fileio import OutputIsInputError, refuse_overwriting_inputs
    from bert_vits2.hparams import ConfigError
    from bert_vits2.release import make_release_checkpoint

    try:
        refuse_overwriting_inputs([("-o", args.output)], [("-i", args.input), ("-c", args.config)])
    except OutputIsInputError as exc:
        print(f"compress_model.py: {exc}", file=sys.stderr)
        return 1
    try:
        output = make_release_checkpoint(args.config, args.input, args.output, args.half)
    except (CheckpointError, ConfigError) as exc:
        print(f"compress_model.py: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the output folder is not writable or the disk is full
        print(f"compress_model.py: cannot write {args.output or 'the release file'}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    print(f"release checkpoint written: {os.path.abspath(output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
