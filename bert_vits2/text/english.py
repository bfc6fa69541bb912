"""English text frontend compatible with Bert-VITS2 v2.3.

Pipeline: ``text_normalize`` (numbers/currency/ordinals/years spelled out, punctuation map, a space
after ``,;.?!`` glued to a word) then ``g2p``: the text is split into the sentencepiece tokens of
the English BERT folder and grouped into words (a token starting with ``▁`` starts a word; a
punctuation token is its own word unless a word piece follows it directly). Each piece is then
pronounced ON ITS OWN (v2.3 behaviour, learned by its checkpoints): punctuation as itself (tone 0);
else ``piece.upper()`` in the CMU Pronouncing Dictionary 0.6 (shipped as ``cmudict.rep.gz``);
else g2p_en's neural model (offline, see ``g2p_offline``). Only a word that contains a bare ``'``
piece is looked up joined (``We'll``). Stress digits become tones (0->1, 1->2, 2->3, none->3),
and each word's phones are spread over its tokens (word2ph).
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import re
from typing import Optional

from bert_vits2.text import g2p_offline
from bert_vits2.text.en_numbers import normalize_numbers
from bert_vits2.text.japanese import PUNCTUATION_MAP
from bert_vits2.text.symbols import punctuation, symbols
from bert_vits2.text.word_tokenizer import DEFAULT_EN_TOKENIZER_DIR, distribute_phones, get_word_tokenizer

logger = logging.getLogger(__name__)

#: CMU Pronouncing Dictionary 0.6 (Copyright 1998 Carnegie Mellon University, use unrestricted;
#: see the file's header), in the syllabified form Bert-VITS2 v2.3 reads.
CMUDICT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cmudict.rep.gz")
_CMUDICT_FIRST_ENTRY_LINE = 49  # lines 1..48 are the header

# g2p_en phones that v2.3 converts to (phone, tone); anything else it emits keeps tone 0.
_VOWELS = "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split()
_CONSONANTS = "B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split()
ARPA = frozenset([v + s for v in _VOWELS for s in "012"] + _CONSONANTS + ["ER", "IH"])

_PHONE_MAP = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",",
    "、": ",", "…": "...", "···": "...", "・・・": "...", "v": "V",
}
_PUNCT_RX = re.compile("|".join(re.escape(k) for k in PUNCTUATION_MAP))
_SPACE_AFTER_PUNCT_RX = re.compile(r"([,;.\?\!])([\w])")
_SYMBOL_SET = frozenset(symbols)


def text_normalize(text: str) -> str:
    """v2.3 English normalisation (numbers, punctuation map, space after sentence punctuation)."""
    text = normalize_numbers(text)
    text = _PUNCT_RX.sub(lambda m: PUNCTUATION_MAP[m.group()], text)
    return _SPACE_AFTER_PUNCT_RX.sub(r"\1 \2", text)


@functools.lru_cache(maxsize=4)
def load_cmudict(path: str = CMUDICT_PATH) -> dict[str, list[list[str]]]:
    """Parse the syllabified CMU 0.6 file: ``WORD  PH PH - PH ...`` -> list of syllables (a later
    line for the same word replaces an earlier one, as v2.3). Cached in memory per path."""
    opener = gzip.open if path.endswith(".gz") else open
    entries: dict[str, list[list[str]]] = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if line_no < _CMUDICT_FIRST_ENTRY_LINE:
                continue
            fields = line.strip().split("  ")
            if len(fields) < 2:
                continue
            entries[fields[0]] = [syllable.split(" ") for syllable in fields[1].split(" - ")]
    return entries


def _phone_and_tone(arpa: str) -> tuple[str, int]:
    """ARPAbet with optional stress digit -> (lower-case phone, tone: digit + 1, or 3 without)."""
    if arpa[-1:].isdigit():
        return arpa[:-1].lower(), int(arpa[-1]) + 1
    return arpa.lower(), 3


def _to_symbol(phone: str) -> str:
    phone = _PHONE_MAP.get(phone, phone)
    return phone if phone in _SYMBOL_SET else "UNK"


@functools.lru_cache(maxsize=65536)
def pronounce_piece(piece: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Phones and tones of one word piece: punctuation, CMU 0.6, else g2p_en (offline)."""
    if piece in punctuation:
        return (piece,), (0,)
    syllables = load_cmudict().get(piece.upper())
    phones: list[str] = []
    tones: list[int] = []
    if syllables is not None:
        for syllable in syllables:
            for arpa in syllable:
                phone, tone = _phone_and_tone(arpa)
                phones.append(_to_symbol(phone))
                tones.append(tone)
        return tuple(phones), tuple(tones)

    for arpa in g2p_offline.get_g2p_en()(piece):  # through the module: one place to replace it (tests)
        if arpa == " ":
            continue
        if arpa in ARPA:
            phone, tone = _phone_and_tone(arpa)
        else:
            phone, tone = arpa, 0
        phones.append(_to_symbol(phone))
        tones.append(tone)
    return tuple(phones), tuple(tones)


def text_to_words(tokens: list[str]) -> list[list[str]]:
    """Group sentencepiece tokens into words (lists of pieces, the ``▁`` removed)."""
    words: list[list[str]] = []
    last = len(tokens) - 1
    for idx, token in enumerate(tokens):
        if token.startswith("\u2581"):
            words.append([token[1:]])
            continue
        if token in punctuation:
            continues = idx < last and not tokens[idx + 1].startswith("\u2581") and tokens[idx + 1] not in punctuation
            if not continues:
                words.append([token])
                continue
        if not words:
            words.append([])
        words[-1].append(token)
    return words


def g2p(norm_text: str, tokenizer_dir: Optional[str] = None) -> tuple[list[str], list[int], list[int]]:
    """Phones, tones (0..3) and word2ph of normalised English text, wrapped in ``_`` (tone 0, 1 token).

    ``tokenizer_dir``: the English BERT folder (default ``bert/deberta-v3-large``) whose
    sentencepiece tokenizer splits the text; a missing folder falls back to one token per word
    with a warning (pronunciations may then differ from a v2.3 checkpoint's training data).
    """
    tokenizer = get_word_tokenizer(tokenizer_dir, "words", DEFAULT_EN_TOKENIZER_DIR)
    words = text_to_words(tokenizer.tokenize(norm_text))
    phones: list[str] = []
    tones: list[int] = []
    word2ph: list[int] = []
    for word in words:
        pieces = ["".join(word)] if len(word) > 1 and "'" in word else word
        n_before = len(phones)
        for piece in pieces:
            piece_phones, piece_tones = pronounce_piece(piece)
            phones += piece_phones
            tones += piece_tones
        word2ph += distribute_phones(len(phones) - n_before, len(word))
    phones = ["_"] + phones + ["_"]
    tones = [0] + tones + [0]
    word2ph = [1] + word2ph + [1]
    if len(phones) != len(tones) or sum(word2ph) != len(phones):
        raise AssertionError(f"inconsistent English g2p output for {norm_text!r}")
    return phones, tones, word2ph
