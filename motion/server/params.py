"""The synthesis parameters as the HTTP API names them (upstream ``server_fastapi.py``), read once for every route
and WebSocket, and turned into a :class:`~bert_vits2.request.SynthesisRequest` for a loaded model.

Upstream's names map to the request's fields through :data:`bert_vits2.request.HTTP_API_NAMES` (``noise`` ->
``noise_scale``, ``noisew`` -> ``noise_scale_w``, ``length`` -> ``length_scale``, ``auto_split`` -> ``split_sentences``),
and the defaults are upstream's HTTP API defaults (:data:`bert_vits2.request.HTTP_API_DEFAULTS`). Parameters upstream
accepts for other model versions (``style``, ``reference_audio``, ``auto_translate``) are accepted and ignored, as
upstream's v2.3 path ignores them; ``emotion`` puts one of the face's emotions on the face when it names one
(``joy``, ``sadness:0.5``, ... see :mod:`motion.face.emotion`) and is ignored otherwise (upstream's v2.1/2.2 emotion);
emotion tags in the text (``[joy]``, ``[sadness:0.5]``, ``[neutral]``) are removed before synthesis and move the face; so is ``style_weight`` when there is no ``style_text`` (clients made for
Style-Bert-VITS2, such as SillyTavern's SBVits2, send a style-vector weight of 0..20 under that name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from fastapi import Query

from bert_vits2.request import HTTP_API_DEFAULTS, HTTP_API_NAMES, SynthesisError, SynthesisRequest
from motion.server.errors import ApiError
from motion.server.registry import Entry, ModelRegistry

__all__ = ["ApiSynthesis", "api_query", "ws_options"]

_D = HTTP_API_DEFAULTS


@dataclass(frozen=True)
class ApiSynthesis:
    """One synthesis as a client asked for it: which model and speaker, the text, and the request's fields by their
    :class:`SynthesisRequest` names (only those the client gave; the rest take the HTTP API defaults)."""

    text: Any = None
    model_id: Any = 0
    speaker_name: Any = None
    speaker_id: Any = None
    language: Any = None  # None: the model's language
    fields: dict[str, Any] = field(default_factory=dict)
    emotion: Any = None  # the face's emotion before the text's first tag (one of ours; anything else is ignored)

    def with_text(self, text: Any) -> "ApiSynthesis":
        return ApiSynthesis(text, self.model_id, self.speaker_name, self.speaker_id, self.language, self.fields,
                            self.emotion)

    def emotion_timeline(self) -> Any:
        """The face's emotion over time (:class:`motion.face.emotion.EmotionTimeline`) from the text's tags and
        ``emotion``, or None when there is neither. An ``emotion`` that names none of ours (upstream's emotion of
        v2.1/2.2 models) is ignored, as before; a bad tag is a 400."""
        from motion.face.emotion import EmotionError, EmotionTimeline, parse_emotion, parse_emotion_tags

        initial = None
        if isinstance(self.emotion, (str, dict)) and self.emotion:
            try:
                initial = parse_emotion(self.emotion) or None
            except EmotionError:
                initial = None
        try:
            marks = parse_emotion_tags(self.text if isinstance(self.text, str) else "")
        except EmotionError as err:
            raise ApiError(400, str(err)) from None
        return EmotionTimeline(marks, initial) if (marks.has_tags or initial) else None

    @classmethod
    def from_json(cls, msg: Mapping[str, Any]) -> "ApiSynthesis":
        """From a WebSocket request message (upstream names or field names; other keys are the caller's)."""
        names = {**HTTP_API_NAMES, **{k: k for k in ("sdp_ratio", "style_text", "style_weight", "seed")}}
        fields = {names[k]: v for k, v in msg.items() if k in names}
        return cls(msg.get("text"), msg.get("model_id", 0), msg.get("speaker_name"), msg.get("speaker_id"),
                   msg.get("language"), fields, msg.get("emotion"))

    def resolve(self, registry: ModelRegistry, max_chars: int) -> tuple[Entry, SynthesisRequest]:
        """The model entry and the validated request (400/404/413 :class:`ApiError` s naming the parameter)."""
        if self.text is None or (isinstance(self.text, str) and not self.text.strip()):
            raise ApiError(400, "text is empty: pass text=... (query, form field for POST, or the WebSocket message)")
        if not isinstance(self.text, str):
            raise ApiError(400, f"text must be a string, got {type(self.text).__name__}")
        text = self.emotion_timeline()
        text = text.marks.text if text is not None else self.text  # emotion tags are never spoken
        if not text.strip():
            raise ApiError(400, "text has only emotion tags: give something to say after [joy] etc.")
        style = self.fields.get("style_text")
        total = len(self.text) + (len(style) if isinstance(style, str) else 0)
        fields = self.fields
        if not (isinstance(style, str) and style.strip()):  # the weight means nothing without a style text
            fields = {k: v for k, v in fields.items() if k != "style_weight"}
        if total > max_chars:
            raise ApiError(413, f"the text has {total} characters; this server takes at most {max_chars} per "
                                "request: split it into several requests")
        entry = registry.get(_whole_number("model_id", self.model_id))
        speaker_id = None if self.speaker_id is None else _whole_number("speaker_id", self.speaker_id)
        if self.speaker_name is not None and not isinstance(self.speaker_name, str):
            raise ApiError(400, "speaker_name must be a string")
        speaker = entry.speaker_name(self.speaker_name, speaker_id)
        if self.language is not None and not isinstance(self.language, str):
            raise ApiError(400, "language must be a string: ZH, JP, EN, mix or auto")
        try:
            request = SynthesisRequest.for_http_api(text, speaker=speaker,
                                                    language=self.language or entry.language, **fields)
        except SynthesisError as err:
            raise ApiError(400, _api_names(str(err))) from None
        return entry, request


def _whole_number(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{name} must be a whole number, got {value!r}")
    return value


def _api_names(message: str) -> str:
    """A request error in the HTTP API's own parameter names (``noise`` rather than ``noise_scale``)."""
    for api, name in HTTP_API_NAMES.items():
        message = message.replace(name, api)
    return message


def api_query(
    model_id: int = Query(0, description="model id (see /models/info)"),
    speaker_name: str | None = Query(None, description="speaker name (or speaker_id; default: the first speaker)"),
    speaker_id: int | None = Query(None, description="speaker id (or speaker_name)"),
    sdp_ratio: float = Query(_D["sdp_ratio"], description="SDP/DP mix 0..1"),
    noise: float = Query(_D["noise_scale"], description="noise scale 0..10"),
    noisew: float = Query(_D["noise_scale_w"], description="duration noise scale 0..10"),
    length: float = Query(_D["length_scale"], description="length scale (speed) 0.1..10"),
    language: str | None = Query(None, description="ZH / JP / EN / mix / auto (default: the model's)"),
    auto_split: bool = Query(False, description="split at sentence ends (0.2 s pauses)"),
    style_text: str | None = Query(None, description="style text (single-language only)"),
    style_weight: float = Query(_D["style_weight"], description="style text weight 0..1 (ignored without style_text)"),
    seed: int | None = Query(None, description="random seed 0..2^63-1 (a reproducible result)"),
    style: str | None = Query(None, description="ignored: Style-Bert-VITS2's style name (a v2.3 voice has one style)"),
    emotion: str | None = Query(None, description="the face's emotion: joy, sadness, anger, surprise, fear, disgust "
                                "(name:weight, e.g. joy:0.7; tags in the text change it: [joy], [sadness:0.5], "
                                "[neutral]); other values (upstream's v2.1/2.2 emotion) are ignored"),
    auto_translate: str | None = Query(None, description="ignored: upstream translates through an online service"),
) -> ApiSynthesis:
    """The synthesis query parameters of every HTTP route (a FastAPI dependency); ``text`` is read by the route.
    ``style`` and ``auto_translate`` are declared only so that the API docs name them as ignored."""
    del style, auto_translate
    fields = {"sdp_ratio": sdp_ratio, "noise_scale": noise, "noise_scale_w": noisew, "length_scale": length,
              "split_sentences": auto_split, "style_text": style_text, "style_weight": style_weight, "seed": seed}
    return ApiSynthesis(None, model_id, speaker_name, speaker_id, language, fields, emotion)


@dataclass(frozen=True)
class WsOptions:
    """The ``/ws/voice`` request's own options (next to the synthesis parameters)."""

    audio_format: str = "s16"
    face: bool = True
    push: dict[str, str] = field(default_factory=dict)


def ws_options(msg: Mapping[str, Any]) -> WsOptions:
    fmt = msg.get("audio_format", "s16")
    if fmt not in ("s16", "f32"):
        raise ApiError(400, f"audio_format={fmt!r}: use s16 or f32")
    face = msg.get("face", True)
    if not isinstance(face, bool):
        raise ApiError(400, f"face must be true or false, got {face!r}")
    push = msg.get("push") or {}
    if not isinstance(push, dict) or not all(k in ("livelink", "vmc", "vts") and isinstance(v, str)
                                             for k, v in push.items()):
        raise ApiError(400, 'push must be an object like {"livelink": "127.0.0.1:11111", "vmc": "127.0.0.1:39539", '
                            '"vts": "127.0.0.1:8001"}')
    if push and not face:
        raise ApiError(400, "push needs the face: drop face=false")
    return WsOptions(fmt, face, dict(push))
