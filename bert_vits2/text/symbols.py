"""Bert-VITS2 v2.3 symbol, tone and language tables.

The ids are part of the checkpoint format (``enc_p.emb``, ``tone_emb``, ``language_emb`` rows), so the
order below must never change: ``symbols = [pad] + sorted(set(zh + ja + en)) + pu_symbols`` (112 entries).
"""

from __future__ import annotations

punctuation: list[str] = ["!", "?", "…", ",", ".", "'", "-"]
pu_symbols: list[str] = punctuation + ["SP", "UNK"]
pad: str = "_"

# Chinese: initials, opencpop-style finals and the zero-initial markers AA/EE/OO.
zh_symbols: list[str] = (
    "E En a ai an ang ao b c ch d e ei en eng er f g h i i0 ia ian iang iao ie in ing iong ir iu j k l m n o "
    "ong ou p q r s sh t u ua uai uan uang ui un uo v van ve vn w x y z zh AA EE OO"
).split()
num_zh_tones: int = 6

# Japanese: pyopenjtalk phones (lower case, long vowels with ':', 'q' for the geminate, 'N' for the moraic nasal).
ja_symbols: list[str] = (
    "N a a: b by ch d dy e e: f g gy h hy i i: j k ky m my n ny o o: p py q r ry s sh t ts ty u u: w y z zy"
).split()
num_ja_tones: int = 2

# English: ARPAbet without stress digits, lower case except "V".
en_symbols: list[str] = (
    "aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw V w y z zh"
).split()
num_en_tones: int = 4

normal_symbols: list[str] = sorted(set(zh_symbols + ja_symbols + en_symbols))
symbols: list[str] = [pad] + normal_symbols + pu_symbols
sil_phonemes_ids: list[int] = [symbols.index(i) for i in pu_symbols]
symbol_to_id: dict[str, int] = {s: i for i, s in enumerate(symbols)}

num_tones: int = num_zh_tones + num_ja_tones + num_en_tones
language_id_map: dict[str, int] = {"ZH": 0, "JP": 1, "EN": 2}
num_languages: int = len(language_id_map)
language_tone_start_map: dict[str, int] = {
    "ZH": 0,
    "JP": num_zh_tones,
    "EN": num_zh_tones + num_ja_tones,
}
num_tones_per_language: dict[str, int] = {"ZH": num_zh_tones, "JP": num_ja_tones, "EN": num_en_tones}
blank_id: int = 0

assert len(zh_symbols) == 65 and len(ja_symbols) == 42 and len(en_symbols) == 39
assert len(symbols) == 112
