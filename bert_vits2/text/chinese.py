"""Chinese frontend of Bert-VITS2 v2.3: normalisation and grapheme-to-phoneme.

``text_normalize`` spells numbers with cn2an, maps punctuation to the 7 model punctuation marks and
drops every other character outside CJK U+4E00..U+9FA5.  ``g2p`` segments with jieba (POS tags),
applies upstream's tone sandhi, reads pinyin with pypinyin and maps each syllable to two phones.
Results depend on pypinyin 0.55.0 / jieba 0.42.1 / cn2an 0.5.24 (the versions checkpoints were made with).

jieba, pypinyin and cn2an are imported on first use; jieba's dictionary cache goes to the user cache
directory (``$BV2_CACHE_DIR`` or ``~/.cache/bert_vits2``), never into the working directory.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
from pathlib import Path

from .errors import TextRejected
from .symbols import punctuation
from .tone_sandhi import ToneSandhi
from .zh_pinyin import syllable_to_phones

logger = logging.getLogger(__name__)

# Punctuation and symbols mapped onto the model's punctuation set (everything else non-CJK is dropped).
PUNCTUATION_MAP: dict[str, str] = {
    "：": ",",
    "；": ",",
    "，": ",",
    "。": ".",
    "！": "!",
    "？": "?",
    "\n": ".",
    "·": ",",
    "、": ",",
    "...": "…",
    "$": ".",
    "“": "'",
    "”": "'",
    '"': "'",
    "‘": "'",
    "’": "'",
    "（": "'",
    "）": "'",
    "(": "'",
    ")": "'",
    "《": "'",
    "》": "'",
    "【": "'",
    "】": "'",
    "[": "'",
    "]": "'",
    "—": "-",
    "～": "-",
    "~": "-",
    "「": "'",
    "」": "'",
}
_PUNCT_RE = re.compile("|".join(re.escape(p) for p in PUNCTUATION_MAP))
_DROP_RE = re.compile(r"[^\u4e00-\u9fa5" + re.escape("".join(punctuation)) + r"]+")
_NUMBER_RE = re.compile(r"\d+(?:\.?\d+)?")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[" + re.escape("".join(punctuation)) + r"])\s*")
_LATIN_RE = re.compile(r"[a-zA-Z]+")


def replace_punctuation(text: str) -> str:
    """Map punctuation to the model set and delete every character the model has no phone for."""
    text = text.replace("嗯", "恩").replace("呣", "母")
    text = _PUNCT_RE.sub(lambda m: PUNCTUATION_MAP[m.group()], text)
    return _DROP_RE.sub("", text)


def text_normalize(text: str) -> str:
    """Numbers -> Chinese numerals (``2023`` -> 二千零二十三, ``3.14`` -> 三点一四), then punctuation mapping."""
    import cn2an  # cn2an: ~0.3 s import, only for Chinese numbers

    for number in _NUMBER_RE.findall(text):
        try:
            spoken = cn2an.an2cn(number)
        except Exception as exc:  # cn2an rejects e.g. numbers beyond 10^16 or non-ASCII digit scripts
            raise TextRejected(
                f"cannot read the number {number!r} in Chinese ({exc}); write it out in Chinese characters"
            ) from exc
        text = text.replace(number, spoken, 1)
    return replace_punctuation(text)


def _cache_dir() -> str:
    base = os.environ.get("BV2_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "bert_vits2"
    )
    try:
        os.makedirs(base, exist_ok=True)
        return base
    except OSError:
        return tempfile.gettempdir()


@functools.lru_cache(maxsize=1)
def _jieba():
    """jieba.posseg with logging quietened and the dictionary cache outside the working tree."""
    import jieba  # jieba.posseg: ~0.6 s import, only for Chinese text
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    jieba.dt.tmp_dir = _cache_dir()
    return jieba


def _finals(word: str) -> list[str]:
    from pypinyin import Style, lazy_pinyin  # pypinyin: ~0.3 s import, only for Chinese text

    return lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3)


def _initials(word: str) -> list[str]:
    from pypinyin import Style, lazy_pinyin  # pypinyin: ~0.3 s import, only for Chinese text

    return lazy_pinyin(word, neutral_tone_with_five=True, style=Style.INITIALS)


@functools.lru_cache(maxsize=1)
def _tone_sandhi() -> ToneSandhi:
    jieba = _jieba()
    return ToneSandhi(finals_of=_finals, search_cut=lambda w: list(jieba.cut_for_search(w)))


_WITH_INITIAL_FIXES = {"uei": "ui", "iou": "iu", "uen": "un"}
_NO_INITIAL_WHOLE = {"ing": "ying", "i": "yi", "in": "yin", "u": "wu"}
_NO_INITIAL_PREFIX = {"v": "yu", "e": "e", "i": "y", "u": "w"}


def _syllable(initial: str, final: str, char: str, segment: str) -> tuple[list[str], int]:
    """Phones and tone of one pypinyin (initial, final+tone) pair; TextRejected where upstream fails."""
    if initial == final:  # pypinyin passes non-Chinese characters through unchanged
        if initial in punctuation:
            return [initial], 0
        raise TextRejected(
            f"{initial!r} in {segment!r} has no pinyin reading: remove it, or pass the text through "
            "text_normalize (numbers, punctuation)"
        )
    if not final or final[-1] not in "12345":
        raise TextRejected(
            f"{char!r} in {segment!r} reads {initial + final!r}, a syllable without a vowel that Bert-VITS2 v2.3 "
            "cannot pronounce (upstream fails on it): remove it or replace it (e.g. 嗯 -> 恩)"
        )
    rhyme, tone = final[:-1], int(final[-1])
    if initial:
        pinyin = initial + _WITH_INITIAL_FIXES.get(rhyme, rhyme)
    elif rhyme in _NO_INITIAL_WHOLE:
        pinyin = _NO_INITIAL_WHOLE[rhyme]
    elif rhyme and rhyme[0] in _NO_INITIAL_PREFIX:
        pinyin = _NO_INITIAL_PREFIX[rhyme[0]] + rhyme[1:]
    else:
        pinyin = rhyme
    phones = syllable_to_phones(pinyin)
    if phones is None:
        raise TextRejected(
            f"{char!r} in {segment!r} reads {pinyin + str(tone)!r}, which is not in Bert-VITS2 v2.3's pinyin "
            "table (upstream fails on it): replace it with a standard character"
        )
    return list(phones), tone


def _g2p_segment(segment: str) -> tuple[list[str], list[int], list[int]]:
    jieba = _jieba()
    sandhi = _tone_sandhi()
    segment = _LATIN_RE.sub("", segment)
    words = [(w, p) for w, p in jieba.posseg.lcut(segment)]
    # A syllable without a final (噷 "hm", 嗯 "n") makes upstream fail later in every case (IndexError or
    # AssertionError, whatever the sandhi does to it), so it is rejected up front with a clear message.
    voiceless = [w for w, _ in words if any(not f for f in _finals(w))]
    if voiceless:
        raise TextRejected(
            f"{segment!r}: {''.join(voiceless)} has no vowel in its pinyin, which Bert-VITS2 v2.3 cannot pronounce "
            "(upstream fails on it): remove it or replace it (e.g. 嗯 -> 恩)"
        )
    phones: list[str] = []
    tones: list[int] = []
    word2ph: list[int] = []
    for word, pos in sandhi.pre_merge(words):
        if pos == "eng":
            continue
        initials = _initials(word)
        try:
            finals = sandhi.modified_tone(word, pos, _finals(word))
        except IndexError as exc:  # only reachable with non-Chinese runs in un-normalised input
            raise TextRejected(
                f"{word!r} in {segment!r} cannot be read (upstream fails on it); pass the text through text_normalize"
            ) from exc
        for char, initial, final in zip(word, initials, finals):
            p, t = _syllable(initial, final, char, segment)
            phones += p
            tones += [t] * len(p)
            word2ph.append(len(p))
    return phones, tones, word2ph


def g2p(norm_text: str, tokenizer_dir: str | None = None) -> tuple[list[str], list[int], list[int]]:
    """Phones, raw tones (0..5) and per-character phone counts of normalised text, with the ``_`` boundaries.

    ``tokenizer_dir`` is accepted for interface parity with the Japanese/English frontends and ignored
    (Chinese words are one character per BERT token).  Raises :class:`TextRejected` where upstream fails.
    """
    phones: list[str] = []
    tones: list[int] = []
    word2ph: list[int] = []
    for segment in _SENTENCE_SPLIT_RE.split(norm_text):
        if not segment.strip():
            continue
        p, t, w = _g2p_segment(segment)
        phones += p
        tones += t
        word2ph += w
    if sum(word2ph) != len(phones) or len(word2ph) != len(norm_text):
        raise TextRejected(
            f"{norm_text!r} could not be aligned character by character ({len(word2ph)} readings for "
            f"{len(norm_text)} characters); pass it through text_normalize first"
        )
    return ["_"] + phones + ["_"], [0] + tones + [0], [1] + word2ph + [1]
