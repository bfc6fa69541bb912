"""eSpeak NG through ctypes: audio, sample rate, phoneme events that cover the clip and match its energy."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from motion.espeak_tts import SILENCE, EspeakError, reset_engine, synthesize


def _rms(audio: np.ndarray, sr: int, t0: float, t1: float) -> float:
    seg = audio[int(t0 * sr):int(t1 * sr)]
    return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if len(seg) else 0.0


@pytest.mark.parametrize("voice,text", [
    ("en", "Maybe we should open the window."),
    ("zh", "今天天气很好，我们去公园。"),
    ("ja", "こんにちは、げんきですか。"),
])
def test_synthesize_returns_audio_and_contiguous_phone_events(voice, text):
    audio, sr, events = synthesize(text, voice=voice)
    assert sr == 22050
    assert audio.dtype == np.float32 and audio.ndim == 1
    dur = len(audio) / sr
    assert 0.8 < dur < 10.0
    assert 0.05 < np.abs(audio).max() <= 1.0
    assert len([e for e in events if e[0] != SILENCE]) >= 8
    # spans are ordered, contiguous, positive and cover the whole clip
    assert events[0][1] == pytest.approx(0.0, abs=1e-9)
    assert events[-1][2] == pytest.approx(dur, abs=1e-6)
    for (_, s0, e0), (_, s1, e1) in zip(events, events[1:]):
        assert e0 == pytest.approx(s1, abs=1e-9)
        assert e1 > s1 >= s0
    assert not any(p.startswith("(") for p, _, _ in events), "language-switch marks must not be phones"


def test_phone_events_follow_the_audio_energy():
    audio, sr, events = synthesize("Hello there. How are you today? Fine, thank you.", voice="en")
    speech = [_rms(audio, sr, s, e) for p, s, e in events if p != SILENCE and e - s > 0.04]
    pauses = [_rms(audio, sr, s + 0.02, e - 0.02) for p, s, e in events if p == SILENCE and e - s > 0.15]
    assert pauses, "sentence breaks should give long silence events"
    assert np.median(speech) > 5 * max(np.median(pauses), 1e-5)


def test_rate_and_pitch_change_the_speech():
    slow, sr, _ = synthesize("one two three four five six", voice="en", rate=120)
    fast, _, _ = synthesize("one two three four five six", voice="en", rate=300)
    assert len(slow) > 1.6 * len(fast)
    low, _, _ = synthesize("aaaa", voice="en", pitch=10)
    high, _, _ = synthesize("aaaa", voice="en", pitch=90)
    assert not np.array_equal(low[: min(len(low), len(high))], high[: min(len(low), len(high))])


def test_repeatable_and_thread_safe():
    # eSpeak NG's last few samples vary between calls; phones and timings must not, even from parallel threads
    ref = synthesize("The quick brown fox.", voice="en")
    results = [None] * 4

    def work(i):
        results[i] = synthesize("The quick brown fox.", voice="en")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for audio, sr, events in results:
        assert abs(len(audio) - len(ref[0])) < 100
        assert [e[0] for e in events] == [e[0] for e in ref[2]]
        assert np.allclose([e[1] for e in events], [e[1] for e in ref[2]], atol=0.003)
        env = [[_rms(a, sr, t, t + 0.01) for t in np.arange(0, 1.3, 0.01)] for a in (audio, ref[0])]
        assert np.corrcoef(env[0], env[1])[0, 1] > 0.95  # same speech (the waveform's fine detail varies)


def test_reset_engine_makes_a_request_independent_of_earlier_ones():
    """Without a reset the same request comes out different after any other one (eSpeak NG's hidden state); after
    reset_engine it is sample for sample what a fresh engine made."""
    def speak():
        return synthesize("Numeral question, contain between.", voice="en-us+m7", rate=150, pitch=40)

    reset_engine()
    first = speak()
    again = speak()
    assert not (len(again[0]) == len(first[0]) and np.array_equal(again[0], first[0])), "eSpeak NG became stateless?"
    synthesize("Something else entirely.", voice="ja")
    reset_engine()
    fresh = speak()
    np.testing.assert_array_equal(fresh[0], first[0])
    assert fresh[2] == first[2]


def test_bad_input_gives_clear_errors():
    with pytest.raises(EspeakError, match="no voice"):
        synthesize("hello", voice="xx-not-a-voice")
    with pytest.raises(ValueError, match="empty"):
        synthesize("   ")
