"""The phone recogniser's lip seals on the default head's faces (motion/face/bilabials.py): seals only where the head's
lips are nearly closed, never moves the jaw, and gives the same face whether the audio comes whole or in blocks."""

from __future__ import annotations

import numpy as np
import pytest

from motion.arkit import INDEX, NUM_VALUES
from motion.face.bilabials import MAX_GAP, seal_bilabials

JAW, CLOSE = INDEX["JawOpen"], INDEX["MouthClose"]
FPS = 60.0


def _face(gaps: list[float]) -> np.ndarray:
    f = np.zeros((len(gaps), NUM_VALUES), np.float32)
    f[:, JAW] = 0.4
    f[:, CLOSE] = 0.4 - np.asarray(gaps, np.float32)
    return f


def test_seal_closes_found_spans_where_the_head_nearly_closes_and_nowhere_else():
    gaps = [0.4] * 60
    gaps[10:14] = [0.3, 0.15, 0.12, 0.3]  # the head nearly closes: a find here seals
    gaps[40:44] = [0.4, 0.35, 0.3, 0.4]  # the head's lips are well apart: a find here is ignored
    face = _face(gaps)
    out = seal_bilabials(face, FPS, [(10 / FPS, 14 / FPS), (40 / FPS, 44 / FPS)])
    gap = out[:, JAW] - out[:, CLOSE]
    assert gap[11:14].max() <= 1e-6  # the span's middle (25 ms each side of its centre) is sealed
    assert np.array_equal(out[40:44], face[40:44]) and np.array_equal(out[:9], face[:9])
    assert np.array_equal(out[:, JAW], face[:, JAW])  # the jaw never moves: JawOpen r is unchanged
    assert np.array_equal(np.delete(out, CLOSE, axis=1), np.delete(face, CLOSE, axis=1))
    # the gap threshold is what decides: just above it, nothing happens
    above = _face([MAX_GAP + 0.01] * 20)
    assert np.array_equal(seal_bilabials(above, FPS, [(0.1, 0.2)]), above)
    # a span shorter than a frame seals its nearest frame
    short = seal_bilabials(_face([0.1] * 20), FPS, [(0.1, 0.105)])
    assert (short[:, JAW] - short[:, CLOSE]).min() <= 1e-6


@pytest.fixture(scope="module")
def joe_clips():
    from face_clips import evaluation_clips

    from motion.face.synth_data import OTHER_ENGINE_VOICES

    return evaluation_clips(OTHER_ENGINE_VOICES, 4, seed=17)


@pytest.mark.slow
def test_finder_hears_bilabials_and_gives_the_same_face_whole_or_in_blocks(joe_clips):
    pytest.importorskip("pocketsphinx")
    from motion.face.api import FaceMaker
    from motion.face.bilabials import find_bilabials
    from motion.face.evaluation import phone_visemes

    hits = total = 0  # pooled over the clips: Piper's waveform varies from synthesis to synthesis (17/26 in two)
    for clip in joe_clips:
        heard = find_bilabials(clip.audio, 44100)
        refs = [(t0, t1) for p, t0, t1 in clip.events if "PP" in phone_visemes(p, "ipa")]
        hits += sum(any(s < t1 + 0.04 and e > t0 - 0.04 for s, e in heard) for t0, t1 in refs)
        total += len(refs)
    assert hits >= 0.6 * total, (hits, total)
    audio = joe_clips[0].audio
    found = find_bilabials(audio, 44100)
    assert find_bilabials(audio, 44100) == found  # the decoder keeps no state from one clip to the next
    from motion.face.bilabials import borrowed_finder

    with pytest.raises(RuntimeError), borrowed_finder() as finder:  # a request that fails mid-utterance...
        finder.push(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
        raise RuntimeError("upload broke")
    assert find_bilabials(audio, 44100) == found  # ...leaves nothing behind in the pooled decoder
    maker = FaceMaker()
    whole = maker.for_audio(audio, 44100).frames
    blocks = maker.for_audio_blocks([audio[i:i + 7000] for i in range(0, len(audio), 7000)]).frames
    np.testing.assert_array_equal(blocks, whole)
    head_only = FaceMaker(bilabial_finder=False).for_audio(audio, 44100).frames
    assert not np.array_equal(head_only[:, CLOSE], whole[:, CLOSE])  # the finder did seal something
    np.testing.assert_array_equal(head_only[:, JAW], whole[:, JAW])


def test_results_known_to_be_chinese_or_japanese_do_without_the_finder(monkeypatch):
    """The recogniser's model is English: a synthesis result's face made from its audio uses it when the result has
    English (or eSpeak NG's IPA, language unknown) phones, not when they are all Chinese/Japanese."""
    import dataclasses

    from motion.demo_voice import DemoVoice
    from motion.face import bilabials
    from motion.face.api import FaceMaker

    calls = []
    monkeypatch.setattr(bilabials, "available", lambda: True)
    monkeypatch.setattr(bilabials, "find_bilabials", lambda audio, sr: calls.append(len(audio)) or [])
    result = DemoVoice().synthesize("Maybe Bob will buy a map.", None, "EN")
    maker = FaceMaker(result_source="audio", alive=False)
    maker.for_result(result)
    assert len(calls) == 1  # IPA phones: the language is not known, the finder runs
    maker.for_result(dataclasses.replace(result, phone_langs=["en"] * len(result.phones)))
    assert len(calls) == 2
    for langs in (["zh"], ["ja"], ["zh", "ja"]):
        maker.for_result(dataclasses.replace(result, phone_langs=[langs[i % len(langs)] for i in
                                                                   range(len(result.phones))]))
    assert len(calls) == 2
    FaceMaker(result_source="audio", alive=False, bilabial_finder=False).for_result(result)
    assert len(calls) == 2
