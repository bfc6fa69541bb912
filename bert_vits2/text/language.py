"""Split multi-language input into single-language pieces (the webui's "mix" and "auto" modes).

* ``split_mix``: upstream's explicit syntax ``[speaker]<zh>你好<jp>こんにちは<en>hello``.  A ``[name]`` tag
  sets the speaker of what follows (``None`` before the first one) and resets the language; each
  ``<zh>``/``<jp>``/``<en>`` tag sets the language of the text after it.
* ``split_auto``: no markup; a sentence is cut into runs by script.  Kana -> JP, Latin letters -> EN,
  Han characters -> JP when they touch kana (kanji inside Japanese), else ZH.  Digits, punctuation and
  spaces have no language of their own and stay with the run around them.

Both only split; each piece then goes through ``bert_vits2.text.clean_text`` in its language.
"""

from __future__ import annotations

import re
import unicodedata

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


def split_auto(text: str, default: str = "ZH") -> list[tuple[str, str]]:
    """Cut ``text`` into ``(language, piece)`` runs by script; adjacent pieces of one language are joined.

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
            run[0] = "H-JP" if kana_beside(i, -1) or kana_beside(i, 1) else "H-ZH"
    language_of = {"K": "JP", "H-JP": "JP", "H-ZH": "ZH", "L": "EN"}
    # 3. neutral runs join the previous run (the next one at the start), except a number written right
    #    against the next run ("2023年"), which goes with it; then merge equal languages
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
            if number and number.start() > 0 and _script(pieces[-1][1][number.start() - 1]) is None:
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
