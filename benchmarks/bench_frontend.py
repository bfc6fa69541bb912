"""Throughput of the text frontend (clean_text) per language and BERT feature time per sentence.

    python benchmarks/bench_frontend.py [--shared ../shared] [--repeat 3] [--threads 1]

Sentences: the rows of the reference frontend tables (zh/ja/en_frontend.tsv, rejected rows left out); word tokenizers
and BERT models: the tiny fixture folders (hidden 64, 4 layers), so the BERT figure measures the pipeline overhead of a
small model, not the 24-layer large models users run. First calls (dictionary loading, model loading) are timed
separately from the steady state.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TABLES = {"ZH": "zh_frontend.tsv", "JP": "ja_frontend.tsv", "EN": "en_frontend.tsv"}
BERT_FOLDERS = {"ZH": "bert_tiny_zh", "JP": "tokenizer_ja_char", "EN": "tokenizer_en_spm"}


def _unescape(cell: str) -> str:
    return cell.replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")


def load_sentences(table: Path) -> list[str]:
    with table.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [_unescape(r["text"]) for r in rows if not r["error"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="shared folder (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the sentences (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from bert_vits2.text import add_blank, clean_text
    from bert_vits2.text.bert import get_bert_feature

    ref = Path(args.shared) / "reference" / "bv2"
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.repeat} pass(es); tiny fixture models")
    for lang, table in TABLES.items():
        sentences = load_sentences(ref / table)
        folder = ref / BERT_FOLDERS[lang]
        tok_dir = None if lang == "ZH" else folder

        t0 = time.perf_counter()
        cleaned = [clean_text(s, lang, tokenizer_dir=tok_dir) for s in sentences[:1]]
        first_clean = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            cleaned = [clean_text(s, lang, tokenizer_dir=tok_dir) for s in sentences]
        clean_s = time.perf_counter() - t0
        n = len(sentences) * args.repeat

        t0 = time.perf_counter()
        norm, _, _, w2p = cleaned[0]
        get_bert_feature(norm, add_blank((), (), (), w2p)[3], lang, folder)
        first_bert = time.perf_counter() - t0
        per_sentence = []
        for _ in range(args.repeat):
            for norm, _, _, w2p in cleaned:
                t0 = time.perf_counter()
                get_bert_feature(norm, add_blank((), (), (), w2p)[3], lang, folder)
                per_sentence.append(time.perf_counter() - t0)
        print(
            f"{lang}: frontend {n / clean_s:7.1f} sentences/s ({len(sentences)} sentences x {args.repeat}; "
            f"first call {first_clean:.2f} s) | tiny BERT {1000 * statistics.mean(per_sentence):6.2f} ms/sentence "
            f"(median {1000 * statistics.median(per_sentence):.2f} ms; first call incl. loading {first_bert:.2f} s)"
        )


if __name__ == "__main__":
    main()
