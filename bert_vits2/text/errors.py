"""Errors of the text frontend."""

from __future__ import annotations


class TextRejected(ValueError):
    """The text cannot be turned into phones the way upstream Bert-VITS2 v2.3 would (upstream fails too).

    The message names the offending part and what to do (usually: remove or rewrite it).
    """
