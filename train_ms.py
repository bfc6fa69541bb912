"""Training launcher: ``python train_ms.py -m MODEL -c CONFIG [--visemes]``.

``--visemes`` trains only the expression head (the TTS model is frozen and untouched) and exits when that training
ends (``--visemes --causal``: a causal head for live faces, motion/face/live.py); without it this runs Bert-VITS2 TTS
training. The two modes share ``-m/--model`` and ``-c/--config`` and never
fall through into each other.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bert_vits2.config_yml import YmlError, add_yml_argument, apply_env, apply_yml, first_use
from motion.inputs import cli_parser


def build_parser() -> argparse.ArgumentParser:
    from motion.face.train import add_arguments
    from motion.inputs import bounded_int, positive_int

    parser = cli_parser("train_ms.py",
        description="Train Bert-VITS2 (default) or, with --visemes, the expression head on prepared takes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-m", "--model", default=None,
                        help="model folder (required unless --check); checkpoints go to MODEL/models (G_*.pth for "
                             "TTS, V_*.pth for --visemes)")
    parser.add_argument("-c", "--config", default="./configs/config.json", help="Bert-VITS2 JSON config")
    parser.add_argument("--visemes", action="store_true",
                        help="train the expression head (run motion/prepare_visemes.py first) instead of the TTS")
    tts = parser.add_argument_group("TTS training (default mode; all other settings come from the config)")
    tts.add_argument("--num-workers", type=bounded_int(0, 256), default=None,
                     help="DataLoader worker processes per GPU/process (default: min(4, CPUs - 1))")
    tts.add_argument("--allow-missing-slm", action="store_true",
                     help="if the WavLM folder (model.slm.model) is absent, train without the WavLM loss and "
                          "discriminator instead of stopping (same as train.allow_missing_slm in the config)")
    tts.add_argument("--base-model", default=None,
                     help="folder with G_/D_/DUR_/WD_*.pth to fine-tune from when MODEL/models has no checkpoint "
                          "(another speaker count re-initialises only emb_g)")
    tts.add_argument("--keep-ckpts", type=bounded_int(0, 1_000_000), default=None,
                     help="checkpoint sets to keep (0 = all; default train.keep_ckpts or 8)")
    tts.add_argument("--max-steps", type=positive_int, default=None,
                     help="stop and save after this global step (default: run train.epochs)")
    tts.add_argument("--no-spec-cache", action="store_true",
                     help="do not cache linear spectrograms as .spec.pt next to the wavs")
    tts.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    tts.add_argument("--check", action="store_true",
                     help="only check every line of the training/validation lists (audio rate and channels, speaker, "
                          ".bert.pt), list the bad ones and exit 0 (all good) or 1; training runs this check too")
    tts.add_argument("--skip-bad-lines", action="store_true",
                     help="train without the lines the data check finds bad instead of stopping")
    add_yml_argument(parser)
    add_arguments(parser)
    return parser


def run_tts(args: argparse.Namespace) -> int:
    import os

    from bert_vits2.train import TrainError, TrainOptions, run_training

    for option, value, low in (("--num-workers", args.num_workers, 0), ("--keep-ckpts", args.keep_ckpts, 0),
                               ("--max-steps", args.max_steps, 1)):
        if value is not None and (not isinstance(value, int) or value < low):  # (config.yml values skip argparse)
            print(f"train_ms.py: {option} must be a whole number >= {low}, not {value!r}", file=sys.stderr)
            return 2
    opts = TrainOptions(
        config_path=args.config,
        model_dir=getattr(args, "model_dir", None) or os.path.join(args.model, "models"),
        num_workers=args.num_workers,
        allow_missing_slm=True if args.allow_missing_slm else None,
        base_model=args.base_model,
        spec_cache=not args.no_spec_cache,
        keep_ckpts=args.keep_ckpts,
        max_steps=args.max_steps,
        progress=not args.no_progress,
        skip_bad_lines=args.skip_bad_lines,
    )
    try:
        return run_training(opts)
    except TrainError as err:
        print(f"train_ms.py: {err}", file=sys.stderr)
        return 1


def run_check(args: argparse.Namespace) -> int:
    """``--check``: the pre-flight data check on its own; every bad line with file, line number and reason."""
    from bert_vits2.data import preflight_check
    from bert_vits2.hparams import ConfigError, load_hparams

    try:
        hps = load_hparams(args.config)
    except ConfigError as err:
        print(f"train_ms.py --check: {err}", file=sys.stderr)
        return 1
    report = preflight_check(hps, progress=not args.no_progress)
    print(report.describe())
    return 0 if report.ok else 1


def run_visemes(args: argparse.Namespace) -> int:
    from motion.face.prepare import PrepareError
    from motion.face.train import TrainError, run_from_args

    try:
        return run_from_args(args)
    except (TrainError, PrepareError) as err:  # a bad filelist line too: one line, not a traceback
        print(f"train_ms.py --visemes: {err}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.visemes:  # TTS mode reads config.yml's train_ms section as upstream (command-line options win)
        if first_use(args.yml_config, argv, "train_ms.py"):
            return 0
        try:
            yml = apply_yml(parser, args, argv, "train_ms")
        except (FileNotFoundError, YmlError) as err:
            print(f"train_ms.py: {err}", file=sys.stderr)
            return 2
        if yml is not None:
            apply_env(yml)
            if args.model is None:  # upstream: the dataset folder; checkpoints in dataset_path/<train_ms.model>
                args.model = str(yml.get("dataset_path") or ".")
            else:  # -m given: MODEL/models as always
                args.model_dir = None
    if args.check and not args.visemes:
        return run_check(args)
    if args.model is None:
        parser.error("-m/--model is required (the model folder; only --check runs without it)")
    return run_visemes(args) if args.visemes else run_tts(args)


if __name__ == "__main__":
    sys.exit(main())
