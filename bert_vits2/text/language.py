"""Split multi-language input into single-language pieces (the webui's "mix" and "auto" modes).

* ``split_mix``: upstream's explicit syntax ``[speaker]<zh>你好<jp>こんにちは<en>hello``.  A ``[name]`` tag
  sets the speaker of what follows (``None`` before the first one) and resets the language; each
  ``<zh>``/``<jp>``/``<en>`` tag sets the language of the text after it.
* ``split_auto``: no markup (the webui's "auto"; upstream identifies languages with langid over zh/ja/en).
  The text is cut into runs by script: kana -> JP, Latin letters -> EN (a word such as ``GPT-4`` or
  ``COVID-19`` stays whole).  Han characters need a decision, made in this order:

  1. kanji touching kana (``日本語を``, ``「東京」に``) are Japanese;
  2. kanji forms that only one of the languages writes settle it: Japanese shinjitai / kokuji such as 庁 駅 広
     込 (in Shift_JIS but in neither GB2312 nor Big5) -> JP; simplified / Chinese-only forms such as 们 这 欢 你
     (in GB2312 or Big5 but not in Shift_JIS) -> ZH;
  3. otherwise the offline identifier langid (``py3langid``: langid.py's model inside the wheel, BSD) chooses
     between zh and ja;
  4. when langid is unsure (probability < 0.9) the context breaks the tie: kana elsewhere in the same sentence ->
     JP, else the language of the nearest sentence that was decided, else langid's answer.

  Digits, punctuation and spaces have no language of their own and stay with the run around them.

Both only split; each piece then goes through ``bert_vits2.text.clean_text`` in its language.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata

log = logging.getLogger(__name__)

MIX_LANGUAGE_TAGS: dict[str, str] = {"zh": "ZH", "jp": "JP", "ja": "JP", "en": "EN"}
_MIX_TAG_RE = re.compile(r"\[([^\[\]<>]*)\]|<([^<>\[\]]*)>")


class MixSyntaxError(ValueError):
    """Malformed ``[speaker]<lang>text`` input; the message says where and how to fix it."""


def _excerpt(text: str, pos: int) -> str:
    return repr(text[max(0, pos - 10) : pos + 10])


def split_mix(text: str) -> list[tuple[str | None, str, str]]:
    """``"[alice]<zh>你好<en>hello"`` -> ``[("alice", "ZH", "你好"), ("alice", "EN", "hello")]``.

    Text pieces are stripped of surrounding whitespace; a tag followed by nothing is ignored.
    Raises :class:`MixSyntaxError` for unknown language tags, empty speaker names, unbalanced
    brackets, text not preceded by a language tag, or input without any text.
    """
    pieces: list[tuple[str | None, str, str]] = []
    speaker: str | None = None
    language: str | None = None
    pos = 0

    def take(chunk: str, at: int) -> None:
        stray = re.search(r"[\[\]<>]", chunk)
        if stray:
            raise MixSyntaxError(
                f"unbalanced {stray.group()!r} near {_excerpt(text, at + stray.start())}: tags look like "
                "[speaker] and <zh>/<jp>/<en>; remove the stray bracket"
            )
        if not chunk.strip():
            return
        if language is None:
            where = "after the speaker tag" if speaker is not None else "at the start"
            raise MixSyntaxError(
                f"text {chunk.strip()[:20]!r} {where} has no language: put <zh>, <jp> or <en> before it "
                "(mix syntax: [speaker]<zh>中文<jp>日本語<en>English)"
            )
        pieces.append((speaker, language, chunk.strip()))

    for match in _MIX_TAG_RE.finditer(text):
        take(text[pos : match.start()], pos)
        pos = match.end()
        if match.group(1) is not None:
            name = match.group(1).strip()
            if not name:
                raise MixSyntaxError(f"empty speaker tag [] near {_excerpt(text, match.start())}: write [name]")
            speaker, language = name, None
        else:
            tag = match.group(2).strip().lower()
            if tag not in MIX_LANGUAGE_TAGS:
                raise MixSyntaxError(
                    f"unknown language tag <{match.group(2)}> near {_excerpt(text, match.start())}: "
                    "use <zh>, <jp> (or <ja>) or <en>"
                )
            language = MIX_LANGUAGE_TAGS[tag]
    take(text[pos:], pos)
    if not pieces:
        raise MixSyntaxError("no text found: mix syntax is [speaker]<zh>中文<jp>日本語<en>English")
    return pieces


def _script(char: str) -> str | None:
    """'K' kana, 'H' Han, 'L' Latin letter, None for script-neutral characters (digits, punctuation, ...)."""
    code = ord(char)
    if 0x3041 <= code <= 0x309F or 0x30A0 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
        return "K"  # includes the prolonged sound mark ー and half-width katakana
    if (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x2FA1F
        or char in "々〆〇"
    ):
        return "H"
    if char.isalpha() and unicodedata.name(char, "").startswith(("LATIN", "FULLWIDTH LATIN")):
        return "L"
    return None


_TRAILING_NUMBER_RE = re.compile(r"[0-9０-９]+(?:[.,:][0-9０-９]+)*$")


def _is_transparent(chunk: str) -> bool:
    """Brackets, quotes and middle dots do not separate kanji from the kana around them."""
    return all(unicodedata.category(c) in ("Ps", "Pe", "Pi", "Pf") or c in "・'\"" for c in chunk)


def _encodable(char: str, codec: str) -> bool:
    try:
        char.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def kanji_form_vote(text: str) -> str | None:
    """``"JP"`` / ``"ZH"`` when the Han characters of ``text`` include forms only Japanese (Shift_JIS, not GB2312 nor
    Big5: 庁 駅 広 込 ...) or only Chinese (GB2312 or Big5, not Shift_JIS: 们 这 欢 你 ...) writes; the majority
    if both occur; ``None`` when every character is shared (东/東 style pairs need no table: the codecs are it)."""
    jp = zh = 0
    for char in text:
        if _script(char) != "H":
            continue
        in_jis = _encodable(char, "shift_jis")
        in_zh = _encodable(char, "gb2312") or _encodable(char, "big5")
        jp += in_jis and not in_zh
        zh += in_zh and not in_jis
    if jp == zh:
        return None
    return "JP" if jp > zh else "ZH"


_LANGID_CONFIDENT = 0.9
_identifier = None
_identifier_lock = threading.Lock()


def langid_classify(text: str, languages: tuple[str, ...] = ("zh", "ja", "en")) -> tuple[str, float] | None:
    """``(language, probability)`` from the offline langid model (``py3langid``), restricted to ``languages``;
    ``None`` if the package is not installed (then only the script rules decide). The model (4.5 MB, inside the
    wheel) is loaded once, on first use."""
    global _identifier
    with _identifier_lock:
        if _identifier is None:
            try:
                from py3langid.langid import (  # py3langid: missing is tolerated (script rules only)
                    MODEL_FILE,
                    LanguageIdentifier,
                )
            except ImportError:
                log.warning("py3langid is not installed: auto language detection uses script rules only "
                            "(pip install py3langid)")
                _identifier = False
            else:
                _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        if _identifier is False:
            return None
        _identifier.set_languages(list(languages))
        lang, prob = _identifier.classify(text)
    return str(lang), float(prob)


_SENTENCE_END_RE = re.compile(r"[。！？!?…\n]|[.．](?=\s|$)")


def _decide_han(runs: list[list]) -> None:
    """Give every undecided Han run (class ``"H"``) the class ``"H-JP"`` or ``"H-ZH"`` (steps 2-4 of the module doc)."""
    sentence, n = [], 0
    for cls, chunk in runs:
        sentence.append(n)
        if cls is None and _SENTENCE_END_RE.search(chunk):
            n += 1
    pending: list[tuple[int, str]] = []  # (run index, langid's answer)
    for i, run in enumerate(runs):
        if run[0] != "H":
            continue
        vote = kanji_form_vote(run[1])
        if vote:
            run[0] = "H-" + vote
            continue
        guess = langid_classify(run[1], ("zh", "ja"))
        if guess and guess[1] >= _LANGID_CONFIDENT:
            run[0] = "H-JP" if guess[0] == "ja" else "H-ZH"
        else:
            pending.append((i, "JP" if guess and guess[0] == "ja" else "ZH"))
    if not pending:
        return
    decided: dict[int, str] = {}  # sentence -> language of its decided CJK runs (kana counts as JP)
    for (cls, _chunk), s in zip(runs, sentence):
        if cls in ("K", "H-JP", "H-ZH") and s not in decided:
            decided[s] = "ZH" if cls == "H-ZH" else "JP"
        if cls == "K":
            decided[s] = "JP"
    for i, fallback in pending:
        s = sentence[i]
        if s in decided:
            lang = decided[s]
        else:
            near = sorted(decided, key=lambda t: (abs(t - s), t > s))
            lang = decided[near[0]] if near else fallback
        runs[i][0] = "H-" + lang


def split_auto(text: str, default: str = "ZH") -> list[tuple[str, str]]:
    """Cut ``text`` into ``(language, piece)`` runs (script, kanji forms, langid: see the module docstring);
    adjacent pieces of one language are joined.

    Script-neutral characters between two runs stay with the run before them (with the run after them at
    the start of the text); text with no letters at all is one ``default``-language piece.  Pieces are
    stripped of surrounding whitespace and empty pieces dropped.
    """
    if default not in ("ZH", "JP", "EN"):
        raise ValueError(f"default language must be ZH, JP or EN, got {default!r}")
    # 1. runs of one script class (None = neutral)
    runs: list[list] = []
    for char in text:
        cls = _script(char)
        if runs and runs[-1][0] == cls:
            runs[-1][1] += char
        else:
            runs.append([cls, char])
    # 2. Han runs touching kana (directly or through brackets/quotes) are Japanese, the others Chinese
    def kana_beside(i: int, step: int) -> bool:
        j = i + step
        while 0 <= j < len(runs) and runs[j][0] is None and _is_transparent(runs[j][1]):
            j += step
        return 0 <= j < len(runs) and runs[j][0] == "K"

    for i, run in enumerate(runs):
        if run[0] == "H":
            run[0] = "H-JP" if kana_beside(i, -1) or kana_beside(i, 1) else "H"
    _decide_han(runs)
    language_of = {"K": "JP", "H-JP": "JP", "H-ZH": "ZH", "L": "EN"}
    # 3. neutral runs join the previous run (the next one at the start), except a number standing apart from the
    #    previous word and written right against the next run ("! 2023年"), which goes with it ("GPT-4は" keeps
    #    "GPT-4" whole); then merge equal languages
    pieces: list[list[str]] = []
    pending = ""
    for cls, chunk in runs:
        if cls is None:
            if pieces:
                pieces[-1][1] += chunk
            else:
                pending += chunk
            continue
        lang = language_of[cls]
        if pieces and pieces[-1][0] != lang:
            number = _TRAILING_NUMBER_RE.search(pieces[-1][1])
            if number and number.start() > 0 and pieces[-1][1][number.start() - 1].isspace():
                pending = number.group() + pending
                pieces[-1][1] = pieces[-1][1][: number.start()]
        if pieces and pieces[-1][0] == lang:
            pieces[-1][1] += pending + chunk
        else:
            pieces.append([lang, pending + chunk])
        pending = ""
    if not pieces:
        return [(default, pending.strip())] if pending.strip() else []
    return [(lang, chunk.strip()) for lang, chunk in pieces if chunk.strip()]
