"""Cache the BERT feature of every training/validation line next to its audio (``x.wav`` -> ``x.bert.pt``).

    python bert_gen.py --config configs/config.json

Reads data.training_files / data.validation_files and data.add_blank from the config (or --lists). Features already
cached with the right length are skipped, so an interrupted run can be started again. Needs the BERT folders of the
languages in the lists: bert/chinese-roberta-wwm-ext-large (ZH), bert/deberta-v2-large-japanese-char-wwm (JP),
bert/deberta-v3-large (EN), or the folders given with --bert-dir-*.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bert_vits2.config_yml import YmlError, add_yml_argument, apply_yml, first_use
from motion.inputs import cli_parser


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser("bert_gen.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default="configs/config.json", help="(default: %(default)s)")
    parser.add_argument("--lists", nargs="+", default=None,
                        help="cleaned lists to process (default: the config's training and validation files)")
    parser.add_argument("--bert-dir-zh", default=None, help="default: bert/chinese-roberta-wwm-ext-large")
    parser.add_argument("--bert-dir-jp", default=None, help="default: bert/deberta-v2-large-japanese-char-wwm")
    parser.add_argument("--bert-dir-en", default=None, help="default: bert/deberta-v3-large")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    parser.add_argument("--num-processes", "--num_processes", "--processes", type=int, default=2, dest="processes",
                        help="worker processes, each with its own copy of the models (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="recompute features that are already cached")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_yml_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if first_use(args.yml_config, argv, "bert_gen.py"):
        return 0
    try:
        apply_yml(parser, args, argv, "bert_gen")  # config.yml's section; command-line options win
    except (FileNotFoundError, YmlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import torch

    from bert_vits2.hparams import ConfigError, load_hparams
    from bert_vits2.preprocess import bert_gen
    from bert_vits2.text.bert import BertModelMissingError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    bert_dirs = {k: v for k, v in (("ZH", args.bert_dir_zh), ("JP", args.bert_dir_jp), ("EN", args.bert_dir_en)) if v}
    try:
        hps = load_hparams(args.config)
        lists = args.lists or [hps.data.training_files, hps.data.validation_files]
        summary = bert_gen(lists, bert_dirs, bool(hps.data.get("add_blank", True)), device, args.processes,
                           args.overwrite, not args.quiet)
    except (FileNotFoundError, ValueError, ConfigError, BertModelMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.describe("bert_gen"))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
