"""Throughput of the Japanese and English frontends (text_normalize + g2p), cold start and warm.

Usage: python benchmarks/bench_text_ja_en.py [--shared ../shared] [--repeat 20]
Uses the fixture sentences and tokenizer folders of shared/reference/bv2. The warm figure runs
each sentence again with a few suffixes (new sentences for pyopenjtalk and the tokenizer; word
pronunciations are cached per process, as they are when preprocessing a filelist).
"""

from __future__ import annotations

import argparse
import os
import time


def _sentences(path: str):
    with open(path, encoding="utf-8") as f:
        next(f)
        return [line.split("\t")[0] for line in f if line.strip()]


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"), help="shared/ folder with reference/bv2")
    ap.add_argument("--repeat", type=int, default=20, help="passes over the sentences for the warm figure")
    args = ap.parse_args()
    ref = os.path.join(args.shared, "reference", "bv2")

    from bert_vits2.text import english, japanese

    for name, module, table, tok, suffixes in (
        ("JP", japanese, "ja_frontend.tsv", "tokenizer_ja_char", ["", "、そうです", "、わかりました", "、ありがとう"]),
        ("EN", english, "en_frontend.tsv", "tokenizer_en_spm", ["", " Really", " Okay then", " Thanks"]),
    ):
        sents = _sentences(os.path.join(ref, table))
        tok_dir = os.path.join(ref, tok)
        t0 = time.perf_counter()
        for s in sents:  # first pass: imports, tokenizer, dictionaries, g2p_en model
            module.g2p(module.text_normalize(s), tokenizer_dir=tok_dir)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = 0
        for r in range(args.repeat):
            for s in sents:
                module.g2p(module.text_normalize(s + suffixes[r % len(suffixes)]), tokenizer_dir=tok_dir)
                n += 1
        warm = time.perf_counter() - t0
        print(f"{name}: first pass over {len(sents)} sentences (loads everything) {cold:.2f} s; "
              f"{n} sentences in {warm:.2f} s = {n / warm:.0f} sentences/s ({1000 * warm / n:.2f} ms each)")


if __name__ == "__main__":
    main()
