"""Turn a transcription list into Bert-VITS2 training lists and register the speakers in the config.

Input lines (UTF-8): ``path/to/audio.wav|speaker|LANG|text`` with LANG one of ZH, JP, EN.
Writes ``<transcription>.cleaned`` (``wav|speaker|LANG|norm_text|phones|tones|word2ph``), the train and val lists,
and ``data.spk2id`` / ``data.n_speakers`` / the list paths into the config (speaker ids in order of first appearance).

    python preprocess_text.py --transcription-path filelists/esd.list

Bad lines (missing or repeated audio, unknown language, wrong number of fields, text the frontend rejects) are printed
with their line numbers and left out; the run goes on and ends with a summary. Then run bert_gen.py.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bert_vits2.config_yml import YmlError, add_yml_argument, apply_yml, first_use
from bert_vits2.preprocess import preprocess_text
from motion.inputs import cli_parser


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse a list to write that is one of the inputs (the transcription, the config, a reused cleaned list) or
    another output: ``--train-path esd.list`` would replace the transcription with the training part."""
    from bert_vits2.fileio import refuse_overwriting_inputs, same_file

    cleaned = args.cleaned_path or f"{args.transcription_path}.cleaned"
    outputs = [("--train-path", args.train_path), ("--val-path", args.val_path)]
    inputs = [("--transcription-path", args.transcription_path), ("--config-path", args.config_path)]
    if args.clean:
        outputs.insert(0, ("--cleaned-path", cleaned))
    else:
        inputs.append(("--cleaned-path", cleaned))
    refuse_overwriting_inputs(outputs, inputs)
    for i, (label_a, a) in enumerate(outputs):
        for label_b, b in outputs[i + 1:]:
            if same_file(a, b):
                raise ValueError(f"{label_b} {b} is also the {label_a}: give two different files")


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("preprocess_text.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transcription-path", "--transcription_path", default="filelists/esd.list",
                        help="wav|speaker|LANG|text list (default: %(default)s)")
    parser.add_argument("--cleaned-path", "--cleaned_path", default=None,
                        help="cleaned list to write (or read with --no-clean); default: <transcription-path>.cleaned")
    parser.add_argument("--train-path", "--train_path", default="filelists/train.list", help="(default: %(default)s)")
    parser.add_argument("--val-path", "--val_path", default="filelists/val.list", help="(default: %(default)s)")
    parser.add_argument("--config-path", "--config_path", default="configs/config.json",
                        help="config.json that receives spk2id/n_speakers; other keys are kept (default: %(default)s)")
    parser.add_argument("--val-per-lang", "--val_per_lang", type=int, default=4,
                        help="validation lines taken per language (or per speaker, see --val-group) (default: %(default)s)")
    parser.add_argument("--max-val-total", "--max_val_total", type=int, default=12,
                        help="cap on the validation list; the surplus goes to training (default: %(default)s)")
    parser.add_argument("--val-group", choices=("language", "speaker"), default="language",
                        help="group the validation picks by language (upstream) or by speaker (default: %(default)s)")
    parser.add_argument("--clean", action=argparse.BooleanOptionalAction, default=True,
                        help="run the text frontend (--no-clean reuses an existing cleaned list)")
    parser.add_argument("--seed", type=int, default=1234, help="shuffle seed of the train/val split (default: %(default)s)")
    parser.add_argument("--tokenizer-dir-jp", default=None,
                        help="Japanese word-tokenizer/BERT folder (default: bert/deberta-v2-large-japanese-char-wwm)")
    parser.add_argument("--tokenizer-dir-en", default=None,
                        help="English word-tokenizer/BERT folder (default: bert/deberta-v3-large)")
    parser.add_argument("--allow-tokenizer-fallback", action="store_true",
                        help="if a JP/EN tokenizer folder is absent, split words without it instead of stopping "
                             "(bert_gen.py then rejects those lines: only for lists you will not train on)")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes for the text frontend (each loads its dictionaries) (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_yml_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if first_use(args.yml_config, argv, "preprocess_text.py"):
        return 0
    try:
        apply_yml(parser, args, argv, "preprocess_text")  # config.yml's section; command-line options win
    except (FileNotFoundError, YmlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        _check_outputs(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tokenizer_dirs = {k: v for k, v in (("JP", args.tokenizer_dir_jp), ("EN", args.tokenizer_dir_en)) if v}
    try:
        summary = preprocess_text(
            args.transcription_path, args.cleaned_path, args.train_path, args.val_path, args.config_path,
            args.val_per_lang, args.max_val_total, args.clean, tokenizer_dirs, args.seed, args.val_group,
            progress=not args.quiet, processes=args.processes,
            allow_tokenizer_fallback=args.allow_tokenizer_fallback,
        )
    except (FileNotFoundError, ValueError) as exc:  # missing list/config, nothing usable
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.describe())
    print(f"wrote {args.train_path}, {args.val_path} and updated {args.config_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
