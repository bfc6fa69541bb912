"""Rule-based lip-sync: phone tables, coarticulated curves, timing and frame-rate handling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from motion.arkit import INDEX, NUM_BLENDSHAPES
from motion.face.lipsync import lipsync, lipsync_events, phone_visemes

JAW, CLOSE, PUCKER, FUNNEL = (INDEX[n] for n in ("JawOpen", "MouthClose", "MouthPucker", "MouthFunnel"))
SMILE, ROLL_LOWER = INDEX["MouthSmileLeft"], INDEX["MouthRollLower"]


@pytest.mark.parametrize("phone,lang,expected", [
    ("b", "zh", ["PP"]), ("m", "zh", ["PP"]), ("f", "zh", ["FF"]), ("iang", "zh", ["I", "aa", "kk"]),
    ("ou", "zh", ["O", "U"]), ("zh", "zh", ["CH"]), ("v", "zh", ["U", "I"]),
    ("N", "ja", ["nn"]), ("ky", "ja", ["kk", "I"]), ("o", "ja", ["O"]), ("cl", "ja", ["sil"]),
    ("ay", "en", ["aa", "I"]), ("uw", "en", ["U"]), ("th", "en", ["TH"]), ("ow1", "en", ["O", "U"]),
    ("ˈaɪ", "ipa", ["aa", "I"]), ("uː", "ipa", ["U"]), ("tʃ", "ipa", ["CH"]), ("ð", "ipa", ["TH"]),
    ("tɕh", "ipa", ["CH"]), ("th", "ipa", ["DD"]), ("ˌo̞", "ipa", ["O"]), ("m", "ipa", ["PP"]),
    ("V", "en", ["FF"]), ("zy", "ja", ["CH"]), ("o:", "ja", ["O"]), ("E", "zh", ["E"]),
    ("_", None, ["sil"]), ("SP", "zh", ["sil"]), ("(en)", "ipa", ["sil"]),
])
def test_phone_tables(phone, lang, expected):
    assert phone_visemes(phone, lang) == expected


def test_every_bert_vits2_symbol_has_a_mouth_shape():
    import importlib

    from motion.face.lipsync import EN, JA, ZH

    table = importlib.import_module("bert_vits2.text.symbols")  # the module (the package re-exports the list)
    for syms, mapping in ((table.zh_symbols, ZH), (table.ja_symbols, JA), (table.en_symbols, EN)):
        assert set(syms) <= set(mapping), sorted(set(syms) - set(mapping))
    for p in table.pu_symbols:
        assert phone_visemes(p) == ["sil"]


def test_vowels_open_lips_close_and_rounding():
    # "_ m a m u _": lips closed on m, open jaw on a, rounded on u, neutral in silence
    phones = ["_", "m", "a", "m", "u", "_"]
    durs = [0.3, 0.12, 0.25, 0.12, 0.25, 0.4]
    f = lipsync(phones, durs, fps=100, lang="ja")
    assert f.shape == (math.ceil(sum(durs) * 100), 61)
    at = lambda t: f[int(t * 100)]  # noqa: E731
    a_mid, m_mid, u_mid = at(0.42 + 0.125), at(0.3 + 0.06), at(0.79 + 0.125)
    assert a_mid[JAW] > 0.5 and a_mid[JAW] > 3 * m_mid[JAW]
    assert m_mid[CLOSE] > 0.15 and m_mid[CLOSE] > 3 * a_mid[CLOSE]
    assert u_mid[PUCKER] > 0.4 and u_mid[PUCKER] > 4 * a_mid[PUCKER]
    assert at(0.05)[JAW] < 0.02 and at(sum(durs) - 0.05)[JAW] < 0.02  # rest in long silences
    assert f.min() >= 0.0 and f[:, :NUM_BLENDSHAPES].max() <= 1.0
    assert np.all(f[:, NUM_BLENDSHAPES:] == 0.0), "lip-sync never drives head or eye rotations"


def test_coarticulation_short_bilabial_still_closes_and_curves_are_smooth():
    # a 40 ms /p/ between open vowels: dominance must still close the lips
    f = lipsync(["_", "a", "p", "a", "_"], [0.2, 0.2, 0.04, 0.2, 0.2], fps=200, lang="en")
    close = f[:, CLOSE]
    t_p = int((0.4 + 0.02) * 200)
    assert close[t_p] > 0.12 and close[t_p] == pytest.approx(close[t_p - 10:t_p + 10].max(), abs=0.03)
    assert f[t_p, JAW] < 0.5 * f[int(0.3 * 200), JAW]
    assert np.abs(np.diff(f[:, JAW])).max() < 0.08, "no jumps between frames at 200 fps"
    # the mouth starts to move before the sound (anticipation)
    g = lipsync(["_", "a", "_"], [0.5, 0.3, 0.5], fps=100, lang="en")
    assert g[int(0.47 * 100), JAW] > 0.1 and g[int(0.47 * 100), JAW] > g[int(0.83 * 100), JAW]


def test_interspersed_blanks_do_not_shut_the_mouth():
    # Bert-VITS2 puts a blank "_" (0-2 frames) between phones: it must be transparent
    phones = ["_", "n", "_", "i", "_", "h", "_", "ao", "_"]
    frames = [20, 5, 1, 8, 1, 4, 2, 16, 20]
    f = lipsync(phones, frames, fps=60, lang="zh", frame_rate=44100 / 512)
    total = sum(frames) / (44100 / 512)
    assert f.shape[0] == math.ceil(total * 60 - 1e-6)
    t_ao = (sum(frames[:7]) + 4) / (44100 / 512)
    assert f[int(t_ao * 60), JAW] > 0.35
    t_blank = sum(frames[:6]) / (44100 / 512) + 0.5 * 2 / (44100 / 512)
    assert f[int(t_blank * 60), JAW] > 0.1


def test_frame_rates_agree_and_inputs_are_checked():
    phones, durs = ["_", "s", "i", "f", "o", "_"], [0.2, 0.1, 0.2, 0.1, 0.3, 0.2]
    f60 = lipsync(phones, durs, fps=60, lang="en")
    f30 = lipsync(phones, durs, fps=30, lang="en")
    assert f60.shape[0] == 66 and f30.shape[0] == 33
    assert np.abs(f60[1::2] - f30).max() < 0.12  # 30 fps centres lie between 60 fps centres
    assert np.corrcoef(f60[1::2, JAW], f30[:, JAW])[0, 1] > 0.97
    with pytest.raises(ValueError, match="durations"):
        lipsync(["a", "b"], [0.1])
    with pytest.raises(ValueError, match=">= 0"):
        lipsync(["a"], [-0.1])


def test_espeak_events_drive_a_plausible_face():
    from motion.espeak_tts import synthesize

    audio, sr, events = synthesize("Bob ate a big apple, oh wow.", voice="en")
    f = lipsync_events(events, fps=60)
    assert f.shape[0] == math.ceil(len(audio) / sr * 60 - 1e-6)
    # jaw opening follows loudness
    hop = sr // 60
    env = np.array([np.sqrt(np.mean(audio[i * hop:(i + 1) * hop] ** 2)) for i in range(f.shape[0])])
    assert np.corrcoef(env, f[:, JAW])[0, 1] > 0.4
    # "wow" rounds the lips more than "ate"
    spans = {p: (s, e) for p, s, e in events}
    w = [i for i, (p, s, e) in enumerate(events) if p == "w"]
    assert w, events
    t_w = events[w[-1]][1] + 0.02
    assert f[int(t_w * 60), PUCKER] > 0.3
    assert len(spans) > 5
