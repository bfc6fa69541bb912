"""Text frontend of Bert-VITS2 v2.3: text -> (normalised text, phones, tones, word2ph) -> model ids.

``clean_text(text, "ZH"|"JP"|"EN")`` dispatches to the language module (imported on first use, so
importing this package loads no segmenter, dictionary or tokenizer).  ``cleaned_text_to_sequence``
turns phones into symbol ids with the per-language tone offsets and language ids, and ``add_blank``
interleaves the blank token exactly as upstream's infer.get_text / data_utils / bert_gen do.
"""

from __future__ import annotations

import importlib
from typing import Sequence

from .errors import TextRejected
from .symbols import (
    language_id_map,
    language_tone_start_map,
    num_languages,
    num_tones,
    num_tones_per_language,
    punctuation,
    symbol_to_id,
    symbols,
)

__all__ = [
    "TextRejected",
    "add_blank",
    "clean_text",
    "cleaned_text_to_sequence",
    "get_language_module",
    "language_id_map",
    "language_tone_start_map",
    "num_languages",
    "num_tones",
    "punctuation",
    "symbols",
]

_LANGUAGE_MODULES = {"ZH": "chinese", "JP": "japanese", "EN": "english"}


def _check_language(language: str) -> str:
    if language not in _LANGUAGE_MODULES:
        raise ValueError(
            f"unknown language {language!r}: use one of {sorted(_LANGUAGE_MODULES)} "
            "(for mixed text split it first with bert_vits2.text.language.split_mix / split_auto)"
        )
    return language


def get_language_module(language: str):
    """The frontend module (text_normalize, g2p) of "ZH", "JP" or "EN"; imported on first use."""
    return importlib.import_module(f"{__name__}.{_LANGUAGE_MODULES[_check_language(language)]}")


def clean_text(
    text: str, language: str, tokenizer_dir: str | None = None
) -> tuple[str, list[str], list[int], list[int]]:
    """Normalise ``text`` and convert it to phones.

    Returns ``(norm_text, phones, tones, word2ph)``: phones start and end with ``"_"``, tones are the raw
    per-language values (ZH 0..5, JP 0/1, EN 0..3; no offset), ``word2ph[i]`` is the number of phones of
    the i-th BERT token (the boundary ``_`` count as one each).  ``tokenizer_dir`` is the BERT folder whose
    tokenizer splits JP/EN words (ignored for ZH).  Raises :class:`TextRejected` for text upstream rejects.
    """
    module = get_language_module(language)
    norm_text = module.text_normalize(text)
    phones, tones, word2ph = module.g2p(norm_text, tokenizer_dir=tokenizer_dir)
    return norm_text, phones, tones, word2ph


def cleaned_text_to_sequence(
    phones: Sequence[str], tones: Sequence[int], language: str
) -> tuple[list[int], list[int], list[int]]:
    """Symbol ids, tone ids (raw tone + the language's tone offset) and language ids, one per phone."""
    _check_language(language)
    if len(phones) != len(tones):
        raise ValueError(f"phones and tones differ in length ({len(phones)} vs {len(tones)})")
    unknown = sorted({p for p in phones if p not in symbol_to_id})
    if unknown:
        raise ValueError(f"phones not in the Bert-VITS2 v2.3 symbol table: {unknown}")
    n_tones = num_tones_per_language[language]
    bad = sorted({t for t in tones if not 0 <= int(t) < n_tones})
    if bad:
        raise ValueError(f"{language} tones must be in 0..{n_tones - 1}, got {bad}")
    start = language_tone_start_map[language]
    lang_id = language_id_map[language]
    return (
        [symbol_to_id[p] for p in phones],
        [int(t) + start for t in tones],
        [lang_id] * len(phones),
    )


def add_blank(
    phone_ids: Sequence[int],
    tone_ids: Sequence[int],
    language_ids: Sequence[int],
    word2ph: Sequence[int] | None = None,
) -> tuple[list[int], list[int], list[int], list[int] | None]:
    """Interleave the blank (id 0, tone 0, language 0 whatever the language) and adjust word2ph to match.

    n phones -> 2n+1 ids; ``word2ph`` -> ``2*w`` with one more on the first entry so that it still sums
    to the sequence length (upstream infer.get_text / data_utils / bert_gen).
    """
    from ..commons import intersperse  # deferred: commons imports torch

    blank_word2ph = None
    if word2ph is not None:
        blank_word2ph = [2 * int(w) for w in word2ph]
        if blank_word2ph:
            blank_word2ph[0] += 1
    return intersperse(list(phone_ids), 0), intersperse(list(tone_ids), 0), intersperse(list(language_ids), 0), blank_word2ph
