"""The face-quality tests' clip cache (tests/face_clips.py): a cached set reads back exactly as it was made, a change of
settings makes a new entry, and a damaged file is made again instead of failing."""

from __future__ import annotations

import numpy as np
from face_clips import evaluation_clips, settings_key

from motion.face.synth_data import HELD_OUT_VOICES, evaluation_utterances


def test_cached_clips_equal_fresh_ones_and_damage_is_remade(tmp_path):
    voices = HELD_OUT_VOICES[:1]
    made = evaluation_clips(voices, 1, 5, tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    read = evaluation_clips(voices, 1, 5, tmp_path)
    fresh = evaluation_utterances(voices, 1, 5)
    a, b = read[0], made[0]
    assert a.text == b.text and a.voice == b.voice and a.events == b.events
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.targets, b.targets)
    # what evaluation_utterances makes now is the same clip, sample for sample (a fresh eSpeak NG engine per clip)
    assert fresh[0].text == a.text and fresh[0].events == a.events
    np.testing.assert_array_equal(fresh[0].audio, a.audio)
    assert settings_key(voices, 1, 5) != settings_key(voices, 1, 6) != settings_key(voices, 2, 5)
    files[0].write_bytes(b"PK\x03\x04 not a whole archive")
    again = evaluation_clips(voices, 1, 5, tmp_path)
    assert again[0].text == a.text
    np.testing.assert_array_equal(again[0].audio, a.audio)
    assert np.load(files[0])["meta"].size == 1  # rewritten whole
