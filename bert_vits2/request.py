"""One synthesis request: its parameters, their defaults and their validation, in one place.

Every front end builds a :class:`SynthesisRequest` and hands it to ``Voice.synthesize`` / ``Voice.stream``: the web UI,
the HTTP routes and WebSockets of the server, the CLIs. Two tables of defaults exist because upstream has two:

- the dataclass defaults are upstream's **web UI** (``sdp_ratio`` 0.5, ``noise_scale`` 0.6, ``noise_scale_w`` 0.9, ...);
- :data:`HTTP_API_DEFAULTS` are upstream's **HTTP API** (``server_fastapi.py``: ``sdp_ratio`` 0.2, ``noise`` 0.2, ...);
  :meth:`SynthesisRequest.for_http_api` builds a request with them, and :data:`HTTP_API_NAMES` maps the HTTP API's
  parameter names (``noise``, ``noisew``, ``length``, ``auto_split``) to the fields here.

The first nine fields are positional in the order ``Voice.synthesize`` has always taken them, so
``SynthesisRequest(text, speaker, language, sdp_ratio, ...)`` and the old call style stay the same.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar, Mapping

from bert_vits2.text.bert import normalize_language

__all__ = [
    "HTTP_API_DEFAULTS", "HTTP_API_NAMES", "LANGUAGE_CHOICES", "MAX_SEED", "SynthesisError", "SynthesisRequest",
    "WEBUI_DEFAULTS",
]

LANGUAGE_CHOICES = ("ZH", "JP", "EN", "mix", "auto")
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes at most a signed 64-bit value here
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control characters, except tab and line breaks


class SynthesisError(ValueError):
    """Bad request or voice (unknown speaker, empty text, ...); the message says what to do."""


@dataclass(frozen=True)
class SynthesisRequest:
    """What to say and how. Validated on construction: a bad value raises :class:`SynthesisError` naming it."""

    text: str
    speaker: str | None = None  # a name from the voice's speakers (None: its first speaker)
    language: str = "ZH"  # ZH / JP / EN, "mix" ([speaker]<zh>..<en>..) or "auto" (langid + script rules)
    sdp_ratio: float = 0.5  # share of the stochastic duration predictor (0: deterministic durations)
    noise_scale: float = 0.6  # prior noise (voice texture)
    noise_scale_w: float = 0.9  # duration noise
    length_scale: float = 1.0  # > 1 slower, < 1 faster
    style_text: str | None = None  # text whose BERT features colour the delivery (single-language only)
    style_weight: float = 0.7  # how much of the style text's features are mixed in
    _: KW_ONLY
    split_paragraphs: bool = False  # cut at line breaks, paragraph_pause_s between paragraphs
    split_sentences: bool = False  # cut after sentence-final punctuation, sentence_pause_s between sentences
    paragraph_pause_s: float = 1.0
    sentence_pause_s: float = 0.2
    seed: int | None = None  # the request's own random generator (None: a fresh random seed)
    peak_normalize: bool = False  # upstream web UI's output level: every slice peak-normalised to 16 bit

    #: valid ranges of the numeric fields (inclusive)
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "sdp_ratio": (0.0, 1.0), "noise_scale": (0.0, 10.0), "noise_scale_w": (0.0, 10.0),
        "length_scale": (0.1, 10.0), "style_weight": (0.0, 1.0), "paragraph_pause_s": (0.0, 60.0),
        "sentence_pause_s": (0.0, 60.0),
    }
    _BOOLS: ClassVar[tuple[str, ...]] = ("split_paragraphs", "split_sentences", "peak_normalize")

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once, here
        set_(self, "text", _clean_text(self.text, "text"))
        if not self.text.strip():
            raise SynthesisError("the text is empty; type something to say")
        if self.style_text is not None:
            style = _clean_text(self.style_text, "style_text")
            set_(self, "style_text", style if style.strip() else None)
        if self.speaker is not None and not isinstance(self.speaker, str):
            raise SynthesisError(f"speaker must be a name (a string), got {type(self.speaker).__name__}")
        set_(self, "speaker", self.speaker or None)
        set_(self, "language", _check_language(self.language))
        for name, (lo, hi) in self.RANGES.items():
            set_(self, name, _check_number(name, getattr(self, name), lo, hi))
        for name in self._BOOLS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise SynthesisError(f"{name} must be true or false, got {value!r}")
        if self.seed is not None:
            if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
                raise SynthesisError(f"seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")

    @property
    def is_single_language(self) -> bool:
        """ZH / JP / EN (style text applies only then, as upstream)."""
        return self.language not in ("mix", "auto")

    def replace(self, **changes: Any) -> "SynthesisRequest":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, request: "SynthesisRequest | str", *args: Any, **kwargs: Any) -> "SynthesisRequest":
        """``request`` itself, or one built from the old call style ``(text, speaker, language, ...)``."""
        if isinstance(request, SynthesisRequest):
            if args or kwargs:
                return request.replace(**dict(zip(_POSITIONAL, args)), **kwargs)
            return request
        try:
            return cls(request, *args, **kwargs)
        except TypeError as err:  # an unknown keyword or too many arguments
            raise SynthesisError(f"bad synthesis arguments: {err}") from None

    @classmethod
    def for_http_api(cls, text: str, **fields: Any) -> "SynthesisRequest":
        """A request with upstream's HTTP API defaults (:data:`HTTP_API_DEFAULTS`) where ``fields`` give none."""
        return cls(text, **{**HTTP_API_DEFAULTS, **fields})

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], defaults: Mapping[str, Any] | None = None,
                     names: Mapping[str, str] | None = None) -> "SynthesisRequest":
        """A request from JSON-like ``data`` (field names, or their aliases in ``names``); keys that are not
        fields are ignored here (the caller reads its own). ``defaults`` fill what ``data`` lacks."""
        fields = dict(defaults or {})
        known = set(cls.field_names())
        for key, value in data.items():
            name = (names or {}).get(key, key)
            if name in known:
                fields[name] = value
        if "text" not in fields:
            raise SynthesisError("no text: send 'text'")
        return cls(**fields)


_POSITIONAL = ("speaker", "language", "sdp_ratio", "noise_scale", "noise_scale_w", "length_scale", "style_text",
               "style_weight")

#: upstream web UI defaults (the dataclass defaults), by field name
WEBUI_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(SynthesisRequest) if f.default is not dataclasses.MISSING
}
#: upstream HTTP API (server_fastapi.py) defaults, by field name
HTTP_API_DEFAULTS: dict[str, Any] = {
    "sdp_ratio": 0.2, "noise_scale": 0.2, "noise_scale_w": 0.9, "length_scale": 1.0, "style_weight": 0.7,
}
#: the HTTP API's parameter names -> field names
HTTP_API_NAMES: dict[str, str] = {
    "noise": "noise_scale", "noisew": "noise_scale_w", "length": "length_scale", "auto_split": "split_sentences",
}


def _clean_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise SynthesisError(f"{name} must be a string, got {type(value).__name__}")
    return _CONTROL.sub("", value)


def _check_language(value: Any) -> str:
    if not isinstance(value, str):
        raise SynthesisError(f"language must be one of {', '.join(LANGUAGE_CHOICES)}, got {value!r}")
    if value.strip().lower() in ("mix", "auto"):
        return value.strip().lower()
    try:
        return normalize_language(value)
    except ValueError:
        raise SynthesisError(f"unknown language {value!r}: use one of {', '.join(LANGUAGE_CHOICES)}") from None


def _check_number(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:  # numbers as strings (form fields, gradio) are fine
            value = float(value) if isinstance(value, str) else None
        except ValueError:
            value = None
        if value is None:
            raise SynthesisError(f"{name} must be a number from {lo:g} to {hi:g}")
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise SynthesisError(f"{name}={value:g} is out of range [{lo:g}, {hi:g}]")
    return value
