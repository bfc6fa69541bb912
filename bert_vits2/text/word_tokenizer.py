"""Word tokenizers that decide how phones are spread over BERT tokens (word2ph).

Bert-VITS2 v2.3 splits each word of the normalised text into the tokens of the language's BERT
tokenizer and gives every token a share of the word's phones (``distribute_phones``). The BERT
features are later repeated per token with that ``word2ph``, so the tokenizer used here must be
the tokenizer of the BERT folder used for the features (the one the checkpoint was trained with).

``get_word_tokenizer(folder, fallback)`` loads ``AutoTokenizer.from_pretrained(folder)`` once per
folder (cached for the process). When the folder does not exist, a documented fallback is used and
a warning is logged once per folder, because word2ph (and for English the pronunciation, which is
looked up per sentencepiece piece) may then differ from what a v2.3 checkpoint saw in training:

* ``"char"`` (Japanese; the real ``deberta-v2-large-japanese-char-wwm`` is character level):
  one token per character;
* ``"words"`` (English): one token per word (runs of letters/digits/apostrophes) and one per
  other non-space character.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from typing import Callable, Optional

logger = logging.getLogger(__name__)

#: Default folders, relative to the working directory, as in upstream Bert-VITS2 (bert/...).
DEFAULT_JA_TOKENIZER_DIR = os.path.join("bert", "deberta-v2-large-japanese-char-wwm")
DEFAULT_EN_TOKENIZER_DIR = os.path.join("bert", "deberta-v3-large")

_EN_FALLBACK_RX = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")


def distribute_phones(n_phones: int, n_tokens: int) -> list[int]:
    """Share ``n_phones`` among ``n_tokens`` as v2.3 does (each phone to the least-loaded, first
    such token): every token gets ``n_phones // n_tokens`` and the first remainder tokens one more."""
    if n_tokens <= 0:
        if n_phones:
            raise ValueError(f"cannot distribute {n_phones} phones over 0 tokens")
        return []
    base, extra = divmod(n_phones, n_tokens)
    return [base + 1] * extra + [base] * (n_tokens - extra)


class WordTokenizer:
    """``tokenize(text) -> list[str]`` from a BERT folder, or the fallback when ``hf`` is None."""

    def __init__(self, hf_tokenizer, fallback: str, folder: str):
        self.hf = hf_tokenizer
        self.fallback = fallback
        self.folder = folder

    @property
    def is_fallback(self) -> bool:
        return self.hf is None

    def tokenize(self, text: str) -> list[str]:
        if self.hf is not None:
            return self.hf.tokenize(text)
        if self.fallback == "char":
            return [c for c in text if not c.isspace()]
        # "words": one piece per word, marked with sentencepiece's "▁" word-start sign so the
        # English word grouping works unchanged; other characters stay unmarked single pieces.
        return [
            "\u2581" + piece if piece[0].isalnum() else piece
            for piece in _EN_FALLBACK_RX.findall(text)
        ]

    def __repr__(self) -> str:
        kind = "fallback:" + self.fallback if self.is_fallback else type(self.hf).__name__
        return f"WordTokenizer({self.folder!r}, {kind})"


@functools.lru_cache(maxsize=16)
def _load(folder: str, fallback: str) -> WordTokenizer:
    if not os.path.isdir(folder):
        logger.warning(
            "word tokenizer folder %r not found: using the %r fallback split. word2ph (and for "
            "English the per-piece pronunciation) may differ from what a Bert-VITS2 v2.3 "
            "checkpoint was trained with; pass the BERT folder (tokenizer_dir=...) to match it.",
            folder,
            fallback,
        )
        return WordTokenizer(None, fallback, folder)
    from transformers import AutoTokenizer  # heavy import: only when a folder is really used

    try:
        hf = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # a broken folder must not silently fall back
        raise RuntimeError(
            f"could not load the word tokenizer from {folder!r} ({type(exc).__name__}: {exc}). "
            "Point tokenizer_dir at a BERT folder that holds its tokenizer files "
            "(saved with save_pretrained), or at a folder that does not exist to use the fallback."
        ) from exc
    return WordTokenizer(hf, fallback, folder)


def get_word_tokenizer(folder: Optional[str | os.PathLike], fallback: str, default: str) -> WordTokenizer:
    """The word tokenizer of ``folder`` (``default`` when None), cached per absolute folder path.

    ``fallback`` is ``"char"`` or ``"words"``: what to use when the folder does not exist.
    """
    if fallback not in ("char", "words"):
        raise ValueError(f"fallback must be 'char' or 'words', not {fallback!r}")
    path = os.path.abspath(os.fspath(folder if folder is not None else default))
    return _load(path, fallback)


Tokenize = Callable[[str], list[str]]
