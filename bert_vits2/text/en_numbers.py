"""English number, currency, decimal, ordinal and year expansion (inflect), as Bert-VITS2 v2.3.

Order: drop thousands commas, ``£N`` -> ``N pounds``, ``$D.C`` -> ``D dollars, C cents``,
decimals -> ``X point Y``, ordinals -> words, then integers (1001..2999 read as years:
``1999`` -> ``nineteen ninety-nine``, ``2005`` -> ``two thousand five``, ``2500`` ->
``twenty-five hundred``). Titles such as ``Mr.`` are NOT expanded (v2.3 did not).
"""

from __future__ import annotations

import functools
import re
import sys

_COMMA_NUMBER_RX = re.compile(r"([0-9][0-9\,]+[0-9])")
_DECIMAL_NUMBER_RX = re.compile(r"([0-9]+\.[0-9]+)")
_POUNDS_RX = re.compile(r"£([0-9\,]*[0-9]+)")
_DOLLARS_RX = re.compile(r"\$([0-9\.\,]*[0-9]+)")
_ORDINAL_RX = re.compile(r"[0-9]+(st|nd|rd|th)")
_NUMBER_RX = re.compile(r"[0-9]+")


def import_inflect():
    """Import inflect without typeguard's import-time instrumentation of its methods.

    inflect 7 decorates ~20 methods with ``typeguard.typechecked``, which re-parses and recompiles
    their source on import (seconds of CPU per process, and a runtime check on every call). The
    checks only reject wrongly typed arguments, so outputs are unchanged; g2p_offline imports
    g2p_en (which imports inflect) through here too.
    """
    if "inflect" in sys.modules:
        return sys.modules["inflect"]
    try:
        import typeguard  # inflect (+typeguard): ~4.7 s import, only for English numbers
    except ImportError:  # pragma: no cover - inflect depends on typeguard
        import inflect

        return inflect
    original = typeguard.typechecked
    typeguard.typechecked = _no_typecheck
    try:
        import inflect
    finally:
        typeguard.typechecked = original
    return inflect


def _no_typecheck(target=None, **kwargs):
    return target if target is not None else (lambda f: f)


@functools.lru_cache(maxsize=1)
def _engine():
    return import_inflect().engine()


def _unit(n: int, singular: str) -> str:
    return singular if n == 1 else singular + "s"


def _expand_dollars(m: re.Match) -> str:
    amount = m.group(1)
    parts = amount.split(".")
    if len(parts) > 2:
        return amount + " dollars"  # not a money amount we understand; leave the digits
    dollars = int(parts[0]) if parts[0] else 0
    cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    if dollars and cents:
        return f"{dollars} {_unit(dollars, 'dollar')}, {cents} {_unit(cents, 'cent')}"
    if dollars:
        return f"{dollars} {_unit(dollars, 'dollar')}"
    if cents:
        return f"{cents} {_unit(cents, 'cent')}"
    return "zero dollars"


def _expand_number(m: re.Match) -> str:
    num = int(m.group(0))
    words = _engine().number_to_words
    if 1000 < num < 3000:
        if num == 2000:
            return "two thousand"
        if 2000 < num < 2010:
            return "two thousand " + words(num % 100)
        if num % 100 == 0:
            return words(num // 100) + " hundred"
        return words(num, andword="", zero="oh", group=2).replace(", ", " ")
    return words(num, andword="")


def normalize_numbers(text: str) -> str:
    """Spell out the numbers of an English sentence."""
    text = _COMMA_NUMBER_RX.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _POUNDS_RX.sub(r"\1 pounds", text)
    text = _DOLLARS_RX.sub(_expand_dollars, text)
    text = _DECIMAL_NUMBER_RX.sub(lambda m: m.group(1).replace(".", " point "), text)
    text = _ORDINAL_RX.sub(lambda m: _engine().number_to_words(m.group(0)), text)
    return _NUMBER_RX.sub(_expand_number, text)
