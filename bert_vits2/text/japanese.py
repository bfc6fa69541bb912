"""Japanese text frontend compatible with Bert-VITS2 v2.3 (pyopenjtalk-plus + word tokenizer).

Pipeline: ``text_normalize`` (NFKC, numbers to Japanese words, punctuation map, drop everything
that is not kana/kanji/punctuation) then ``g2p``: pyopenjtalk splits the text into words with
katakana readings (``text2sep_kata``), each word becomes phones, the sentence's full-context labels
give per-phone accent marks that become binary tones 0/1, and each word's phones are spread over
the word's BERT tokens (word2ph).

v2.3 compatibility (the default, ``v23_compat=True``): v2.3 turned every word's katakana reading
back into phones with a second ``pyopenjtalk.g2p`` call on the katakana alone. That loses the
sentence context (先生 becomes ``s e n s e i`` instead of ``s e n s e e``, 見つける ``m i q k e r u``),
and when those phones differ from the sentence labels the tone alignment stalls and later tones
become 0. Checkpoints trained on v2.3 learned exactly that, so it is reproduced by default.
``v23_compat=False`` takes each word's phones from the sentence's own labels instead (what
upstream changed after 2.3), so phones and tones agree, and writes the moraic nasal ん as ``N``
(also as upstream later did); use it only for models trained with the same setting.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
import unicodedata
from typing import Optional, Sequence

import jaconv

from bert_vits2.text.errors import TextRejected
from bert_vits2.text.symbols import punctuation, symbols
from bert_vits2.text.word_tokenizer import DEFAULT_JA_TOKENIZER_DIR, distribute_phones, get_word_tokenizer

logger = logging.getLogger(__name__)

# Punctuation map shared by v2.3's Japanese and English frontends (order matters for overlaps).
PUNCTUATION_MAP = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "．": ".",
    "…": "...", "···": "...", "・・・": "...", "·": ",", "・": ",", "、": ",", "$": ".",
    "“": "'", "”": "'", '"': "'", "‘": "'", "’": "'", "（": "'", "）": "'", "(": "'", ")": "'",
    "《": "'", "》": "'", "【": "'", "】": "'", "[": "'", "]": "'", "—": "-", "−": "-", "～": "-",
    "~": "-", "「": "'", "」": "'",
}
_PUNCT_RX = re.compile("|".join(re.escape(k) for k in PUNCTUATION_MAP))
# Kept characters: hiragana, katakana, CJK (+ extension A), 々, and the 7 punctuation symbols.
_DROP_RX = re.compile(
    "[^\u3040-\u309f\u30a0-\u30ff\u4e00-\u9fff\u3400-\u4dbf\u3005" + re.escape("".join(punctuation)) + "]+"
)
# A reading or word that starts with anything but letters, digits, kana, kanji or full-width
# alphanumerics is a "mark" (punctuation): it is kept as itself.
_MARKS = re.compile(r"[^A-Za-z\d\u3005\u3040-\u30ff\u4e00-\u9fff\uff11-\uff19\uff21-\uff3a\uff41-\uff5a\uff66-\uff9d]")
_SYMBOL_TOKENS = set("・、。？！")
_NO_YOMI_TOKENS = set("「」『』―（）［］[]")

_NUMBER_WITH_SEPARATOR_RX = re.compile("[0-9]{1,3}(,[0-9]{3})+")
_CURRENCY_MAP = {"$": "ドル", "¥": "円", "£": "ポンド", "€": "ユーロ"}
_CURRENCY_RX = re.compile(r"([$¥£€])([0-9.]*[0-9])")
_NUMBER_RX = re.compile(r"[0-9]+(\.[0-9]+)?")

_LABEL_PHONE_RX = re.compile(r"\-([^\+]*)\+")
_LABEL_A1_RX = re.compile(r"/A:(\-?[0-9]+)\+")
_LABEL_A2_RX = re.compile(r"\+(\d+)\+")
_MORA_END = frozenset("aiueoAIUEO") | {"N", "cl"}


@functools.lru_cache(maxsize=1)
def _pyopenjtalk():
    """Import pyopenjtalk-plus on first use (it prints an onnxruntime notice on import).

    pyopenjtalk-plus guesses the reading of a standalone 何 (ナニ/ナン) with an ONNX model, but only when onnxruntime
    happens to be installed; without it every standalone 何 reads ナニ. v2.3 checkpoints learned the latter, and the
    output must not depend on which other packages are installed, so the guess is fixed to ナニ (the model's class 0).
    """
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        import pyopenjtalk  # pyopenjtalk: ~0.4 s import (and it prints), only for Japanese text
    if buf.getvalue().strip():
        logger.debug("pyopenjtalk: %s", buf.getvalue().strip())
    try:  # the state pyopenjtalk-plus is in when onnxruntime is absent: its predictor then always answers ナニ
        from pyopenjtalk.yomi_model import nani_predict

        nani_predict.enc_session = nani_predict.model_session = None
    except ImportError:  # another pyopenjtalk build without the predictor
        pass
    return pyopenjtalk


def replace_punctuation(text: str) -> str:
    """Map punctuation to the 7 symbols and drop everything that is not kana, kanji or punctuation."""
    return _DROP_RX.sub("", _PUNCT_RX.sub(lambda m: PUNCTUATION_MAP[m.group()], text))


def convert_numbers_to_words(text: str) -> str:
    """``1,234`` -> ``1234``, ``$5`` -> ``5ドル``, then every number to Japanese words (num2words)."""
    text = _NUMBER_WITH_SEPARATOR_RX.sub(lambda m: m[0].replace(",", ""), text)
    text = _CURRENCY_RX.sub(lambda m: m[2] + _CURRENCY_MAP.get(m[1], m[1]), text)
    from num2words import num2words  # imported on first use: importing the frontend loads nothing it may not need

    return _NUMBER_RX.sub(lambda m: num2words(m[0], lang="ja"), text)


def text_normalize(text: str) -> str:
    """v2.3 Japanese normalisation: NFKC, numbers, punctuation map/filter, drop the combining dakuten."""
    text = unicodedata.normalize("NFKC", text)
    text = convert_numbers_to_words(text)
    text = replace_punctuation(text)
    return text.replace("\u3099", "")


def _hira2kata(text: str) -> str:
    return jaconv.hira2kata(text)


def _split_words(norm_text: str):
    """Run pyopenjtalk on the text: (njd nodes, entries) with one entry per output word
    ``(surface, reading or None, mora count)``; a reading of None means "no reading"."""
    nodes = _pyopenjtalk().run_frontend(norm_text)
    entries = []
    for node in nodes:
        word = replace_punctuation(node["string"])
        yomi = node["pron"].replace("’", "")
        if yomi:
            if _MARKS.match(yomi):
                if len(word) > 1:  # a run of marks ("......"): one entry per character
                    entries.extend((replace_punctuation(c),) * 2 + (0,) for c in word)
                    continue
                if word not in PUNCTUATION_MAP and word not in PUNCTUATION_MAP.values():
                    word = ","
                yomi = word
            entries.append((word, yomi, int(node.get("mora_size", 0))))
        elif word in _SYMBOL_TOKENS:
            entries.append((word, word, 0))
        elif word in ("っ", "ッ"):
            entries.append((word, "ッ", 0))
        elif word in _NO_YOMI_TOKENS:
            entries.append((word, None, 0))
        else:
            entries.append((word, word, 0))
    return nodes, entries


def _accents(labels: Sequence[str]) -> list[tuple[str, int]]:
    """Per phone of the full-context labels (pauses skipped): (lower-case phone, mark) where the
    mark is -1 where the pitch falls after the phone, +1 where it rises, else 0."""
    out = []
    for n, label in enumerate(labels):
        phone = _LABEL_PHONE_RX.search(label).group(1)
        if phone in ("sil", "pau"):
            continue
        a1 = int(_LABEL_A1_RX.search(label).group(1))
        a2 = int(_LABEL_A2_RX.search(label).group(1))
        if _LABEL_PHONE_RX.search(labels[n + 1]).group(1) in ("sil", "pau"):
            a2_next = -1
        else:
            a2_next = int(_LABEL_A2_RX.search(labels[n + 1]).group(1))
        if a1 == 0 and a2_next == a2 + 1:
            mark = -1
        elif a2 == 1 and a2_next == 2:
            mark = 1
        else:
            mark = 0
        out.append((phone.replace("cl", "q").lower(), mark))
    return out


def text2sep_kata(norm_text: str) -> tuple[list[str], list[str], list[tuple[str, int]]]:
    """Words of ``norm_text`` (surfaces), their katakana readings and the sentence's per-phone
    accent marks, as upstream v2.3. The Japanese BERT tokenizes ``"".join(sep_text)``."""
    nodes, entries = _split_words(norm_text)
    sep_text = [e[0] for e in entries]
    sep_kata = [_hira2kata(e[1]) for e in entries if e[1] is not None]
    return sep_text, sep_kata, _accents(_pyopenjtalk().make_label(nodes))


@functools.lru_cache(maxsize=65536)
def _kata_to_phones_v23(kata: str) -> tuple[str, ...]:
    """v2.3's per-word conversion: a second g2p of the katakana alone (context lost)."""
    text = kata.strip()
    if text == "ー":
        return ("ー",)
    if text.startswith("ー"):
        return ("ー",) + _kata_to_phones_v23(text[1:])
    out: list[str] = []
    while text:
        if _MARKS.match(text):
            out.append(text)
            text = text[1:]
            continue
        if text.startswith("ー"):
            text = text[1:]
            continue
        out += _pyopenjtalk().g2p(text).lower().replace("cl", "q").split(" ")
        break
    return tuple(out)


def _fill_long_vowels(word_phones: list[list[str]]) -> list[list[str]]:
    """Replace a leftover ``ー`` by the preceding vowel (v2.3 ``handle_long``)."""
    for i, phones in enumerate(word_phones):
        if phones and phones[0] == "ー":
            phones[0] = word_phones[i - 1][-1]  # i == 0 wraps to the last word, as v2.3
        for j in range(1, len(phones)):
            if phones[j] == "ー":
                phones[j] = phones[j - 1][-1]
    return word_phones


def _align_tones(word_phones: list[list[str]], accents: list[tuple[str, int]]) -> list[int]:
    """Binary tones per phone: walk the accent marks in step with the phones (a phone that does not
    match the next mark gets 0 and does not consume it), sum the marks inside each word, shift by
    one phone, and lift a word whose contour dips below 0."""
    pending = list(accents)
    tones: list[int] = []
    for phones in word_phones:
        acc = [0] * len(phones)
        for idx, phone in enumerate(phones):
            if not pending:
                break
            if phone.lower() == pending[0][0]:
                acc[idx] = pending[0][1] + (acc[idx - 1] if idx > 0 else 0)
                pending.pop(0)
        acc = ([0] + acc)[: len(phones)]
        if -1 in acc:
            acc = [a + 1 for a in acc]
        tones += acc
    bad = [t for t in tones if t not in (0, 1)]
    if bad:
        raise TextRejected(f"accent alignment produced tones {sorted(set(bad))} outside 0/1")
    return tones


def _label_phones_per_word(nodes, entries) -> Optional[list[list[str]]]:
    """Each entry's phones cut from the sentence labels by the words' mora counts (v23_compat=False).
    None when the counts do not add up (then the caller falls back to the v2.3 conversion)."""
    phones = []
    for label in _pyopenjtalk().make_label(nodes):
        p = _LABEL_PHONE_RX.search(label).group(1)
        if p not in ("sil", "pau"):
            phones.append(p)
    morae: list[list[str]] = []
    current: list[str] = []
    for p in phones:
        current.append(p)
        if p in _MORA_END:
            morae.append(current)
            current = []
    if current or sum(e[2] for e in entries if e[1] is not None and not _MARKS.match(e[1])) != len(morae):
        return None
    out: list[list[str]] = []
    pos = 0
    for word, kata, n_morae in entries:
        if kata is None:
            out.append([])
            continue
        if _MARKS.match(kata):
            out.append([kata])
            continue
        word_phones = [p for mora in morae[pos : pos + n_morae] for p in mora]
        pos += n_morae
        out.append(["N" if p == "N" else p.replace("cl", "q").lower() for p in word_phones])
    return out


def g2p(
    norm_text: str,
    tokenizer_dir: Optional[str] = None,
    v23_compat: bool = True,
) -> tuple[list[str], list[int], list[int]]:
    """Phones, tones (0/1) and word2ph of normalised Japanese text, wrapped in ``_`` (tone 0, 1 token).

    ``tokenizer_dir``: the Japanese BERT folder whose tokenizer splits each word into tokens
    (default ``bert/deberta-v2-large-japanese-char-wwm``; a missing folder falls back to one
    token per character with a warning). ``v23_compat``: see the module docstring.
    """
    tokenizer = get_word_tokenizer(tokenizer_dir, "char", DEFAULT_JA_TOKENIZER_DIR)
    nodes, entries = _split_words(norm_text)
    sep_text = [e[0] for e in entries]
    sep_kata = [_hira2kata(e[1]) for e in entries if e[1] is not None]
    labels = _pyopenjtalk().make_label(nodes)

    word_phones = None
    if not v23_compat:
        kata_entries = [(w, _hira2kata(k) if k is not None else None, m) for w, k, m in entries]
        word_phones = _label_phones_per_word(nodes, kata_entries)
        if word_phones is None:
            logger.warning("mora counts of %r disagree with its labels: using the v2.3 conversion", norm_text)
    if word_phones is None:
        word_phones = [list(_kata_to_phones_v23(k)) for k in sep_kata]
    word_phones = _fill_long_vowels(word_phones)
    for word, phones in zip(sep_text, word_phones):
        unknown = [p for p in phones if p not in symbols]
        if unknown:
            raise TextRejected(
                f"Japanese word {word!r} gave phones {unknown} outside the symbol set; "
                "pyopenjtalk cannot read it: rewrite it in kana"
            )
    tones = _align_tones(word_phones, _accents(labels))

    word2ph: list[int] = []
    for word, phones in zip(sep_text, word_phones):
        tokens = [word] if word in punctuation else tokenizer.tokenize(word)
        word2ph += distribute_phones(len(phones), len(tokens))
    phones = ["_"] + [p for w in word_phones for p in w] + ["_"]
    tones = [0] + tones + [0]
    word2ph = [1] + word2ph + [1]
    if len(phones) != len(tones) or sum(word2ph) != len(phones):
        raise AssertionError(f"inconsistent Japanese g2p output for {norm_text!r}")
    return phones, tones, word2ph
