"""Emotion on top of any face: FACS-based targets on the 61 Live Link values, mixed by weight, over time.

Each emotion is a small set of FACS action units written as ARKit blendshape offsets (Ekman & Friesen's
prototypes): joy = cheek raiser (AU6) + lip corner puller (AU12); sadness = inner brow raiser (AU1) + brow lowerer (AU4)
+ lip corner depressor (AU15); anger = brow lowerer (AU4) + lid tightener (AU7) + lip presser (AU24); surprise = inner
and outer brow raisers (AU1+2) + upper lid raiser (AU5) + jaw drop (AU26); fear = AU1+2+4+5 + lip stretcher (AU20) + a
small jaw drop; disgust = nose wrinkler (AU9) + upper lip raiser (AU10).

:func:`apply_emotion` adds them to a face without breaking lip-sync: where the lips touch (``JawOpen - MouthClose``
at most :data:`motion.face.evaluation.CLOSED`) a jaw drop lowers the jaw with the lips still touching (MouthClose
follows), and the shapes that part the lips (upper lip raise, lower lip down, lip stretch) fade out where the face
seals its lips (/p b m/). JawOpen keeps following the speech (an offset, never a replacement).

Emotion over time comes from inline tags in the text for TTS (``[joy]``, ``[sadness:0.5]``, ``[joy:0.6,surprise:0.3]``,
``[neutral]``): :func:`parse_emotion_tags` removes them (they are never spoken) and :class:`EmotionTimeline` turns them
into per-frame weights with smooth ramps (:data:`RAMP_S`), placed by the pieces (sentences) of a synthesis result or a
stream. Only the known emotion names count as tags, so the ``mix`` syntax's ``[speaker]`` tags are left alone.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from motion.arkit import INDEX, NUM_BLENDSHAPES, NUM_VALUES

log = logging.getLogger(__name__)

__all__ = ["ALIASES", "EMOTIONS", "EmotionError", "EmotionMarks", "EmotionStream", "EmotionTimeline", "RAMP_S", "TARGETS",
           "apply_emotion", "emotion_vector", "parse_emotion", "parse_emotion_tags", "streamed_tags", "strip_emotion_tags",
           "with_emotion"]

EmotionSpec = None | str | Mapping[str, float]


class EmotionError(ValueError):
    """An emotion or an emotion tag cannot be read; the message says what is accepted."""


def _lr(**shapes: float) -> dict[str, float]:
    """``Smile=0.7`` -> ``MouthSmileLeft/Right``: names ending in ``_`` get both sides."""
    out: dict[str, float] = {}
    for name, v in shapes.items():
        if name.endswith("_"):
            out[name[:-1] + "Left"] = v
            out[name[:-1] + "Right"] = v
        else:
            out[name] = v
    return out


#: the offsets of each emotion at weight 1 (FACS action units as ARKit shapes; see the module docstring)
TARGETS: dict[str, dict[str, float]] = {
    "joy": _lr(CheekSquint_=0.65, MouthSmile_=0.75, EyeSquint_=0.25, MouthDimple_=0.15),
    "sadness": _lr(BrowInnerUp=0.75, BrowDown_=0.3, MouthFrown_=0.65, MouthShrugLower=0.25, EyeSquint_=0.1),
    "anger": _lr(BrowDown_=0.8, EyeSquint_=0.55, MouthPress_=0.6, NoseSneer_=0.2, MouthFrown_=0.2),
    "surprise": _lr(BrowInnerUp=0.7, BrowOuterUp_=0.8, EyeWide_=0.7, JawOpen=0.15),
    "fear": _lr(BrowInnerUp=0.8, BrowOuterUp_=0.4, BrowDown_=0.3, EyeWide_=0.6, MouthStretch_=0.5, JawOpen=0.06),
    "disgust": _lr(NoseSneer_=0.75, MouthUpperUp_=0.55, BrowDown_=0.3, CheekSquint_=0.3, MouthShrugLower=0.2,
                   MouthFrown_=0.15),
}
EMOTIONS: tuple[str, ...] = tuple(TARGETS)
#: other names users write for the same emotions (LLM characters, upstream's emotion parameter, Audio2Face's names)
ALIASES: dict[str, str] = {
    "happy": "joy", "happiness": "joy", "sad": "sadness", "grief": "sadness", "angry": "anger", "surprised": "surprise",
    "amazement": "surprise", "fearful": "fear", "afraid": "fear", "disgusted": "disgust",
}
#: a tag's change ramps in over this long (smoothstep: no pops)
RAMP_S = 0.3
_MIN_RAMP_S = 0.2

#: shapes that part the lips: faded out where the lips seal (/p b m/)
_LIP_OPENING = [INDEX[n] for n in ("MouthUpperUpLeft", "MouthUpperUpRight", "MouthLowerDownLeft", "MouthLowerDownRight",
                                  "MouthStretchLeft", "MouthStretchRight")]
_JAW, _CLOSE = INDEX["JawOpen"], INDEX["MouthClose"]
_CLOSED = 0.02  # motion.face.evaluation.CLOSED (the lips touch when JawOpen - MouthClose is at most this)


def _target_matrix() -> np.ndarray:
    m = np.zeros((len(EMOTIONS), NUM_VALUES), dtype=np.float32)
    for k, name in enumerate(EMOTIONS):
        for shape, v in TARGETS[name].items():
            m[k, INDEX[shape]] = v
    return m


def _canonical(name: str) -> str | None:
    key = str(name).strip().lower()
    if key in TARGETS:
        return key
    return ALIASES.get(key)


def _names_help() -> str:
    return ", ".join(EMOTIONS) + " (or neutral)"


def _weight(value: Any, what: str) -> float:
    try:
        w = float(value)
    except (TypeError, ValueError):
        raise EmotionError(f"{what}: the weight must be a number from 0 to 1, got {value!r}") from None
    if not (math.isfinite(w) and 0.0 <= w <= 1.0):
        raise EmotionError(f"{what}: the weight must be from 0 to 1, got {value!r}")
    return w


def parse_emotion(spec: EmotionSpec) -> dict[str, float]:
    """``None`` / ``"joy"`` / ``"joy:0.7"`` / ``"joy:0.5,surprise:0.3"`` / ``{"joy": 0.5}`` -> ``{name: weight}``
    over :data:`EMOTIONS` (aliases resolved; ``neutral`` or ``None`` -> ``{}``). Raises :class:`EmotionError`."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        items: list[tuple[str, Any]] = []
        for part in re.split(r"[,+]", spec):
            if not part.strip():
                continue
            name, _, w = part.partition(":")
            items.append((name, w.strip() if w.strip() else 1.0))
    elif isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        raise EmotionError(f"emotion must be a name, 'name:weight' or {{name: weight}}, got {type(spec).__name__}")
    out: dict[str, float] = {}
    for name, w in items:
        if str(name).strip().lower() == "neutral":
            continue
        key = _canonical(name)
        if key is None:
            raise EmotionError(f"unknown emotion {str(name).strip()!r}; use one of: {_names_help()}")
        out[key] = out.get(key, 0.0) + _weight(w, f"emotion {key}")
    return {k: v for k, v in out.items() if v > 0}


def emotion_vector(spec: EmotionSpec, intensity: float = 1.0) -> np.ndarray:
    """The weights ``[len(EMOTIONS)]`` of ``spec`` times ``intensity`` (0..2); a mix whose weights add up to more
    than 1 is scaled to add up to 1, so mixing never exaggerates."""
    inten = _intensity(intensity)
    weights = parse_emotion(spec)
    v = np.array([weights.get(n, 0.0) for n in EMOTIONS], dtype=np.float32)
    total = float(v.sum())
    if total > 1.0:
        v /= total
    return v * inten


def _intensity(intensity: float) -> float:
    try:
        x = float(intensity)
    except (TypeError, ValueError):
        raise EmotionError(f"the emotion intensity must be a number from 0 to 2, got {intensity!r}") from None
    if not (math.isfinite(x) and 0.0 <= x <= 2.0):
        raise EmotionError(f"the emotion intensity must be from 0 to 2, got {intensity!r}")
    return x


def apply_emotion(frames: np.ndarray, weights: np.ndarray | EmotionSpec, intensity: float = 1.0) -> np.ndarray:
    """``frames`` ``[T, 61]`` with the emotion added (a new array). ``weights``: a spec (see :func:`parse_emotion`),
    a vector ``[len(EMOTIONS)]`` or per-frame weights ``[T, len(EMOTIONS)]`` (:meth:`EmotionTimeline.weights`).

    Lip-sync is kept: where the lips touch, a jaw drop carries MouthClose with it (the lips stay together); the
    shapes that part the lips fade out where the face seals them; elsewhere the offsets add and clip to [0, 1]."""
    f = np.asarray(frames, dtype=np.float32)
    if f.ndim != 2 or f.shape[1] != NUM_VALUES:
        raise EmotionError(f"frames must be [T, {NUM_VALUES}], got {list(f.shape)}")
    if isinstance(weights, np.ndarray) and weights.dtype.kind == "f":
        w = np.asarray(weights, dtype=np.float32) * _intensity(intensity)
    else:
        w = emotion_vector(weights, intensity)
    if w.ndim == 1:
        w = np.broadcast_to(w, (len(f), len(EMOTIONS)))
    if w.shape != (len(f), len(EMOTIONS)):
        raise EmotionError(f"emotion weights must be [{len(EMOTIONS)}] or [{len(f)}, {len(EMOTIONS)}], got "
                           f"{list(w.shape)}")
    out = f.copy()
    if not len(f) or not np.any(w):
        return out
    delta = w @ _target_matrix()  # [T, 61]
    jaw, close = f[:, _JAW], f[:, _CLOSE]
    gap = jaw - close
    opened = np.clip((gap - _CLOSED) / 0.06, 0.0, 1.0)  # 0 where the lips touch, 1 where they are clearly apart
    sealing = np.clip(close / 0.08, 0.0, 1.0) * np.clip(1.0 - (gap - _CLOSED) / 0.04, 0.0, 1.0)
    d_jaw = delta[:, _JAW].copy()
    delta[:, _LIP_OPENING] *= (1.0 - sealing)[:, None]
    delta[:, _JAW] = 0.0
    out += delta
    new_jaw = np.clip(jaw + d_jaw, 0.0, 1.0)
    out[:, _CLOSE] = close + (new_jaw - jaw) * (1.0 - opened)  # the lips stay as far apart as they were where touching
    out[:, _JAW] = new_jaw
    out[:, :NUM_BLENDSHAPES] = np.clip(out[:, :NUM_BLENDSHAPES], 0.0, 1.0)
    return out


# --- tags in the text -----------------------------------------------------------------------------------------------

_TAG = re.compile(r"\[\s*([A-Za-z]+\s*(?::\s*[^\],+]*)?(?:\s*[,+]\s*[A-Za-z]+\s*(?::\s*[^\],+]*)?)*)\s*\]")


@dataclass
class EmotionMarks:
    """A text with its emotion tags removed: ``text`` (what is spoken) and ``marks``: ``(position in text, weights)``
    where each tag stood (a tag sets the whole emotion: ``[sadness:0.5]`` after ``[joy]`` leaves no joy)."""

    text: str
    marks: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    @property
    def has_tags(self) -> bool:
        return bool(self.marks)


def _tag_weights(body: str) -> dict[str, float] | None:
    """The weights of a tag's body, or None when it names something else (a ``[speaker]`` of the mix syntax)."""
    if _known_names(body) is None:
        return None
    try:
        return parse_emotion(body)
    except EmotionError as e:
        raise EmotionError(f"emotion tag [{body}]: {e}") from None


def parse_emotion_tags(text: str) -> EmotionMarks:
    """Remove ``[joy]``, ``[sadness:0.5]``, ``[joy:0.5,surprise:0.3]``, ``[neutral]`` from ``text`` (a space around a
    removed tag is kept once) and say where each stood. Brackets naming anything else stay in the text."""
    out: list[str] = []
    marks: list[tuple[int, dict[str, float]]] = []
    pos = 0
    skip_space = False
    for m in _TAG.finditer(text):
        weights = _tag_weights(m.group(1))
        if weights is None:
            continue
        before = text[pos:m.start()]
        if skip_space:
            before = before.lstrip(" \t")
        out.append(before)
        so_far = "".join(out)
        marks.append((len(so_far), weights))
        skip_space = not so_far or so_far[-1] in " \t\n"
        pos = m.end()
    rest = text[pos:]
    if skip_space:
        rest = rest.lstrip(" \t")
    out.append(rest)
    clean = "".join(out)
    # a mark past trailing spaces stays at the end of the text
    marks = [(min(p, len(clean)), w) for p, w in marks]
    return EmotionMarks(clean, marks)


def strip_emotion_tags(text: str) -> str:
    """``text`` without its emotion tags (what the voice says)."""
    return parse_emotion_tags(text).text


def streamed_tags(pieces: Iterable[str], marks: EmotionMarks, hold_chars: int = 64) -> Iterator[str]:
    """Text arriving in pieces (a language model's tokens) without its emotion tags, which are added to ``marks``
    (its ``text`` grows by what is yielded). A tag split between pieces (``[jo`` + ``y]``) is held until it closes (an
    unclosed ``[`` is held for at most ``hold_chars``). A tag with a bad weight is dropped with a warning: a stream
    has no one-line answer to give mid-way."""
    buf = ""

    def keep(tag: re.Match) -> str:
        try:
            _tag_weights(tag.group(1))
        except EmotionError as e:
            log.warning("%s: the tag is dropped", e)
            return ""
        return tag.group(0)

    def emit(part: str) -> str:
        m = parse_emotion_tags(_TAG.sub(keep, part))
        offset = len(marks.text)
        marks.text += m.text  # the text first: a reader placing pieces sees the marks' positions inside it
        marks.marks.extend((offset + p, w) for p, w in m.marks)
        return m.text

    for piece in pieces:
        buf += piece
        i = buf.rfind("[")
        cut = i if (i >= 0 and "]" not in buf[i:] and len(buf) - i <= hold_chars) else len(buf)
        if cut:
            text = emit(buf[:cut])
            buf = buf[cut:]
            if text:
                yield text
    if buf:
        text = emit(buf)
        if text:
            yield text


def _known_names(body: str) -> list[str] | None:
    names = [p.partition(":")[0].strip().lower() for p in re.split(r"[,+]", body)]
    return names if all(n == "neutral" or _canonical(n) is not None for n in names) else None


# --- emotion over time ----------------------------------------------------------------------------------------------


class EmotionTimeline:
    """Per-time emotion weights from tagged text, placed by the pieces (sentences) as they are synthesised.

    ``initial``: the emotion before the first tag (the UI's control, the request's ``emotion``). Pieces are added in
    order with :meth:`add_piece` (text as spoken, start and end in seconds; a whole result: :meth:`add_result`); a
    tag takes effect where it stands in its piece (by characters) and ramps over ``ramp_s`` from the weights of that
    moment (a tag before the first word sets the starting emotion). The weights at a time depend only on the tags before it, so a stream (piece by piece) and the whole
    result get the same face."""

    def __init__(self, marks: EmotionMarks | str, initial: EmotionSpec = None, intensity: float = 1.0,
                 ramp_s: float = RAMP_S) -> None:
        self.marks = parse_emotion_tags(marks) if isinstance(marks, str) else marks
        if not (math.isfinite(float(ramp_s)) and float(ramp_s) >= _MIN_RAMP_S):
            raise EmotionError(f"the emotion ramp must be at least {_MIN_RAMP_S} s, got {ramp_s!r}")
        self.ramp_s = float(ramp_s)
        self.initial = emotion_vector(initial, 1.0)
        self.intensity = _intensity(intensity)
        self.events: list[tuple[float, np.ndarray]] = []  # (time_s, target weights)
        self._cursor = 0  # characters of the text placed so far
        self._next = 0  # the first mark not placed yet
        self._pieces: set[Any] = set()

    def add_piece(self, text: str, start_s: float, end_s: float, key: Any = None) -> None:
        """Place the tags of the next piece (``key``: a piece seen before is not placed twice)."""
        if key is not None:
            if key in self._pieces:
                return
            self._pieces.add(key)
        src = self.marks.text
        text = (text or "").strip()
        j = src.find(text, self._cursor) if text else -1
        if j < 0:  # the piece's text was changed on the way (normalised): place it right after the last one
            j = self._cursor
        end = min(len(src), j + len(text))
        span = max(1, end - j)
        while self._next < len(self.marks.marks) and self.marks.marks[self._next][0] < end:
            p, weights = self.marks.marks[self._next]
            frac = min(1.0, max(0.0, (p - j) / span))
            self.events.append((float(start_s) + frac * (float(end_s) - float(start_s)),
                                emotion_vector(weights, 1.0)))
            self._next += 1
        self._cursor = max(self._cursor, end)

    def add_result(self, result: Any) -> "EmotionTimeline":
        """Place the tags of every piece of a synthesis result (``result.pieces``: text, start_s, end_s)."""
        for i, p in enumerate(getattr(result, "pieces", None) or []):
            self.add_piece(str(p.get("text", "")), float(p["start_s"]), float(p["end_s"]), key=i)
        return self

    def weights(self, times_s: np.ndarray) -> np.ndarray:
        """``[T, len(EMOTIONS)]`` weights at ``times_s`` (times the intensity)."""
        t = np.asarray(times_s, dtype=np.float64).reshape(-1)
        events = sorted(self.events, key=lambda e: e[0])
        value = self.initial.astype(np.float64)
        while events and events[0][0] <= 0.0:  # a tag before the first word: the face starts with it (no ramp)
            value = events.pop(0)[1].astype(np.float64)
        out = np.broadcast_to(value, (len(t), len(EMOTIONS))).astype(np.float32)
        for i, (t0, target) in enumerate(events):
            t1 = events[i + 1][0] if i + 1 < len(events) else math.inf
            start = value
            sel = (t >= t0) & (t < t1)
            if sel.any():
                x = np.clip((t[sel] - t0) / self.ramp_s, 0.0, 1.0)
                s = x * x * (3.0 - 2.0 * x)
                out[sel] = (start[None, :] + (target - start)[None, :] * s[:, None]).astype(np.float32)
            if math.isfinite(t1):
                x = min(1.0, max(0.0, (t1 - t0) / self.ramp_s))
                value = start + (target - start) * (x * x * (3.0 - 2.0 * x))
        return out * self.intensity

    def frame_weights(self, start_frame: int, count: int, fps: float) -> np.ndarray:
        """The weights of frames ``start_frame ..`` of a grid with centres at ``(k + 0.5) / fps``."""
        return self.weights((np.arange(start_frame, start_frame + count) + 0.5) / float(fps))

    def apply(self, frames: np.ndarray, fps: float, start_frame: int = 0) -> np.ndarray:
        """``frames`` (grid frames ``start_frame ..``) with the timeline's emotion."""
        f = np.asarray(frames, dtype=np.float32)
        return apply_emotion(f, self.frame_weights(start_frame, len(f), fps))


class EmotionStream:
    """The timeline's emotion on a stream's faced chunks (:func:`motion.face.streaming.with_faces`), one at a time.

    A piece's tags are placed when its plan or result comes (its text and length); chunks of a piece not placed yet
    wait for it (a face made from audio already holds them until then), so every frame gets the weights of its time
    and the joins between chunks are continuous. :meth:`feed` returns the chunks ready to go, in order."""

    def __init__(self, timeline: EmotionTimeline) -> None:
        self.timeline = timeline
        self._held: list[Any] = []
        self._known: set[int] = set()

    def _placed(self, fc: Any) -> Any:
        if len(fc.face):
            fc.face = self.timeline.apply(fc.face, fc.face_fps, fc.face_start)
        return fc

    def feed(self, fc: Any) -> list[Any]:
        ch = fc.chunk
        info = ch.piece_plan if ch.piece_plan is not None else ch.piece_result
        if info is not None and ch.piece not in self._known:
            meta = (info.pieces or [{}])[0]
            start = ch.piece_start / float(ch.sample_rate)
            end = start + float(meta.get("end_s", info.duration_s))
            self.timeline.add_piece(str(meta.get("text", ch.text)), start, end, key=ch.piece)
            self._known.add(ch.piece)
        self._held.append(fc)
        if ch.last or ch.piece in self._known:
            return self.flush()
        return []

    def flush(self) -> list[Any]:
        """Every held chunk (the end of the stream)."""
        out = [self._placed(h) for h in self._held]
        self._held.clear()
        return out


def with_emotion(faced: Iterable[Any], timeline: EmotionTimeline) -> Iterator[Any]:
    """A stream's faced chunks with the timeline's emotion on their frames (see :class:`EmotionStream`)."""
    stream = EmotionStream(timeline)
    try:
        for fc in faced:
            yield from stream.feed(fc)
        yield from stream.flush()
    finally:
        close = getattr(faced, "close", None)
        if close is not None:
            close()


def describe_weights(weights: Mapping[str, float]) -> str:
    """``{"joy": 0.7}`` -> ``"joy 0.70"`` (``neutral`` when empty), for logs and the UI."""
    return ", ".join(f"{k} {v:.2f}" for k, v in weights.items()) or "neutral"

