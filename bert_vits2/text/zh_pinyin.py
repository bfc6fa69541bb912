"""Pinyin syllable -> two Bert-VITS2 phones (opencpop-strict style), built from Mandarin phonology.

Every Mandarin syllable becomes exactly two phones: an initial and a final.  Syllables without an
initial get a marker initial (``AA`` before a-, ``EE`` before e-, ``OO`` before o-); ``y``/``w`` act as
initials; ``zhi chi shi ri`` use the final ``ir``, ``zi ci si`` use ``i0``; ``ü`` is written ``v``;
``yan``/``ye`` use the distinct finals ``En``/``E``.  Syllables outside :data:`SYLLABLES` (for example
``fiao`` from 覅) are not in the upstream table: upstream rejects them, and so do we.

Keys use the spelling the frontend produces from pypinyin's strict initials/finals after the
zero-initial fix-ups (``jv``, ``qvan``, ``lve``, ``yu``, ``yuan``...).
"""

from __future__ import annotations

_ZERO_INITIAL = "a ai an ang ao e ei en eng er o ou".split()

# initial -> finals it combines with (standard Mandarin syllable inventory, as pypinyin 0.55 produces it).
_FINALS_BY_INITIAL: dict[str, str] = {
    "b": "a ai an ang ao ei en eng i ian iao ie in ing o u",
    "p": "a ai an ang ao ei en eng i ian iao ie in ing o ou u",
    "m": "a ai an ang ao e ei en eng i ian iao ie in ing iu o ou u",
    "f": "a an ang ei en eng o ou u",
    "d": "a ai an ang ao e ei en eng i ia ian iao ie ing iu ong ou u uan ui un uo",
    "t": "a ai an ang ao e ei eng i ian iao ie ing ong ou u uan ui un uo",
    "n": "a ai an ang ao e ei en eng i ian iang iao ie in ing iu ong ou u uan un uo v ve",
    "l": "a ai an ang ao e ei eng i ia ian iang iao ie in ing iu o ong ou u uan un uo v ve",
    "g": "a ai an ang ao e ei en eng ong ou u ua uai uan uang ui un uo",
    "k": "a ai an ang ao e ei en eng ong ou u ua uai uan uang ui un uo",
    "h": "a ai an ang ao e ei en eng ong ou u ua uai uan uang ui un uo",
    "j": "i ia ian iang iao ie in ing iong iu v van ve vn",
    "q": "i ia ian iang iao ie in ing iong iu v van ve vn",
    "x": "i ia ian iang iao ie in ing iong iu v van ve vn",
    "zh": "a ai an ang ao e ei en eng i ong ou u ua uai uan uang ui un uo",
    "ch": "a ai an ang ao e en eng i ong ou u ua uai uan uang ui un uo",
    "sh": "a ai an ang ao e ei en eng i ou u ua uai uan uang ui un uo",
    "r": "an ang ao e en eng i ong ou u ua uan ui un uo",
    "z": "a ai an ang ao e ei en eng i ong ou u uan ui un uo",
    "c": "a ai an ang ao e en eng i ong ou u uan ui un uo",
    "s": "a ai an ang ao e en eng i ong ou u uan ui un uo",
    "y": "a an ang ao e i in ing o ong ou u uan ue un",
    "w": "a ai an ang ei en eng o u",
}

_Y_FINALS = {"an": "En", "e": "E", "u": "v", "uan": "van", "ue": "ve", "un": "vn"}


def _phones(initial: str, final: str) -> tuple[str, str]:
    if initial == "y":
        return "y", _Y_FINALS.get(final, final)
    if initial in ("zh", "ch", "sh", "r") and final == "i":
        return initial, "ir"
    if initial in ("z", "c", "s") and final == "i":
        return initial, "i0"
    return initial, final


def _build() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for final in _ZERO_INITIAL:
        table[final] = ({"a": "AA", "e": "EE", "o": "OO"}[final[0]], final)
    for initial, finals in _FINALS_BY_INITIAL.items():
        for final in finals.split():
            table[initial + final] = _phones(initial, final)
    return table


SYLLABLES: dict[str, tuple[str, str]] = _build()
"""pinyin syllable (toneless) -> (initial phone, final phone)."""


def syllable_to_phones(pinyin: str) -> tuple[str, str] | None:
    """The two phones of a toneless syllable, or None when upstream's table has no such syllable."""
    return SYLLABLES.get(pinyin)
