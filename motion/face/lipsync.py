"""Rule-based lip-sync: phones with timings -> visemes -> ARKit curves, with coarticulation (no recorded data needed).

Any source that knows *which phone is spoken when* can drive a face: Bert-VITS2 (its phone symbols and the
durations it predicts), eSpeak NG (its phoneme events, IPA), or cloud TTS viseme events.

1. Each phone maps to one or more visemes (diphthongs and Mandarin finals split their span, e.g. ``ai`` -> aa, I).
   Tables: Mandarin pinyin initials/finals and Japanese / English (ARPAbet) phones as Bert-VITS2 spells them, and
   IPA as eSpeak NG reports it (tokenised greedily, stress/length/tone marks ignored).
2. Coarticulation (a dominance model in the spirit of Cohen & Massaro): every viseme segment pulls the face towards
   its pose with a weight that is flat over its own span and decays exponentially outside it (anticipation lasts
   longer than carry-over, so lips lead the sound). Lip closures (p/b/m) and labiodentals (f/v) dominate strongly so
   they close even when short; velars and /h/ are weak and take their neighbours' shape. A small constant rest weight
   brings the face back to neutral in long gaps.
3. Lip seal: during /p b m/ MouthClose follows JawOpen (lips touching) and during /f v/ nearly so, so a closure is
   never blended away by the neighbouring vowels.
4. The result is sampled at frame centres ``(i + 0.5) / fps`` and returned as ``[T, 61]`` in Live Link order.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from motion.arkit import INDEX, NUM_VALUES

# --- viseme poses ------------------------------------------------------------------------------------------------


def _pose(**shapes: float) -> np.ndarray:
    v = np.zeros(NUM_VALUES, dtype=np.float32)
    for name, value in shapes.items():
        for side in (("Left", "Right") if name.endswith("_") else ("",)):
            v[INDEX[name.rstrip("_") + side]] = value
    return v


# Poses in Live Link order; names ending in "_" set both the Left and Right shape.
VISEME_POSES: dict[str, np.ndarray] = {
    "sil": _pose(),
    "PP": _pose(JawOpen=0.06, MouthClose=0.22, MouthPress_=0.35, MouthRollLower=0.15, MouthRollUpper=0.08),
    "FF": _pose(JawOpen=0.10, MouthClose=0.05, MouthRollLower=0.45, MouthUpperUp_=0.20, MouthPress_=0.10),
    "TH": _pose(JawOpen=0.16, TongueOut=0.25, MouthStretch_=0.10, MouthLowerDown_=0.10),
    "DD": _pose(JawOpen=0.18, MouthStretch_=0.12, MouthLowerDown_=0.10, MouthUpperUp_=0.05),
    "kk": _pose(JawOpen=0.22, MouthStretch_=0.08, MouthLowerDown_=0.05),
    "CH": _pose(JawOpen=0.12, MouthFunnel=0.45, MouthPucker=0.20, MouthUpperUp_=0.20, MouthShrugUpper=0.15),
    "SS": _pose(JawOpen=0.07, MouthStretch_=0.30, MouthSmile_=0.15, MouthClose=0.04, MouthUpperUp_=0.08),
    "RR": _pose(JawOpen=0.15, MouthFunnel=0.30, MouthPucker=0.30, MouthShrugUpper=0.10),
    "aa": _pose(JawOpen=0.60, MouthLowerDown_=0.30, MouthUpperUp_=0.10, MouthStretch_=0.05),
    "E": _pose(JawOpen=0.35, MouthStretch_=0.25, MouthSmile_=0.15, MouthLowerDown_=0.20),
    "I": _pose(JawOpen=0.17, MouthSmile_=0.35, MouthStretch_=0.30, MouthUpperUp_=0.05),
    "O": _pose(JawOpen=0.40, MouthFunnel=0.50, MouthPucker=0.25, MouthLowerDown_=0.10),
    "U": _pose(JawOpen=0.14, MouthPucker=0.65, MouthFunnel=0.30),
    "@": _pose(JawOpen=0.30, MouthLowerDown_=0.12, MouthStretch_=0.05),
    "nn": _pose(JawOpen=0.12, MouthClose=0.03, MouthStretch_=0.06),  # nasal coda / syllabic n
}
VISEMES: tuple[str, ...] = tuple(VISEME_POSES)

# How strongly each viseme holds its pose against its neighbours.
STRENGTH: dict[str, float] = {
    "sil": 1.0, "PP": 6.0, "FF": 4.0, "TH": 1.5, "DD": 0.7, "kk": 0.35, "CH": 2.0, "SS": 1.2, "RR": 1.2,
    "aa": 1.0, "E": 1.0, "I": 1.0, "O": 1.4, "U": 1.6, "@": 0.8, "nn": 0.5,
}

# Lip closures and labiodentals are strong but local: their influence decays faster than a vowel's.
REACH_SCALE: dict[str, float] = {"PP": 0.6, "FF": 0.6, "TH": 0.7}

# --- phone tables -----------------------------------------------------------------------------------------------

SILENCE_PHONES = frozenset({
    "_", "sil", "sp", "spn", "pau", "SP", "SIL", "UNK", "", " ", ",", ".", "!", "?", "…", "-", "'", "~", ";", ":",
    "、", "。", "，", "！", "？",
})

# Mandarin (Bert-VITS2 pinyin symbols): initials + finals (including the zero-initial AA/EE/OO and i0/ir/v finals).
ZH: dict[str, str] = {
    "b": "PP", "p": "PP", "m": "PP", "f": "FF", "d": "DD", "t": "DD", "n": "DD", "l": "DD",
    "g": "kk", "k": "kk", "h": "kk", "j": "I", "q": "I", "x": "SS", "zh": "CH", "ch": "CH", "sh": "CH", "r": "RR",
    "z": "SS", "c": "SS", "s": "SS", "y": "I", "w": "U", "AA": "sil", "EE": "sil", "OO": "sil",
    "a": "aa", "ai": "aa I", "an": "aa nn", "ang": "aa kk", "ao": "aa U", "e": "@", "ei": "E I", "en": "@ nn",
    "eng": "@ kk", "er": "@ RR", "i": "I", "i0": "SS", "ir": "RR", "ia": "I aa", "ian": "I E nn", "iang": "I aa kk",
    "iao": "I aa U", "ie": "I E", "in": "I nn", "ing": "I kk", "iong": "I O kk", "iu": "I O U", "o": "O",
    "ong": "O kk", "ou": "O U", "u": "U", "ua": "U aa", "uai": "U aa I", "uan": "U aa nn", "uang": "U aa kk",
    "ui": "U E I", "un": "U @ nn", "uo": "U O", "v": "U I", "van": "U E nn", "ve": "U E", "vn": "U I nn",
    "E": "E", "En": "E nn",
}

# Japanese (pyopenjtalk phones as Bert-VITS2 uses them; capitals are devoiced vowels).
JA: dict[str, str] = {
    "a": "aa", "i": "I", "u": "U", "e": "E", "o": "O", "A": "aa", "I": "I", "U": "U", "E": "E", "O": "O",
    "N": "nn", "cl": "sil", "q": "sil", "k": "kk", "g": "kk", "s": "SS", "sh": "CH", "z": "SS", "j": "CH",
    "t": "DD", "ts": "SS", "ch": "CH", "d": "DD", "n": "DD", "h": "kk", "f": "FF", "b": "PP", "p": "PP", "m": "PP",
    "y": "I", "r": "DD", "w": "U", "v": "FF", "ky": "kk I", "gy": "kk I", "ny": "DD I", "hy": "kk I", "by": "PP I",
    "py": "PP I", "my": "PP I", "ry": "DD I", "dy": "DD I", "ty": "DD I", "zy": "CH",
    "a:": "aa", "i:": "I", "u:": "U", "e:": "E", "o:": "O",
}

# English (ARPAbet, lower case, stress digits removed; Bert-VITS2's English phones).
EN: dict[str, str] = {
    "aa": "aa", "ae": "aa E", "ah": "@", "ao": "O", "aw": "aa U", "ay": "aa I", "eh": "E", "er": "RR", "ey": "E I",
    "ih": "I", "iy": "I", "ow": "O U", "oy": "O I", "uh": "U", "uw": "U", "b": "PP", "p": "PP", "m": "PP",
    "f": "FF", "v": "FF", "th": "TH", "dh": "TH", "t": "DD", "d": "DD", "n": "DD", "l": "DD", "k": "kk", "g": "kk",
    "ng": "kk", "hh": "kk", "s": "SS", "z": "SS", "sh": "CH", "zh": "CH", "ch": "CH", "jh": "CH", "r": "RR",
    "y": "I", "w": "U", "V": "FF",  # Bert-VITS2 spells English /v/ as "V" (lower-case v is Mandarin ü)
}

# IPA (eSpeak NG phoneme events with IPA names). Longest match first when tokenising.
IPA: dict[str, str] = {
    "a": "aa", "ä": "aa", "ɑ": "aa", "æ": "aa", "ɐ": "@", "ʌ": "@", "ɒ": "O", "ɔ": "O", "o": "O", "ɵ": "O", "ø": "O",
    "œ": "E", "e": "E", "ɛ": "E", "ə": "@", "ɜ": "@", "ɚ": "RR", "ɝ": "RR", "ɘ": "@", "ɤ": "@", "i": "I", "ɪ": "I",
    "y": "U", "ʏ": "U", "ɨ": "I", "ʉ": "U", "u": "U", "ʊ": "U", "ɯ": "@", "ɯᵝ": "U",
    "p": "PP", "b": "PP", "m": "PP", "ɸ": "FF", "β": "FF", "f": "FF", "v": "FF", "ʋ": "FF", "ɱ": "FF",
    "θ": "TH", "ð": "TH", "t": "DD", "d": "DD", "n": "DD", "l": "DD", "ɾ": "DD", "ɫ": "DD", "ɬ": "DD", "ɲ": "DD",
    "ʎ": "DD", "ɭ": "DD", "ɳ": "DD", "ʈ": "DD", "ɖ": "DD",
    "k": "kk", "g": "kk", "ɡ": "kk", "ŋ": "kk", "x": "kk", "χ": "kk", "ɣ": "kk", "h": "kk", "ɦ": "kk", "q": "kk",
    "ʔ": "sil", "ɴ": "nn", "s": "SS", "z": "SS", "ts": "SS", "dz": "SS", "ʃ": "CH", "ʒ": "CH", "tʃ": "CH",
    "dʒ": "CH", "tɕ": "CH", "dʑ": "CH", "ɕ": "CH", "ʑ": "CH", "ʂ": "CH", "ʐ": "CH", "tʂ": "CH", "dʐ": "CH",
    "ɹ": "RR", "r": "RR", "ɻ": "RR", "ʁ": "kk", "j": "I", "w": "U", "ɥ": "U", "ʍ": "U", "ç": "kk",
    # eSpeak's Mandarin spells retroflexes with a dot (s. ts. z.) and aspiration with h (th, tɕh)
    "s.": "CH", "ts.": "CH", "z.": "RR", "i.": "RR",
    # single-letter affricates (Kokoro/misaki), palatal stops (ç decomposes to c + cedilla), Japanese approximants
    "ʨ": "CH", "ʥ": "CH", "ʧ": "CH", "ʤ": "CH", "ʦ": "SS", "ʣ": "SS", "c": "kk", "ɟ": "kk", "ʝ": "I", "ɰ": "U",
    "ɽ": "DD", "ᵻ": "I", "ᵊ": "@",
}
_IPA_KEYS = sorted(IPA, key=len, reverse=True)
_IPA_IGNORE = re.compile(r"[ˈˌːˑ˞ʰʲʷ\d\-‿|]")

LANGUAGE_TABLES = {"zh": ZH, "ja": JA, "jp": JA, "en": EN}


@dataclass(frozen=True)
class Segment:
    """One viseme held over [start, end) seconds with a dominance strength."""

    viseme: str
    start: float
    end: float
    strength: float


def _ipa_visemes(phone: str) -> list[str]:
    text = unicodedata.normalize("NFD", phone)
    text = "".join(c for c in text if not unicodedata.combining(c) or c == "\u0361")
    text = text.replace("\u0361", "")
    out: list[str] = []
    i = 0
    text = _IPA_IGNORE.sub("", text)
    while i < len(text):
        for key in _IPA_KEYS:
            if text.startswith(key, i):
                out.append(IPA[key])
                i += len(key)
                break
        else:
            i += 1  # unknown symbol (e.g. a modifier): skip it
    # consecutive duplicates (aspirated 'th' -> DD kk keeps DD dominant; 'aa aa' -> one)
    dedup = [v for j, v in enumerate(out) if j == 0 or v != out[j - 1]]
    if len(dedup) > 1 and dedup[-1] == "kk" and phone.rstrip().endswith("h") and dedup[0] != "kk":
        dedup = dedup[:-1]  # eSpeak's aspiration mark 'h' is not a separate mouth shape
    return dedup


def phone_visemes(phone: str, lang: str | None = None) -> list[str]:
    """Visemes for one phone. ``lang``: ``zh``/``ja``/``en`` (Bert-VITS2 symbols), ``ipa`` (eSpeak NG), or None to guess.

    Unknown phones give ``[]`` (they take their neighbours' shape)."""
    if phone in SILENCE_PHONES or phone.startswith("("):  # "(en)" language-switch marks from eSpeak
        return ["sil"]
    key = phone.strip()
    if lang is not None and lang.lower() in ("ipa", "espeak"):
        return _ipa_visemes(key)
    tables = [LANGUAGE_TABLES[lang.lower()]] if lang is not None and lang.lower() in LANGUAGE_TABLES else []
    tables += [t for t in (ZH, EN, JA) if t not in tables]
    bare = re.sub(r"\d+$", "", key)
    for table in tables:
        for k in (key, bare, bare.lower()):
            if k in table:
                return table[k].split()
    return _ipa_visemes(key)


def segments_from_phones(
    phones: Sequence[str], starts: Sequence[float], ends: Sequence[float], lang: str | None = None,
    short_pause_s: float = 0.1,
) -> list[Segment]:
    """Viseme segments for timed phones. Silences shorter than ``short_pause_s`` (Bert-VITS2's interspersed blanks,
    word gaps) are nearly transparent so the mouth does not snap shut between every phone."""
    segs: list[Segment] = []
    for phone, t0, t1 in zip(phones, starts, ends):
        t0, t1 = float(t0), float(t1)
        if t1 <= t0:
            continue
        vis = phone_visemes(phone, lang)
        if not vis:
            continue
        if vis == ["sil"]:
            strength = STRENGTH["sil"] if (t1 - t0) >= short_pause_s else 0.05
            segs.append(Segment("sil", t0, t1, strength))
            continue
        step = (t1 - t0) / len(vis)
        for j, v in enumerate(vis):
            segs.append(Segment(v, t0 + j * step, t0 + (j + 1) * step, STRENGTH[v]))
    return segs


def render(
    segments: Iterable[Segment], num_frames: int, fps: float = 60.0, *, anticipation_s: float = 0.045,
    carryover_s: float = 0.03, rest_weight: float = 0.02, intensity: float = 1.0, reach_s: float = 0.4,
    seal: bool = True, seal_pauses: bool = False,
) -> np.ndarray:
    """Blend viseme poses with dominance functions and sample at frame centres -> ``[num_frames, 61]``.

    ``seal``: lips close on bilabials and nearly on labiodentals (:func:`_seal_lips`). ``seal_pauses``: the lips also
    rest together inside pauses (:func:`_seal_pauses`; the face of a synthesis result, where pauses are known)."""
    segments = list(segments)
    t = (np.arange(num_frames, dtype=np.float64) + 0.5) / fps
    num = np.zeros((num_frames, NUM_VALUES), dtype=np.float64)
    den = np.full(num_frames, rest_weight, dtype=np.float64)
    for seg in segments:
        lo = max(0, int(math.floor((seg.start - reach_s) * fps)))
        hi = min(num_frames, int(math.ceil((seg.end + reach_s) * fps)) + 1)
        if hi <= lo:
            continue
        tt = t[lo:hi]
        before = np.clip(seg.start - tt, 0.0, None)
        after = np.clip(tt - seg.end, 0.0, None)
        k = REACH_SCALE.get(seg.viseme, 1.0)
        d = seg.strength * np.exp(-before / (anticipation_s * k) - after / (carryover_s * k))
        num[lo:hi] += d[:, None] * VISEME_POSES[seg.viseme][None, :]
        den[lo:hi] += d
    out = (num / den[:, None]) * intensity
    if seal:
        _seal_lips(out, segments, t, fps)
    if seal_pauses:
        _seal_pauses(out, segments, t)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _seal_pauses(out: np.ndarray, segments: Iterable[Segment], t: np.ndarray, margin_s: float = 0.06,
                 ramp_s: float = 0.04) -> None:
    """Inside a pause (a full-strength silence), ``margin_s`` after the speech and before the next sound, the lips
    rest together (MouthClose follows JawOpen, ramping over ``ramp_s``): speakers close their mouth between phrases,
    and the anticipation of the next sound would otherwise keep it ajar through the whole pause."""
    jaw, close = INDEX["JawOpen"], INDEX["MouthClose"]
    for seg in segments:
        if seg.viseme != "sil" or seg.strength < STRENGTH["sil"]:
            continue
        inside = np.minimum(t - (seg.start + margin_s), (seg.end - margin_s) - t)
        w = np.clip(inside / ramp_s, 0.0, 1.0)
        idx = np.nonzero(w > 0)[0]
        if idx.size:
            out[idx, close] = np.maximum(out[idx, close], w[idx] * out[idx, jaw])


#: how far MouthClose follows JawOpen during each closing viseme (1 = lips sealed, as ARKit's MouthClose = JawOpen)
SEAL: dict[str, float] = {"PP": 1.0, "FF": 0.8}


def _seal_lips(out: np.ndarray, segments: Iterable[Segment], t: np.ndarray, fps: float) -> None:
    """Bilabials (/p b m/) seal the lips and labiodentals (/f v/) nearly do, whatever the jaw does.

    Blending keeps some jaw opening from the neighbouring vowels; in ARKit terms the lips touch when MouthClose equals
    JawOpen, so during a closing segment (widened by half a frame each side, so even a phone shorter than a frame
    closes on its nearest frame) MouthClose is raised to ``SEAL * JawOpen``, ramping in and out over ~25 ms."""
    jaw, close = INDEX["JawOpen"], INDEX["MouthClose"]
    half = 0.5 / fps
    ramp = 0.025
    for seg in segments:
        k = SEAL.get(seg.viseme)
        if k is None:
            continue
        dist = np.maximum(np.maximum(seg.start - half - t, t - seg.end - half), 0.0)
        w = np.clip(1.0 - dist / ramp, 0.0, 1.0)
        idx = np.nonzero(w > 0)[0]
        if idx.size:
            out[idx, close] = np.maximum(out[idx, close], k * w[idx] * out[idx, jaw])


def lipsync_events(
    events: Sequence[tuple[str, float, float]], fps: float = 60.0, num_frames: int | None = None,
    lang: str | None = "ipa", **render_kwargs,
) -> np.ndarray:
    """``[(phone, start_s, end_s)]`` (e.g. eSpeak NG phoneme events) -> ``[T, 61]`` at ``fps``."""
    if num_frames is None:
        end = max((e[2] for e in events), default=0.0)
        num_frames = max(1, int(math.ceil(end * fps - 1e-6)))
    phones = [e[0] for e in events]
    segs = segments_from_phones(phones, [e[1] for e in events], [e[2] for e in events], lang)
    return render(segs, num_frames, fps, **render_kwargs)


def lipsync(
    phones: Sequence[str], durations: Sequence[float], fps: float = 60.0, *, lang: str | None = None,
    frame_rate: float | None = None, start_s: float = 0.0, num_frames: int | None = None, **render_kwargs,
) -> np.ndarray:
    """Phones + durations -> ``[T, 61]`` at ``fps``.

    ``durations`` are seconds, or frames at ``frame_rate`` when that is given (Bert-VITS2's ``w_ceil`` are frames at
    44100/512 = 86.13 fps). ``lang`` picks the phone table (``zh``, ``ja``, ``en``, ``ipa``; None tries all)."""
    if len(phones) != len(durations):
        raise ValueError(f"lipsync: {len(phones)} phones but {len(durations)} durations; give one duration per phone")
    d = np.asarray(durations, dtype=np.float64).reshape(-1)
    if frame_rate is not None:
        d = d / float(frame_rate)
    if (d < 0).any():
        raise ValueError("lipsync: durations must be >= 0")
    ends = start_s + np.cumsum(d)
    starts = ends - d
    if num_frames is None:
        num_frames = max(1, int(math.ceil((ends[-1] if len(ends) else 0.0) * fps - 1e-6)))
    segs = segments_from_phones(list(phones), starts, ends, lang)
    return render(segs, num_frames, fps, **render_kwargs)


__all__ = [
    "EN", "IPA", "JA", "REACH_SCALE", "SEAL", "STRENGTH", "Segment", "VISEMES", "VISEME_POSES", "ZH", "lipsync", "lipsync_events",
    "phone_visemes", "render", "segments_from_phones",
]
