"""mix ([speaker]<zh>…<jp>…<en>…) and auto (by script) splitting of multi-language input."""

from __future__ import annotations

import pytest

from bert_vits2.text.language import MixSyntaxError, split_auto, split_mix


def test_split_mix_speakers_and_languages():
    text = "[alice]<zh>你好，<jp>こんにちは<en> hello world \n[bob]<ZH>再见<ja>さようなら"
    assert split_mix(text) == [
        ("alice", "ZH", "你好，"),
        ("alice", "JP", "こんにちは"),
        ("alice", "EN", "hello world"),
        ("bob", "ZH", "再见"),
        ("bob", "JP", "さようなら"),
    ]


def test_split_mix_without_speaker_and_empty_tags():
    assert split_mix("<en>Hi<zh><jp>はい") == [(None, "EN", "Hi"), (None, "JP", "はい")]


@pytest.mark.parametrize(
    "text, message",
    [
        ("你好", "has no language"),
        ("[alice]你好<zh>好", "after the speaker tag has no language"),
        ("<fr>bonjour", "unknown language tag <fr>"),
        ("[]<zh>你好", "empty speaker tag"),
        ("<zh>你好]", "unbalanced"),
        ("<zh 你好", "unbalanced"),
        ("[alice<zh>你好", "unbalanced"),
        ("", "no text found"),
        ("[alice]<zh>  ", "no text found"),
    ],
)
def test_split_mix_malformed(text, message):
    with pytest.raises(MixSyntaxError, match=message):
        split_mix(text)
    assert issubclass(MixSyntaxError, ValueError)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("你好世界", [("ZH", "你好世界")]),
        ("こんにちは", [("JP", "こんにちは")]),
        ("Hello world.", [("EN", "Hello world.")]),
        # kanji touching kana are Japanese; Han separated from kana by a full stop stays Chinese
        ("我喜欢日本。日本語を話すのが好きです。", [("ZH", "我喜欢日本。"), ("JP", "日本語を話すのが好きです。")]),
        ("私はiPhoneを3台持っています", [("JP", "私は"), ("EN", "iPhone"), ("JP", "を3台持っています")]),
        ("「東京」に行きたい", [("JP", "「東京」に行きたい")]),
        # punctuation and spaces stay with the run before; a number written against a word goes with it
        ("今天天气很好, let us go outside! 2023年", [("ZH", "今天天气很好,"), ("EN", "let us go outside!"), ("ZH", "2023年")]),
        ("I have 3 苹果", [("EN", "I have 3"), ("ZH", "苹果")]),
        ("3月に行きます", [("JP", "3月に行きます")]),
        ("Ｈｅｌｌｏ，世界", [("EN", "Ｈｅｌｌｏ，"), ("ZH", "世界")]),
        ("我用GPS导航", [("ZH", "我用"), ("EN", "GPS"), ("ZH", "导航")]),
        ("12, 34", [("ZH", "12, 34")]),
        ("   ", []),
    ],
)
def test_split_auto(text, expected):
    assert split_auto(text) == expected


def test_split_auto_default_language():
    assert split_auto("123", default="EN") == [("EN", "123")]
    with pytest.raises(ValueError, match="default language"):
        split_auto("abc", default="FR")


def test_split_auto_keeps_every_letter():
    text = "Bert-VITS2は、中文和English混合もOK！"
    pieces = split_auto(text)
    joined = "".join(p for _, p in pieces)
    assert [c for c in joined if not c.isspace()] == [c for c in text if not c.isspace()]
    assert pieces == [("EN", "Bert-VITS2"), ("JP", "は、"), ("ZH", "中文和"), ("EN", "English"), ("JP", "混合も"), ("EN", "OK！")]
