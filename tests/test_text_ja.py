"""Japanese frontend: every row of ja_frontend.tsv (upstream v2.3 output), the v2.3 re-g2p quirk
(default) versus the corrected mode, the BERT-facing text2sep_kata, the tokenizer fallback.

The table is read generically: ``BV2_JA_FRONTEND_TSV`` / ``BV2_JA_TOKENIZER_DIR`` may point at
another table made the same way and the tokenizer folder it was made with.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from conftest import checkout_env, frontend_rows, frontend_tokenizer_dir

from bert_vits2.text import japanese
from bert_vits2.text.errors import TextRejected
from bert_vits2.text.symbols import symbols
from bert_vits2.text.word_tokenizer import distribute_phones, get_word_tokenizer


@pytest.fixture(scope="module")
def ja_rows(bv2_ref):
    return frontend_rows(bv2_ref, "ja")


@pytest.fixture(scope="module")
def ja_tok(bv2_ref):
    return frontend_tokenizer_dir(bv2_ref, "ja", "tokenizer_ja_char")


def test_every_row_matches_upstream(ja_rows, ja_tok):
    mismatches = []
    for row in ja_rows:
        norm = japanese.text_normalize(row["text"])
        if row["error"]:
            with pytest.raises(TextRejected):  # the frontend's documented rejection (clean_text)
                japanese.g2p(norm, tokenizer_dir=ja_tok)
            continue
        phones, tones, word2ph = japanese.g2p(norm, tokenizer_dir=ja_tok)
        got = (norm, " ".join(phones), " ".join(map(str, tones)), " ".join(map(str, word2ph)))
        want = (row["norm_text"], row["phones"], row["tones"], row["word2ph"])
        if got != want:
            mismatches.append((row["text"], got, want))
    assert not mismatches, mismatches[:3]


@pytest.mark.parametrize("v23_compat", [True, False])
def test_output_invariants_and_bert_alignment(ja_rows, ja_tok, v23_compat):
    """Phones in the symbol set, tones 0/1, word2ph sums to the phones and has one entry per token
    of the text the JP BERT tokenizes ("".join(text2sep_kata(norm)[0])) plus the two boundaries."""
    tokenizer = get_word_tokenizer(ja_tok, "char", ja_tok)
    for row in ja_rows:
        if row["error"]:
            continue
        norm = row["norm_text"]
        phones, tones, word2ph = japanese.g2p(norm, tokenizer_dir=ja_tok, v23_compat=v23_compat)
        assert phones[0] == phones[-1] == "_" and tones[0] == tones[-1] == 0 and word2ph[0] == word2ph[-1] == 1
        assert set(phones) <= set(symbols), row["text"]
        assert set(tones) <= {0, 1}
        assert len(phones) == len(tones) == sum(word2ph)
        bert_text = "".join(japanese.text2sep_kata(norm)[0])
        assert len(word2ph) == len(tokenizer.tokenize(bert_text)) + 2, row["text"]


def test_v23_quirk_is_default_and_corrected_mode_uses_sentence_labels(ja_tok):
    norm = japanese.text_normalize("先生が見つける。")
    assert norm == "先生が見つける."
    phones, tones, word2ph = japanese.g2p(norm, tokenizer_dir=ja_tok)
    assert phones == japanese.g2p(norm, tokenizer_dir=ja_tok, v23_compat=True)[0]
    # v2.3 re-reads each word's katakana alone: センセー -> "s e n s e i", ミツケル -> "m i q k e r u",
    # and the tone walk stalls on the mismatch, so every later tone is 0.
    assert " ".join(phones) == "_ s e n s e i g a m i q k e r u . _"
    assert tones[7:] == [0] * (len(tones) - 7)
    fixed_phones, fixed_tones, fixed_w2p = japanese.g2p(norm, tokenizer_dir=ja_tok, v23_compat=False)
    assert " ".join(fixed_phones) == "_ s e N s e e g a m i ts u k e r u . _"
    assert fixed_tones == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert len(fixed_w2p) == len(word2ph)  # same tokens, so the same BERT features line up


def test_corrected_mode_phones_equal_pyopenjtalk_sentence_phones(ja_rows, ja_tok):
    """Independent check: without punctuation, corrected phones are exactly pyopenjtalk.g2p of the sentence."""
    import pyopenjtalk

    for row in ja_rows:
        if row["error"]:
            continue
        norm = row["norm_text"]
        phones = japanese.g2p(norm, tokenizer_dir=ja_tok, v23_compat=False)[0]
        ours = [p for p in phones[1:-1] if p not in japanese.punctuation]
        ref = [p for p in pyopenjtalk.g2p(norm).split(" ") if p not in ("pau", "")]
        ref = ["N" if p == "N" else p.replace("cl", "q").lower() for p in ref]
        assert ours == ref, row["text"]


def test_text2sep_kata_contract():
    sep_text, sep_kata, accents = japanese.text2sep_kata("こんにちは,今日は......")
    assert sep_text == ["こんにちは", ",", "今日", "は", ".", ".", ".", ".", ".", "."]
    assert sep_kata == ["コンニチワ", ",", "キョー", "ワ", ".", ".", ".", ".", ".", "."]
    assert [p for p, _ in accents] == "k o n n i ch i w a ky o o w a".split()
    assert {a for _, a in accents} <= {-1, 0, 1}


def test_text_normalize_rules():
    assert japanese.text_normalize("１２３４円のお釣り") == "千二百三十四円のお釣り"
    assert japanese.text_normalize("1,000,000人") == "百万人"
    assert japanese.text_normalize("$5と€3") == "五ドルと三ユーロ"
    assert japanese.text_normalize("「ＡＩ」（テスト）…～！？") == "'''テスト'...-!?"
    assert japanese.text_normalize("これは\nペン、です。") == "これは.ペン,です."
    assert japanese.text_normalize("か\u3099") == "が"  # NFKC composes
    assert japanese.text_normalize("あ\u3099ん\u309b") == "あん"  # a dakuten left over is dropped
    assert japanese.text_normalize("abc 😀 한국") == ""


def test_unreadable_input_is_rejected_clearly(ja_tok):
    with pytest.raises(TextRejected, match="rewrite it in kana"):
        japanese.g2p("ー", tokenizer_dir=ja_tok)


def test_missing_tokenizer_folder_falls_back_to_characters(tmp_path, ja_tok, caplog):
    norm = japanese.text_normalize("今日はいい天気ですね。")
    with caplog.at_level(logging.WARNING, logger="bert_vits2.text.word_tokenizer"):
        fb = japanese.g2p(norm, tokenizer_dir=str(tmp_path / "no-such-bert"))
    assert any("fallback" in r.getMessage() and "no-such-bert" in r.getMessage() for r in caplog.records)
    ref = japanese.g2p(norm, tokenizer_dir=ja_tok)
    assert fb[0] == ref[0] and fb[1] == ref[1]
    assert len(fb[2]) == len(norm) + 2  # one token per character (what the real char-level BERT does)
    assert get_word_tokenizer(tmp_path / "no-such-bert", "char", "x").is_fallback


def test_broken_tokenizer_folder_is_a_clear_error(tmp_path):
    (tmp_path / "bert").mkdir()
    with pytest.raises(RuntimeError, match="could not load the word tokenizer"):
        japanese.g2p("あ", tokenizer_dir=str(tmp_path / "bert"))


def test_tokenizer_is_cached_per_folder(ja_tok):
    assert get_word_tokenizer(ja_tok, "char", "x") is get_word_tokenizer(ja_tok + "/", "char", "y")


def test_distribute_phones():
    assert distribute_phones(7, 3) == [3, 2, 2]
    assert distribute_phones(2, 4) == [1, 1, 0, 0]
    assert distribute_phones(0, 2) == [0, 0]
    assert distribute_phones(0, 0) == []
    with pytest.raises(ValueError):
        distribute_phones(3, 0)


def test_import_does_no_work(tmp_path):
    code = (
        "import sys\n"
        "import bert_vits2.text.japanese, bert_vits2.text.english, bert_vits2.text.word_tokenizer\n"
        "heavy = [m for m in ('pyopenjtalk', 'transformers', 'g2p_en', 'nltk', 'inflect', 'num2words', 'torch')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=checkout_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
