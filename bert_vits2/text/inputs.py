"""Text -> the tensors SynthesizerTrn.infer takes, exactly as upstream v2.3 ``infer.get_text``.

Pipeline: clean_text -> symbol/tone/language ids -> add_blank (if ``hps.data.add_blank``) with the matching word2ph
adjustment -> BERT feature of the utterance's language. The two other languages' BERT inputs are filled with
``torch.randn`` as v2.3 does at training and inference time (``filler="zeros"`` gives silence-free zeros instead).
"""

from __future__ import annotations

import os
from typing import Any, Literal, NamedTuple

import torch

from bert_vits2.commons import intersperse
from bert_vits2.text import add_blank, clean_text, cleaned_text_to_sequence
from bert_vits2.text.bert import get_bert_feature, normalize_language, resolve_bert_dirs


class TextInputs(NamedTuple):
    """Model inputs of one utterance (the first six are upstream get_text's return values)."""

    bert: torch.Tensor  # [hidden, T] ZH channel
    ja_bert: torch.Tensor  # [hidden, T] JP channel
    en_bert: torch.Tensor  # [hidden, T] EN channel
    phone_ids: torch.Tensor  # int64 [T]
    tone_ids: torch.Tensor  # int64 [T] (language offset added)
    language_ids: torch.Tensor  # int64 [T] (blanks get 0 = ZH, as upstream)
    phones: list[str]  # T phone symbols, "_" at blanks: phones[i] is what phone_ids[i] encodes
    word2ph: list[int]  # per BERT token, how many of the T ids it covers (blank-adjusted when add_blank)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def get_text(
    text: str,
    language: str,
    hps: Any,
    bert_dirs: dict[str, str | os.PathLike] | None = None,
    device: str = "cpu",
    style_text: str | None = None,
    style_weight: float = 0.7,
    tokenizer_dirs: dict[str, str | os.PathLike] | None = None,
    filler: Literal["randn", "zeros"] = "randn",
    filler_dim: int | None = None,
    generator: torch.Generator | None = None,
    bert_precision: str = "fp32",
) -> TextInputs:
    """Inputs of SynthesizerTrn.infer for ``text`` in ``language`` (ZH/JP/EN); see TextInputs.

    ``bert_dirs`` maps language -> BERT folder (defaults ``bert/<upstream name>``); ``tokenizer_dirs`` maps language ->
    word-tokenizer folder of the JP/EN frontends (defaults to the same BERT folder, as upstream). ``filler`` picks what
    the non-native BERT channels hold: ``randn`` (upstream v2.3, drawn from torch's global RNG in the order ZH, JP, EN)
    or ``zeros``; ``generator`` draws them from a request's own random stream instead of the global RNG.
    ``filler_dim`` defaults to the native feature's width (1024 for the real models). ``bert_precision``: the BERT's
    precision (:data:`bert_vits2.text.bert.BERT_PRECISIONS`; a voice passes its generator's, so bf16 runs both in bf16).
    """
    if filler not in ("randn", "zeros"):
        raise ValueError(f"filler must be 'randn' or 'zeros', not {filler!r}")
    language = normalize_language(language)
    dirs = resolve_bert_dirs(bert_dirs)
    tok_dirs: dict[str, Any] = {"ZH": None, "JP": dirs["JP"], "EN": dirs["EN"]}  # ZH needs no word tokenizer
    for lang, folder in (tokenizer_dirs or {}).items():
        tok_dirs[normalize_language(lang)] = folder

    norm_text, phones, tones, word2ph = clean_text(text, language, tokenizer_dir=tok_dirs[language])
    phone_ids, tone_ids, language_ids = cleaned_text_to_sequence(phones, tones, language)
    phones = list(phones)
    word2ph = [int(n) for n in word2ph]
    data = _get(hps, "data", hps)
    if _get(data, "add_blank", True):
        phone_ids, tone_ids, language_ids, word2ph = add_blank(phone_ids, tone_ids, language_ids, word2ph)
        phones = intersperse(phones, "_")

    native = get_bert_feature(
        norm_text, word2ph, language, dirs[language], device=device, style_text=style_text, style_weight=style_weight,
        precision=bert_precision,
    )
    n = len(phone_ids)
    if native.shape[-1] != n:
        raise ValueError(
            f"BERT feature covers {native.shape[-1]} phones but the text has {n} phone ids "
            f"(text {text!r}, language {language}); the frontend's word2ph does not match its phones"
        )
    dim = filler_dim or native.shape[0]
    channels = {}
    for lang in ("ZH", "JP", "EN"):  # upstream draws the fillers in this order
        if lang == language:
            channels[lang] = native
        elif filler == "randn":
            channels[lang] = torch.randn(dim, n, generator=generator)
        else:
            channels[lang] = torch.zeros(dim, n)
    return TextInputs(
        channels["ZH"],
        channels["JP"],
        channels["EN"],
        torch.LongTensor(list(phone_ids)),
        torch.LongTensor(list(tone_ids)),
        torch.LongTensor(list(language_ids)),
        phones,
        word2ph,
    )
