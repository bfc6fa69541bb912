"""Chinese frontend: every row of zh_frontend.tsv (upstream output), rejections, tone rules, import hygiene.

The golden table is read generically (``BV2_ZH_FRONTEND_TSV`` may point at another table of the same format).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import checkout_env, frontend_rows

from bert_vits2.text import TextRejected, chinese, clean_text
from bert_vits2.text.symbols import symbols, zh_symbols
from bert_vits2.text.tone_sandhi import ToneSandhi
from bert_vits2.text.zh_pinyin import SYLLABLES


@pytest.fixture(scope="module")
def zh_rows(bv2_ref):
    return frontend_rows(bv2_ref, "zh")


def test_every_accepted_row_matches_upstream(zh_rows):
    mismatches = []
    accepted = [r for r in zh_rows if not r["error"]]
    assert accepted
    for row in accepted:
        norm, phones, tones, word2ph = clean_text(row["text"], "ZH")
        got = (norm, " ".join(phones), " ".join(map(str, tones)), " ".join(map(str, word2ph)))
        expected = (row["norm_text"], row["phones"], row["tones"], row["word2ph"])
        if got != expected:
            mismatches.append(f"{row['text']!r}\n  expected {expected}\n  got      {got}")
    assert not mismatches, f"{len(mismatches)}/{len(accepted)} rows differ:\n" + "\n".join(mismatches)


def test_rejected_rows_raise_text_rejected(zh_rows):
    rejected = [r for r in zh_rows if r["error"]]
    for row in rejected:
        assert chinese.text_normalize(row["text"]) == row["norm_text"]
        with pytest.raises(TextRejected) as info:
            clean_text(row["text"], "ZH")
        assert isinstance(info.value, ValueError)
        assert "remove" in str(info.value) or "replace" in str(info.value)


def test_output_invariants(zh_rows):
    for row in zh_rows:
        if row["error"]:
            continue
        norm, phones, tones, word2ph = clean_text(row["text"], "ZH")
        assert phones[0] == phones[-1] == "_" and tones[0] == tones[-1] == 0
        assert len(word2ph) == len(norm) + 2 and sum(word2ph) == len(phones) == len(tones)
        assert set(phones) <= set(symbols) and all(0 <= t <= 5 for t in tones)


def test_g2p_accepts_and_ignores_tokenizer_dir(tmp_path):
    assert chinese.g2p("你好.", tokenizer_dir=str(tmp_path)) == chinese.g2p("你好.")


def test_normalisation_details():
    assert chinese.text_normalize("1,000") == "一,零"
    assert chinese.text_normalize("共50%") == "共五十"
    assert chinese.text_normalize("a\nb") == "."
    assert chinese.text_normalize("好...") == "好…"
    assert chinese.text_normalize("“嗯”～") == "'恩'-"
    with pytest.raises(TextRejected, match="number"):
        chinese.text_normalize("12345678901234567890")


def test_pinyin_table_two_phones_per_syllable():
    assert SYLLABLES["a"] == ("AA", "a") and SYLLABLES["e"] == ("EE", "e") and SYLLABLES["o"] == ("OO", "o")
    assert SYLLABLES["zhi"] == ("zh", "ir") and SYLLABLES["zi"] == ("z", "i0")
    assert SYLLABLES["ye"] == ("y", "E") and SYLLABLES["yan"] == ("y", "En") and SYLLABLES["yu"] == ("y", "v")
    assert SYLLABLES["jv"] == ("j", "v") and SYLLABLES["lve"] == ("l", "ve") and SYLLABLES["yuan"] == ("y", "van")
    assert "fiao" not in SYLLABLES
    used = {p for pair in SYLLABLES.values() for p in pair}
    assert used == set(zh_symbols)


def _sandhi(finals_by_word: dict[str, list[str]]) -> ToneSandhi:
    return ToneSandhi(finals_of=lambda w: list(finals_by_word[w]), search_cut=lambda w: [w])


def test_bu_and_yi_rules():
    ts = _sandhi({})
    assert ts.bu_sandhi("不怕", ["u4", "a4"]) == ["u2", "a4"]
    assert ts.bu_sandhi("看不懂", ["an4", "u4", "ong3"]) == ["an4", "u5", "ong3"]
    assert ts.yi_sandhi("一天", ["i1", "ian1"]) == ["i4", "ian1"]
    assert ts.yi_sandhi("一段", ["i1", "uan4"]) == ["i2", "uan4"]
    assert ts.yi_sandhi("看一看", ["an4", "i1", "an4"]) == ["an4", "i5", "an4"]
    assert ts.yi_sandhi("第一", ["i4", "i4"]) == ["i4", "i1"]
    assert ts.yi_sandhi("一,", ["i1", ","]) == ["i1", ","]
    assert ts.yi_sandhi("一一零", ["i1", "i1", "ing2"]) == ["i1", "i1", "ing2"]


def test_three_tone_and_neutral_rules():
    ts = _sandhi({})
    assert ts.three_sandhi("你好", ["i3", "ao3"]) == ["i2", "ao3"]
    assert ts.three_sandhi("永远永远", ["iong3", "van3", "iong3", "van3"]) == ["iong2", "van3", "iong2", "van3"]
    assert ts.neutral_sandhi("奶奶", "n", ["ai3", "ai3"]) == ["ai3", "ai5"]
    assert ts.neutral_sandhi("人人", "n", ["en2", "en2"]) == ["en2", "en2"]
    assert ts.neutral_sandhi("桌子", "n", ["uo1", "i3"]) == ["uo1", "i5"]
    assert ts.neutral_sandhi("电子", "n", ["ian4", "i3"]) == ["ian4", "i3"]
    assert ts.neutral_sandhi("上来", "v", ["ang4", "ai2"]) == ["ang4", "ai5"]
    assert ts.neutral_sandhi("休息", "v", ["iou1", "i2"]) == ["iou1", "i5"]


def test_pre_merge_rules():
    finals = {"我": ["o3"], "很好": ["en3", "ao3"], "我很好": ["o3", "en3", "ao3"], "不": ["u4"], "要": ["ao4"],
              "看": ["an4"], "一": ["i1"], "花": ["ua1"], "儿": ["er2"], "不要": ["u4", "ao4"], "看一看": ["an4", "i1", "an4"]}
    ts = _sandhi(finals)
    assert ts.pre_merge([("我", "r"), ("很好", "a")]) == [["我很好", "r"]]
    assert ts.pre_merge([("不", "d"), ("要", "v")]) == [["不要", "v"]]
    assert ts.pre_merge([("看", "v"), ("一", "m"), ("看", "v")]) == [["看一看", "v"]]
    assert ts.pre_merge([("花", "n"), ("儿", "n")]) == [["花儿", "n"]]
    # a second V一V in one segment abandons the 一 merge, as upstream does
    two = [("看", "v"), ("一", "m"), ("看", "v"), ("看", "v"), ("一", "m"), ("看", "v")]
    assert ts.merge_bu(two) == [list(p) for p in two]
    with pytest.raises(IndexError):
        ts.merge_yi([list(p) for p in two])


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown language"):
        clean_text("你好", "zh-cn")


def test_clean_text_dispatches_lazily_with_tokenizer_dir(monkeypatch):
    import types

    calls = {}
    fake = types.ModuleType("bert_vits2.text.english")
    fake.text_normalize = lambda text: text.upper()
    fake.g2p = lambda norm, tokenizer_dir=None: calls.setdefault("g2p", (norm, tokenizer_dir)) and (["_", "_"], [0, 0], [1, 1])
    monkeypatch.setitem(sys.modules, "bert_vits2.text.english", fake)
    assert clean_text("hi", "EN", tokenizer_dir="tok") == ("HI", ["_", "_"], [0, 0], [1, 1])
    assert calls["g2p"] == ("HI", "tok")


def test_import_is_light_and_jieba_is_quiet(tmp_path):
    """Importing loads no segmenter; first use prints nothing and caches jieba's dictionary outside the cwd."""
    code = (
        "import sys\n"
        "import bert_vits2.text, bert_vits2.text.chinese, bert_vits2.text.language\n"
        "heavy = [m for m in ('jieba', 'pypinyin', 'cn2an', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from bert_vits2.text import clean_text\n"
        "clean_text('你好，世界！', 'ZH')\n"
    )
    env = checkout_env(BV2_CACHE_DIR=str(tmp_path / "cache"))
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "Building prefix dict" not in proc.stderr
    assert list(work.iterdir()) == []
    assert (tmp_path / "cache" / "jieba.cache").exists()
