"""Symbol/tone/language tables, cleaned_text_to_sequence and add_blank against the upstream fixtures."""

from __future__ import annotations

import importlib
import json

import pytest

from bert_vits2.text import add_blank, clean_text, cleaned_text_to_sequence

S = importlib.import_module("bert_vits2.text.symbols")  # the package attribute `symbols` is the list


def test_symbol_table_matches_upstream(bv2_ref):
    rows = (bv2_ref / "symbols.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0].split("\t") == ["id", "symbol"]
    expected = [tuple(r.split("\t")) for r in rows[1:]]
    assert [(str(i), s) for i, s in enumerate(S.symbols)] == expected
    assert len(S.symbols) == 112
    assert all(S.symbol_to_id[s] == i for i, s in enumerate(S.symbols))


def test_text_maps_match_upstream(bv2_ref):
    maps = json.loads((bv2_ref / "text_maps.json").read_text(encoding="utf-8"))
    assert maps["n_symbols"] == len(S.symbols)
    assert maps["pad"] == S.pad == S.symbols[0]
    assert maps["punctuation"] == S.punctuation
    assert maps["pu_symbols"] == S.pu_symbols
    assert maps["num_zh_tones"] == S.num_zh_tones
    assert maps["num_ja_tones"] == S.num_ja_tones
    assert maps["num_en_tones"] == S.num_en_tones
    assert maps["num_tones"] == S.num_tones == 12
    assert maps["num_languages"] == S.num_languages == 3
    assert maps["language_id_map"] == S.language_id_map
    assert maps["language_tone_start_map"] == S.language_tone_start_map
    assert maps["blank_id"] == S.blank_id


@pytest.mark.parametrize(
    "language, phones, tones, ids, tone_ids, lang",
    [
        ("ZH", ["_", "n", "i", "!", "_"], [0, 2, 2, 0, 0], [0, 62, 40, 103, 0], [0, 2, 2, 0, 0], 0),
        ("JP", ["_", "k", "o", "N", "_"], [0, 1, 0, 1, 0], [0, 57, 65, 5, 0], [6, 7, 6, 7, 6], 1),
        ("EN", ["_", "hh", "ah", "V", "_"], [0, 3, 1, 2, 0], [0, 38, 12, 7, 0], [8, 11, 9, 10, 8], 2),
    ],
)
def test_cleaned_text_to_sequence_offsets(language, phones, tones, ids, tone_ids, lang):
    got = cleaned_text_to_sequence(phones, tones, language)
    assert got == (ids, tone_ids, [lang] * len(phones))


@pytest.mark.parametrize(
    "phones, tones, language, message",
    [
        (["_", "xx", "_"], [0, 0, 0], "ZH", "not in the Bert-VITS2"),
        (["_", "a", "_"], [0, 6, 0], "ZH", "tones must be"),
        (["_", "a", "_"], [0, 2, 0], "JP", "tones must be"),
        (["_", "a"], [0], "ZH", "differ in length"),
        (["_"], [0], "KO", "unknown language"),
    ],
)
def test_cleaned_text_to_sequence_rejects_bad_input(phones, tones, language, message):
    with pytest.raises(ValueError, match=message):
        cleaned_text_to_sequence(phones, tones, language)


def test_add_blank_interleaves_with_language_zero():
    x, t, l, w = add_blank([57, 65], [7, 6], [1, 1], [1, 1])
    assert x == [0, 57, 0, 65, 0]
    assert t == [0, 7, 0, 6, 0]
    assert l == [0, 1, 0, 1, 0]  # blanks are language 0 even for Japanese
    assert w == [3, 2] and sum(w) == len(x)
    assert add_blank([], [], [], None) == ([0], [0], [0], None)


def test_seq_zh_cases_reproduced(bv2_ref):
    torch = pytest.importorskip("torch")
    cases = torch.load(bv2_ref / "cases.pt", weights_only=True)
    names = sorted(k for k in cases if k.startswith("seq_zh_"))
    assert names, "no seq_zh_* cases in cases.pt"
    for name in names:
        case = cases[name]
        out = case["outputs"]
        norm, phones, tones, word2ph = clean_text(case["inputs"]["text"], case["inputs"]["language"])
        assert (norm, phones, tones, word2ph) == (out["norm_text"], out["phones"], out["tones_raw"], out["word2ph"]), name
        ids, tone_ids, lang_ids = cleaned_text_to_sequence(phones, tones, case["inputs"]["language"])
        assert ids == out["phone_ids"].tolist() and tone_ids == out["tone_ids"].tolist(), name
        assert lang_ids == out["lang_ids"].tolist(), name
        x, tone, language, w_blank = add_blank(ids, tone_ids, lang_ids, word2ph)
        assert x == out["x"].tolist(), name
        assert tone == out["tone"].tolist(), name
        assert language == out["language"].tolist(), name
        assert w_blank == out["word2ph_blank"], name
        assert sum(w_blank) == len(x)
