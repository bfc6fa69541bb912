"""auto mode (issue 14): langid (py3langid, offline) over zh/ja with script rules, kanji forms and context."""

from __future__ import annotations

import pytest

from bert_vits2.text.language import kanji_form_vote, langid_classify, split_auto


@pytest.mark.parametrize(
    "text, expected",
    [
        # kanji-only Japanese: 庁 is a Japanese form (neither GB2312 nor Big5 has it); script rules alone said ZH
        ("東京都庁。", [("JP", "東京都庁。")]),
        # a Latin word with digits/hyphen stays whole (was split "GPT-" | "4は...")
        ("GPT-4は最新のモデルです。", [("EN", "GPT-4"), ("JP", "は最新のモデルです。")]),
        ("COVID-19が流行した", [("EN", "COVID-19"), ("JP", "が流行した")]),
        # sentence by sentence
        ("東京都庁。今天天气很好。", [("JP", "東京都庁。"), ("ZH", "今天天气很好。")]),
        ("我喜欢日本。日本語を話すのが好きです。", [("ZH", "我喜欢日本。"), ("JP", "日本語を話すのが好きです。")]),
        # langid unsure about a bare kanji word: the context decides (Japanese sentence before it) ...
        ("今日は晴れ。東京。", [("JP", "今日は晴れ。東京。")]),
        ("東京。日本語を話す。", [("JP", "東京。日本語を話す。")]),
        # ... and without context langid's answer stands
        ("東京。", [("ZH", "東京。")]),
        ("你好 hello", [("ZH", "你好"), ("EN", "hello")]),
        ("一个 number: 2023年", [("ZH", "一个"), ("EN", "number:"), ("ZH", "2023年")]),
    ],
)
def test_split_auto_cases(text, expected):
    assert split_auto(text) == expected


def test_kanji_form_vote():
    assert kanji_form_vote("東京都庁") == "JP"  # 庁
    assert kanji_form_vote("駅まで") == "JP"
    assert kanji_form_vote("我们这里") == "ZH"  # 们 这
    assert kanji_form_vote("你好") == "ZH"  # 你 is not in Shift_JIS
    assert kanji_form_vote("東京") is None  # 東 is also traditional Chinese
    assert kanji_form_vote("今天天气很好") is None
    assert kanji_form_vote("hello") is None


def test_langid_is_offline_and_restricted():
    lang, prob = langid_classify("今天天气很好，我们去公园散步吧。")
    assert lang == "zh" and prob > 0.9
    assert langid_classify("これは日本語の文章です。")[0] == "ja"
    assert langid_classify("This is an English sentence.")[0] == "en"
    assert langid_classify("東京大学", ("zh", "ja"))[0] in ("zh", "ja")


def test_auto_slices_plan():
    from bert_vits2.synthesis import plan_slices

    calls = plan_slices("東京都庁。|GPT-4は最新のモデルです。", "auto")
    assert [c.runs for c in calls] == [[("JP", "東京都庁。")], [("EN", "GPT-4"), ("JP", "は最新のモデルです。")]]
