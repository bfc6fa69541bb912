"""Phone-level BERT features for Bert-VITS2 v2.3 (Chinese, Japanese, English).

Each language has its own pretrained BERT in a local folder (``bert/<name>`` by default). The feature of a sentence is the
third-to-last hidden state (``hidden_states[-3]``) of its tokens, each token repeated once per phone it covers
(``word2ph``), transposed to ``[hidden, n_phones]``: exactly what upstream ``*_bert.get_bert_feature`` computes.
Models are read from disk only (never from the hub), cached per (folder, device) and loaded once even when several
threads ask at the same time.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from bert_vits2.text.japanese import text2sep_kata

logger = logging.getLogger(__name__)

LANGUAGES = ("ZH", "JP", "EN")


@dataclass(frozen=True)
class BertModelInfo:
    """Which pretrained model a language needs and where upstream gets it."""

    language: str
    folder_name: str
    hf_repo: str
    purpose: str


BERT_MODELS: dict[str, BertModelInfo] = {
    "ZH": BertModelInfo(
        "ZH",
        "chinese-roberta-wwm-ext-large",
        "hfl/chinese-roberta-wwm-ext-large",
        "Chinese (ZH) BERT features for Bert-VITS2 v2.3 training (bert_gen.py) and inference",
    ),
    "JP": BertModelInfo(
        "JP",
        "deberta-v2-large-japanese-char-wwm",
        "ku-nlp/deberta-v2-large-japanese-char-wwm",
        "Japanese (JP) BERT features and the Japanese word tokenizer of the text frontend",
    ),
    "EN": BertModelInfo(
        "EN",
        "deberta-v3-large",
        "microsoft/deberta-v3-large",
        "English (EN) BERT features and the English word tokenizer of the text frontend",
    ),
}

#: Root folder of the default model folders; overridable with the BV2_BERT_ROOT environment variable or per call.
DEFAULT_BERT_ROOT = "bert"

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


class BertModelMissingError(FileNotFoundError):
    """A BERT folder (or a file in it) is missing; the message says what to download and where to put it."""


class BertFeatureError(ValueError):
    """The text, its tokens and word2ph do not line up (upstream asserted here)."""


def normalize_language(language: str) -> str:
    """Upstream language code (``ZH``/``JP``/``EN``) of ``language``; accepts lower case and ``JA``."""
    code = str(language).strip().upper()
    if code == "JA":
        code = "JP"
    if code not in BERT_MODELS:
        raise ValueError(f"unknown language {language!r}: Bert-VITS2 v2.3 supports ZH, JP and EN")
    return code


def default_bert_dir(language: str, root: str | os.PathLike | None = None) -> Path:
    """Default model folder of ``language``: ``<root>/<upstream folder name>`` (root: BV2_BERT_ROOT or ``bert``)."""
    info = BERT_MODELS[normalize_language(language)]
    if root is None:
        root = os.environ.get("BV2_BERT_ROOT", DEFAULT_BERT_ROOT)
    return Path(root) / info.folder_name


def resolve_bert_dirs(bert_dirs: dict[str, str | os.PathLike] | None = None) -> dict[str, Path]:
    """Folder for every language: the given ones (keys any case, ``JA`` accepted) over the defaults."""
    dirs = {lang: default_bert_dir(lang) for lang in LANGUAGES}
    for lang, folder in (bert_dirs or {}).items():
        if folder is not None:
            dirs[normalize_language(lang)] = Path(folder)
    return dirs


def _missing_message(model_dir: Path, language: str, what: str) -> str:
    info = BERT_MODELS[language]
    return (
        f"{what} in BERT folder '{model_dir}'. Place the pretrained model '{info.folder_name}' there "
        f"(Hugging Face repo {info.hf_repo}: config.json, the weights and the tokenizer files), e.g. "
        f"`huggingface-cli download {info.hf_repo} --local-dir {model_dir}`. It is needed for: {info.purpose}. "
        f"Another folder can be chosen with the --bert-dir options / bert_dirs argument."
    )


def check_bert_dir(model_dir: str | os.PathLike, language: str) -> Path:
    """Raise BertModelMissingError unless ``model_dir`` looks like a complete model folder."""
    language = normalize_language(language)
    folder = Path(model_dir)
    if not folder.is_dir():
        raise BertModelMissingError(_missing_message(folder, language, "Missing folder: no such directory"))
    if not (folder / "config.json").is_file():
        raise BertModelMissingError(_missing_message(folder, language, "Missing file config.json"))
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise BertModelMissingError(
            _missing_message(folder, language, f"No model weights ({' / '.join(_WEIGHT_FILES[:2])})")
        )
    return folder


#: BERT precisions: ``bf16`` halves memory and uses bf16 matmuls (fast on AVX512-BF16/AMX/GPUs); ``int8`` is dynamic
#: int8 quantisation of every Linear (CPU only; weights int8, activations quantised per call). See
#: benchmarks/bench_synthesis.py for their measured speed and feature error.
BERT_PRECISIONS = ("fp32", "bf16", "int8")

_cache: dict[tuple[str, ...], tuple[Any, Any]] = {}
_cache_lock = threading.Lock()
_key_locks: dict[tuple[str, ...], threading.Lock] = {}


def resolve_bert_precision(bert_precision: str | None, generator_precision: str = "fp32",
                           device: str | torch.device = "cpu") -> str:
    """The BERT precision a voice runs: ``None``/``auto`` follows the generator (bf16 generator: bf16, else fp32);
    ``fp32``/``bf16``/``int8`` as asked (int8 on a CPU only). Raises ``ValueError`` with the choices otherwise."""
    choice = "auto" if bert_precision is None else str(bert_precision).lower()
    if choice == "auto":
        return "bf16" if generator_precision == "bf16" else "fp32"
    if choice not in BERT_PRECISIONS:
        raise ValueError(f"bert_precision must be auto or one of {', '.join(BERT_PRECISIONS)}, not {bert_precision!r}")
    if choice == "int8" and torch.device(device).type != "cpu":
        raise ValueError("an int8 BERT runs on the CPU only: use bf16 (or auto) on a GPU")
    return choice


def apply_bert_precision(model: Any, precision: str, device: str = "cpu") -> Any:
    """Return ``model`` converted for ``precision`` (``fp32`` unchanged, ``bf16`` cast, ``int8`` dynamic-quantised)."""
    precision = str(precision).lower()
    if precision not in BERT_PRECISIONS:
        raise ValueError(f"BERT precision must be one of {', '.join(BERT_PRECISIONS)}, not {precision!r}")
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        if torch.device(device).type != "cpu":
            raise ValueError("int8 dynamic quantisation of the BERT runs on the CPU only; use bf16 on a GPU")

        from torch.ao.quantization import quantize_dynamic  # torch.ao.quantization: only for int8 BERTs

        with warnings.catch_warnings():  # torch.ao eager quantisation is deprecated in favour of torchao (not installed)
            warnings.simplefilter("ignore")
            return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


#: oneDNN's linear with a weight reordered once at load (what torch's inductor uses on x86 CPUs); None if absent
_PACK = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None) if torch.backends.mkldnn.is_available() else None


class _PackedLinear(torch.nn.Module):
    """An fp32 ``nn.Linear`` whose weight oneDNN reordered once, at load.

    Why: a BERT feature is a few tokens, so every matmul is ``[~12, 1024] x [1024, 4096]`` and ``F.linear`` (MKL
    sgemm) spends most of its time re-packing the weight on every call. Measured on the BERT-large-shaped model, 13
    tokens, one thread, Xeon @ 2.80GHz (Ice Lake, no AMX): 452 ms -> 244 ms per feature; the output differs by float
    rounding only (4.8e-6 max on values up to 3.4). ``BV2_BERT_PACKED=0`` keeps torch's own Linear (bit-exact)."""

    def __init__(self, linear: torch.nn.Linear, tokens_hint: int = 16) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_packed = _PACK(linear.weight.detach(), tokens_hint)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), self.weight_packed, self.bias, "none", [], "")
        return y.reshape(*shape[:-1], self.out_features)


def _pack_linears(model: Any) -> Any:
    """Swap the fp32 encoder layers' ``nn.Linear`` s for :class:`_PackedLinear` (CPU, oneDNN present, not disabled with
    ``BV2_BERT_PACKED=0``); a check forward must agree with the unpacked model to 1e-3, else it is left as it was."""
    layers = _encoder_layers(model)
    if _PACK is None or layers is None or os.environ.get("BV2_BERT_PACKED", "1") == "0":
        return model
    swaps = [(mod, name, child) for mod in layers.modules() for name, child in mod.named_children()
             if type(child) is torch.nn.Linear and child.weight.dtype == torch.float32
             and child.weight.device.type == "cpu"]
    if not swaps:
        return model
    probe = {"input_ids": torch.tensor([[0, 1, 2, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    try:
        vocab = int(getattr(model.config, "vocab_size", 4))
        probe["input_ids"] = probe["input_ids"] % max(1, vocab)
        want = _hidden_minus_3(model, probe, "probe")
        for mod, name, child in swaps:
            setattr(mod, name, _PackedLinear(child))
        got = _hidden_minus_3(model, probe, "probe")
        if got.shape == want.shape and float((got - want).abs().max()) <= 1e-3:
            return model
        logger.warning("packed BERT linears disagree with the plain ones; using the plain ones")
    except (RuntimeError, TypeError, ValueError) as exc:
        logger.warning("packed BERT linears unavailable (%s); using the plain ones", exc)
    for mod, name, child in swaps:
        setattr(mod, name, child)
    return model


def _load(folder: Path, language: str, device: str, precision: str = "fp32") -> tuple[Any, Any]:
    import transformers  # transformers: ~1.6 s import, only when a BERT is loaded

    try:
        if language == "EN":
            tokenizer = transformers.DebertaV2Tokenizer.from_pretrained(str(folder), local_files_only=True)
            model = transformers.DebertaV2Model.from_pretrained(str(folder), local_files_only=True)
        else:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = transformers.AutoModelForMaskedLM.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise BertModelMissingError(_missing_message(folder, language, f"Could not load the model "
                                                                         f"({load_failure_reason(exc)})")) from None
    model = model.to(device).eval()
    model.requires_grad_(False)
    model = apply_bert_precision(model, precision, device)
    return tokenizer, _pack_linears(model) if precision == "fp32" and torch.device(device).type == "cpu" else model


def load_failure_reason(exc: BaseException, limit: int = 300) -> str:
    """One line saying why a model folder did not load, without torch's advice to retry with ``weights_only=False``
    (that advice is how an unsafe file runs code: this project never gives it)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "weights_only" not in text:
        return text[:limit]
    found = re.search(r"(?:Unsupported global|unsupported GLOBAL):? ?(?:GLOBAL )?([\w.]+)", text)
    what = f" (it references {found.group(1)})" if found else ""
    return (f"its weights file holds Python objects that a plain-weights file never contains{what}; loading was "
            f"refused because it could run code: a damaged or unsafe file, download it again from a source you trust")


def load_bert(model_dir: str | os.PathLike, language: str, device: str = "cpu", precision: str = "fp32") -> tuple[Any, Any]:
    """(tokenizer, model in eval mode) for ``language`` from ``model_dir``; loaded once per (folder, device, precision)
    and kept resident."""
    language = normalize_language(language)
    if str(precision).lower() not in BERT_PRECISIONS:
        raise ValueError(f"BERT precision must be one of {', '.join(BERT_PRECISIONS)}, not {precision!r}")
    precision = str(precision).lower()
    folder = check_bert_dir(model_dir, language)
    key = (str(folder.resolve()), language, str(torch.device(device)), precision)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            return hit
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one loader per key; other keys load concurrently
        with _cache_lock:
            hit = _cache.get(key)
        if hit is None:
            logger.info("loading %s BERT from %s on %s", language, folder, device)
            hit = _load(folder, language, device, precision)
            with _cache_lock:
                _cache[key] = hit
    return hit


def clear_bert_cache() -> None:
    """Forget every loaded model (frees their memory once no caller holds them)."""
    with _cache_lock:
        _cache.clear()
        _key_locks.clear()


def _model_text(text: str, language: str) -> str:
    """The string that is tokenized: Japanese goes through katakana first, as upstream does."""
    if language == "JP":
        return "".join(text2sep_kata(text)[0])
    return text


class _FeatureReady(Exception):
    """Raised by the hook on the layer whose output is ``hidden_states[-3]``: the rest of the model is not needed."""


def _encoder_layers(model: Any) -> Any:
    """The encoder's list of layers (BERT, RoBERTa, DeBERTa-v2/v3 keep it at ``base_model.encoder.layer``), or None."""
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    return layers if isinstance(layers, torch.nn.ModuleList) else None


def _hidden_minus_3(model: Any, inputs: dict[str, torch.Tensor], language: str) -> torch.Tensor:
    """``hidden_states[-3]`` [B, T, H] of ``model(**inputs)``, computed without the last two layers and the MLM head.

    Why: ``hidden_states[-3]`` is the output of layer ``L - 3`` (``hidden_states[0]`` is the embeddings), so the last
    two of the 24 layers and the masked-LM head (about 10 % of a BERT-large forward) only cost time. A forward hook on
    that layer takes its output (the very tensor ``output_hidden_states`` would return: the same ops) and stops the
    forward. Models whose layers cannot be found, or with fewer than 3 layers, run whole as before.
    """
    layers = _encoder_layers(model)
    with torch.no_grad():
        if layers is not None and len(layers) >= 3:
            got: list[torch.Tensor] = []

            def take(_module: Any, _args: Any, output: Any) -> None:
                got.append(output[0] if isinstance(output, (tuple, list)) else output)
                raise _FeatureReady

            handle = layers[len(layers) - 3].register_forward_hook(take)
            try:
                model(**inputs)
            except _FeatureReady:
                pass
            finally:
                handle.remove()
            if got:
                return got[0]
        hidden_states = model(**inputs, output_hidden_states=True).hidden_states
    if len(hidden_states) < 3:
        raise BertFeatureError(
            f"{language} BERT has {len(hidden_states) - 1} layers; Bert-VITS2 needs at least 2 (it uses hidden_states[-3])"
        )
    return hidden_states[-3]


def _token_hidden(text: str, language: str, tokenizer: Any, model: Any, device: str) -> torch.Tensor:
    """``hidden_states[-3]`` of one sentence, [n_tokens, hidden] on the CPU."""
    inputs = tokenizer(text, return_tensors="pt")
    inputs = {name: tensor.to(device) for name, tensor in inputs.items()}
    return _hidden_minus_3(model, inputs, language)[0].float().cpu()


def get_bert_feature(
    norm_text: str,
    word2ph: Sequence[int],
    language: str,
    model_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    style_text: str | None = None,
    style_weight: float = 0.7,
    precision: str = "fp32",
) -> torch.Tensor:
    """Phone-level BERT feature ``[hidden, sum(word2ph)]`` of ``norm_text`` (upstream v2.3 ``get_bert_feature``).

    ``word2ph[i]`` is the number of phones token ``i`` covers ([CLS] and [SEP] included), normally the blank-adjusted
    list (``2*w``, +1 on the first) so the result lines up with the model's phone ids. With ``style_text``, every
    phone's feature is mixed with the token-mean of the style sentence: ``feat*(1-w) + style_mean*w``.
    ``model_dir`` defaults to ``bert/<upstream folder name>``. ``precision``: see :data:`BERT_PRECISIONS`.
    """
    language = normalize_language(language)
    word2ph = [int(n) for n in word2ph]
    if any(n < 0 for n in word2ph):
        raise BertFeatureError(f"word2ph has negative counts: {word2ph}")
    folder = Path(model_dir) if model_dir is not None else default_bert_dir(language)
    tokenizer, model = load_bert(folder, language, device, precision)

    text = _model_text(norm_text, language)
    token_feats = _token_hidden(text, language, tokenizer, model, device)
    n_tokens = token_feats.shape[0]
    if n_tokens != len(word2ph):
        hint = (
            "for ZH/JP there must be one entry per character of the normalised text plus 2 ([CLS]/[SEP])"
            if language != "EN"
            else "for EN there must be one entry per sentencepiece token plus 2 ([CLS]/[SEP])"
        )
        raise BertFeatureError(
            f"{language} text {norm_text!r} gives {n_tokens} BERT tokens (tokenized text {text!r}) but word2ph has "
            f"{len(word2ph)} entries; {hint}. Pass the norm_text and word2ph that clean_text returned together, and "
            f"the BERT folder whose tokenizer the frontend used."
        )

    phone_feats = _expand(token_feats, word2ph)
    if style_text:
        style_feats = _token_hidden(_model_text(style_text, language), language, tokenizer, model, device)
        style_mean = style_feats.mean(0)
        phone_feats = phone_feats * (1 - style_weight) + style_mean * style_weight
    return phone_feats.T.contiguous()


def _expand(token_feats: torch.Tensor, word2ph: Sequence[int]) -> torch.Tensor:
    """Token features [n_tokens, hidden] -> phone features [n_phones, hidden] (token i repeated word2ph[i] times)."""
    return torch.repeat_interleave(token_feats, torch.tensor(list(word2ph), dtype=torch.long), dim=0)


def get_bert_features(
    items: Sequence[tuple[str, Sequence[int]]],
    language: str,
    model_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    precision: str = "fp32",
) -> list[torch.Tensor]:
    """:func:`get_bert_feature` for several ``(norm_text, word2ph)`` sentences of one language in one padded batch.

    Why: one forward over a batch keeps the matmuls large (the 24-layer models are launch/latency bound on short
    sentences), so a paragraph split into sentences costs less than sentence-by-sentence calls. Padding is masked,
    so each result equals the single-sentence feature up to float rounding (tests check 1e-4).
    """
    language = normalize_language(language)
    if not items:
        return []
    folder = Path(model_dir) if model_dir is not None else default_bert_dir(language)
    tokenizer, model = load_bert(folder, language, device, precision)
    texts = [_model_text(text, language) for text, _ in items]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    lengths = enc["attention_mask"].sum(1).tolist()
    enc = {name: tensor.to(device) for name, tensor in enc.items()}
    feats = _hidden_minus_3(model, enc, language).float().cpu()
    out = []
    for i, ((text, word2ph), n) in enumerate(zip(items, lengths)):
        word2ph = [int(c) for c in word2ph]
        if n != len(word2ph) or any(c < 0 for c in word2ph):
            raise BertFeatureError(f"{language} text {text!r} gives {n} BERT tokens but word2ph has {len(word2ph)} "
                                   "entries (or negative counts); pass the norm_text and word2ph of clean_text")
        side = getattr(tokenizer, "padding_side", "right")
        rows = feats[i, :n] if side == "right" else feats[i, feats.shape[1] - n:]
        out.append(_expand(rows, word2ph).T.contiguous())
    return out
