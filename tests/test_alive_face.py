"""A face that looks alive without data (``motion.face.alive`` through ``FaceMaker``), measured on held-out synthetic
speech the default head was not trained on: eSpeak NG voices (``synth_data.HELD_OUT_VOICES``), a neural speaker never
used in training or validation, Kokoro's jf_tebukuro in English and Japanese (``synth_data.NEURAL_HELD_OUT_VOICES``),
and a neural voice of an engine never heard at all, Piper's ``en_US-joe-medium`` (``synth_data.OTHER_ENGINE_VOICES``);
the neural voices' phone timings come from their own duration predictors. The measures are those of
``motion.face.evaluation``.

Measured (printed with ``-s``): bilabial closures of the rule lip-sync and of the default head, blinks per minute and
the share of blinks in pauses, head rotation range and largest step per frame, JawOpen r against the rule targets.

CI measures small sets (``TEST_CLIPS``: the first clips of the seed-17 sets, made once per session and cached outside
the repository by ``tests/face_clips.py``); ``benchmarks/bench_face_quality.py`` measures the full 12-clip sets that
motion/assets/README.md reports and prints every figure asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest

from motion.arkit import INDEX, NUM_VALUES
from motion.face.alive import MAX_HEAD_DEG_PER_S, AliveOptions, make_alive, predicted_groups
from motion.face.evaluation import CLOSE, CLOSED, HEAD, JAW, blink_onsets, max_head_step_deg

FPS = 60.0


def _speechlike(seconds: float = 8.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Bursts of a pitched buzz (syllables) separated by pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = np.zeros_like(t)
    pos = 0.3
    while pos < seconds - 0.5:
        n_syl = int(rng.integers(3, 8))
        for _ in range(n_syl):
            dur = rng.uniform(0.12, 0.25)
            m = (t >= pos) & (t < pos + dur)
            env[m] = np.sin(np.pi * (t[m] - pos) / dur) * rng.uniform(0.3, 1.0)
            pos += dur + 0.03
        pos += rng.uniform(0.4, 0.9)
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    buzz = np.sign(np.sin(2 * np.pi * np.cumsum(f0) / sr))
    return (0.3 * env * buzz).astype(np.float32)


def test_alive_is_deterministic_switchable_and_keeps_what_the_source_predicts():
    audio = _speechlike()
    n = int(np.ceil(len(audio) / 16000 * FPS))
    flat = np.zeros((n, NUM_VALUES), np.float32)
    a = make_alive(flat, FPS, audio, 16000, AliveOptions(seed=1))
    b = make_alive(flat, FPS, audio, 16000, AliveOptions(seed=1))
    c = make_alive(flat, FPS, audio, 16000, AliveOptions(seed=2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.01
    assert predicted_groups(flat) == set() and predicted_groups(a) == {"blinks", "brows", "head", "eyes"}
    assert np.abs(a[:, :NUM_VALUES] - flat).max() > 0
    # switching one part off leaves the others as they were (one random stream per part)
    no_head = make_alive(flat, FPS, audio, 16000, AliveOptions(seed=1, head=False))
    assert np.all(no_head[:, HEAD] == 0)
    np.testing.assert_array_equal(no_head[:, INDEX["EyeBlinkLeft"]], a[:, INDEX["EyeBlinkLeft"]])
    # a source that moves its own head and blinks keeps them exactly
    src = flat.copy()
    src[:, INDEX["HeadYaw"]] = 5 / 180 * np.sin(np.arange(n) / 40)
    src[::120, INDEX["EyeBlinkLeft"]] = 1.0
    out = make_alive(src, FPS, audio, 16000, AliveOptions(seed=1))
    np.testing.assert_array_equal(out[:, HEAD], src[:, HEAD])
    np.testing.assert_array_equal(out[:, INDEX["EyeBlinkLeft"]], src[:, INDEX["EyeBlinkLeft"]])
    assert out[:, INDEX["BrowInnerUp"]].max() > 0.1  # the groups it does not predict are still filled


#: clips per group in CI: every eSpeak NG held-out voice once, Kokoro English twice and Japanese once, joe four times
#: (about 0.9, 0.6 and 0.5 minutes; 33, 27 and 26 bilabials); the first clips of the 12-clip seed-17 sets of
#: benchmarks/bench_face_quality.py. Kokoro is the costly engine (59 CPU seconds for the 52 s of speech of 4 clips, loaded
#: 2-core Xeon): its fourth clip (17 s of Japanese) was a third of that and is left to the benchmark.
TEST_CLIPS = {"espeak": 6, "kokoro": 6, "piper": 4}
#: bilabial closures asserted per group. The issue's target is 90 %; on the small CI sets the faces (FaceMaker(): the
#: head trained with speaker and channel augmentation, session 9, plus the phone recogniser's lip seals) were measured
#: at eSpeak NG 32/33 (97.0 %, clips each spoken by a fresh eSpeak NG engine; full 12-clip set 73/75), Kokoro 53/56
#: (94.6 %; the head alone 51/56, r 0.916; 6 clips, shared with test_live_face.py's Kokoro check; full 105/109), joe
#: 14-22/26 (Piper's waveform varies from synthesis to synthesis; full 53-59/73). eSpeak NG is held to its small-set
#: floor with a margin (80 %); Kokoro to the target; joe, short of it, keeps it under a strict xfail (_known_gap).
CLOSURE_FLOOR = {"espeak": 0.80, "kokoro": 0.90, "piper": 0.90}


@pytest.fixture(scope="session", params=["espeak", "kokoro", "piper"])
def held_out(request):
    """Held-out speech with its phone events and rule targets: eSpeak NG voices, Kokoro's unseen speaker, or Piper's
    joe (made once, then read from the cache of tests/face_clips.py)."""
    from face_clips import evaluation_clips

    from motion.face.synth_data import HELD_OUT_VOICES, NEURAL_HELD_OUT_VOICES, OTHER_ENGINE_VOICES

    voices = {"espeak": HELD_OUT_VOICES, "kokoro": NEURAL_HELD_OUT_VOICES, "piper": OTHER_ENGINE_VOICES}[request.param]
    return request.param, evaluation_clips(voices, TEST_CLIPS[request.param], seed=17)


@pytest.fixture(scope="session")
def faces(held_out):
    from motion.face.api import FaceMaker

    maker = FaceMaker()  # the defaults every tool uses: shipped default head + alive layer
    return [maker.for_audio(u.audio, 44100).frames for u in held_out[1]]


def test_rule_lipsync_seals_short_bilabials_and_nearly_closes_labiodentals():
    from motion.face.lipsync import lipsync_events

    # a 15 ms /m/ between two frame centres, and a 60 ms /f/, between open vowels
    for events, frames, limit in (([("a", 0.0, 0.3092), ("m", 0.3092, 0.3242), ("a", 0.3242, 0.6)], slice(18, 20), 0.0),
                                  ([("a", 0.0, 0.3), ("f", 0.3, 0.36), ("a", 0.36, 0.6)], slice(18, 22), 0.05)):
        sealed = lipsync_events(events, FPS, 36, lang="ipa")
        plain = lipsync_events(events, FPS, 36, lang="ipa", seal=False)
        gap = lambda f: f[frames, JAW] - f[frames, CLOSE]  # noqa: E731
        assert gap(sealed).max() <= limit + 1e-6
        assert gap(plain).max() > limit + 0.004  # the blend alone leaves the lips apart
        assert sealed[frames, JAW].min() > 0.05  # the jaw stays where coarticulation put it


def _known_gap(name: str, measure: str, request) -> None:
    """Where the shipped default head (trained on eSpeak NG and Kokoro-82M) is known to miss a target: on Piper's joe,
    an engine it never heard, JawOpen r is ~0.77 and the lips close on ~75 % of bilabials with the phone recogniser
    (full set 53-59/73 over four syntheses). motion/assets/README.md has the figures (full sets); on the small CI set
    joe measures r 0.730 and 14-22/26 closures. Strict: the test reports XPASS as a failure once a head meets the
    target there, so the mark must then go."""
    if (name, measure) in {("piper", "jaw"), ("piper", "closure")}:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"default head short of the {measure} target on {name}"))


@pytest.mark.slow
def test_bilabials_close_the_lips(held_out, faces, request):
    from motion.face.evaluation import closure_rate

    name, clips = held_out
    _known_gap(name, "closure", request)
    events = [u.events for u in clips]
    rule_closed, total = closure_rate([u.targets for u in clips], events)
    head_closed, _ = closure_rate(faces, events)
    ff_rule, ff_total = closure_rate([u.targets for u in clips], events, "FF", 0.05)
    ff_head, _ = closure_rate(faces, events, "FF", 0.05)
    print(f"\n{name}: bilabial closures (JawOpen - MouthClose <= {CLOSED}): rule lip-sync {rule_closed}/{total} "
          f"({rule_closed / total:.1%}), default mel head on audio (FaceMaker()) {head_closed}/{total} "
          f"({head_closed / total:.1%}); "
          f"labiodentals within 0.05: rule {ff_rule}/{ff_total}, head {ff_head}/{ff_total}")
    assert total >= 25  # enough bilabials for a rate (small sets: 26-33)
    assert rule_closed / total >= 0.9
    assert head_closed / total >= CLOSURE_FLOOR[name]


@pytest.mark.slow
def test_phone_recogniser_adds_closures_on_the_unseen_engine(held_out, faces):
    """Issue 25 on the engine the head never heard (Piper joe): the phone recogniser's seals (motion/face/bilabials.py)
    add closures the head alone misses. Piper's waveform varies from synthesis to synthesis (its noise cannot be
    seeded), and the head's own closures with it: on this set 16/26 and 8/26 in two syntheses, with the recogniser
    22/26 and 14/26 (+6 both times). On the 12-clip set of benchmarks/bench_face_quality.py, four syntheses: 53-59 of
    73 (72.6-80.8 %, target >= 75 %) against 31-40 for the head alone."""
    from motion.face.api import FaceMaker
    from motion.face.evaluation import closure_rate

    name, clips = held_out
    if name != "piper":
        pytest.skip("the other groups are held to 80-90 % by test_bilabials_close_the_lips")
    events = [u.events for u in clips]
    closed, total = closure_rate(faces, events)
    alone, _ = closure_rate([FaceMaker(bilabial_finder=False).for_audio(u.audio, 44100).frames for u in clips], events)
    print(f"\npiper: closures head alone {alone}/{total}, with the phone recogniser {closed}/{total}")
    assert closed - alone >= 0.15 * total, (alone, closed, total)


@pytest.mark.slow
def test_any_emotion_keeps_the_closures_on_held_out_voices(held_out, faces):
    """Issue 25: with any single emotion at 0.8 the lips still close on /p b m/ (>= 90 % on eSpeak NG and Kokoro's
    unseen speaker): the emotion is added last (FaceMaker._finish), here on the same faces."""
    from motion.face.emotion import EMOTIONS, apply_emotion, emotion_vector
    from motion.face.evaluation import closure_rate

    name, clips = held_out
    events = [u.events for u in clips]
    neutral, total = closure_rate(faces, events)
    for emotion in EMOTIONS:
        moved = [apply_emotion(f, emotion_vector({emotion: 0.8})) for f in faces]
        closed, _ = closure_rate(moved, events)
        assert closed >= neutral, (emotion, closed, neutral)
        if name != "piper":
            assert closed / total >= 0.9, (emotion, closed, total)


@pytest.mark.slow
def test_open_vowels_stay_open(held_out, faces):
    """Sealing the lips on the recogniser's finds must not close them on vowels: no more vowels closed than the rule
    lip-sync closes itself (coarticulation between bilabials) plus 3 % of the vowels."""
    from motion.face.evaluation import closed_on_open_vowels

    name, clips = held_out
    events = [u.events for u in clips]
    head, total = closed_on_open_vowels(faces, events)
    rule, _ = closed_on_open_vowels([u.targets for u in clips], events)
    print(f"\n{name}: open vowels with the lips closed: rule lip-sync {rule}/{total}, FaceMaker() {head}/{total}")
    assert total >= 60
    assert head <= rule + 0.03 * total


def _pause_mask(audio: np.ndarray, n: int, sr: int = 44100) -> np.ndarray:
    hop = sr / FPS
    rms = np.array([np.sqrt(np.mean(audio[int(i * hop): int((i + 1) * hop)] ** 2) + 1e-12) for i in range(n)])
    return rms < 0.02 * rms.max()


@pytest.mark.slow
def test_blinks_brows_and_head_motion_look_natural(held_out, faces):
    name, held_out = held_out
    minutes = sum(len(f) for f in faces) / FPS / 60
    blinks = in_pause = 0
    pause_frames = all_frames = 0
    max_step = 0.0
    spans = []
    for f, u in zip(faces, held_out):
        onsets = blink_onsets(f)
        pause = _pause_mask(u.audio, len(f))
        blinks += len(onsets)
        in_pause += int(sum(pause[max(0, i - 6): i + 7].any() for i in onsets))  # within 0.1 s of a pause
        pause_frames += int(pause.sum())
        all_frames += len(f)
        deg = f[:, HEAD] * 180
        spans.append(np.ptp(deg, axis=0))
        assert spans[-1].min() > 0.5, "head rotation must not be flat"
        max_step = max(max_step, max_head_step_deg(f))
        brow = f[:, INDEX["BrowInnerUp"]]
        assert brow.max() > 0.1  # brows rise on accents...
        raised = brow > 0.5 * brow.max()
        assert (~pause[raised]).mean() > 0.6  # ... mostly while speaking
    rate = blinks / minutes
    limit = MAX_HEAD_DEG_PER_S / FPS
    print(f"\n{name}: {minutes:.2f} min of held-out speech: {blinks} blinks = {rate:.1f}/min; {in_pause / blinks:.0%} of blinks "
          f"at a pause (pauses are {pause_frames / all_frames:.0%} of the time); largest head step "
          f"{max_step:.3f} deg/frame (limit {limit:.2f}); yaw/pitch/roll range per clip (mean) "
          f"{'/'.join(f'{x:.1f}' for x in np.mean(spans, axis=0))} deg")
    assert 10 <= rate <= 25
    assert in_pause / blinks > pause_frames / all_frames + 0.15  # blinks prefer pauses
    assert max_step <= limit + 1e-4


@pytest.mark.slow
def test_jaw_follows_the_rule_targets_on_unseen_voices(held_out, faces, request):
    from motion.face.evaluation import jaw_r

    name, clips = held_out
    _known_gap(name, "jaw", request)
    r, per_clip = jaw_r(faces, [u.targets for u in clips])
    print(f"\n{name}: JawOpen r vs rule targets on held-out voices: pooled {r:.3f}, per clip "
          f"{min(per_clip):.3f}-{max(per_clip):.3f} (mean {np.mean(per_clip):.3f})")
    assert r >= 0.85


def test_face_maker_switch_and_cli_options():
    from motion.face.api import FaceMaker
    from motion.wav_to_visemes import build_parser

    audio = _speechlike(4.0)
    maker = FaceMaker(use_default_head=True)
    on = maker.for_audio(audio, 16000).frames
    off = FaceMaker(alive=False, blink=False).for_audio(audio, 16000).frames
    again = FaceMaker().for_audio(audio, 16000).frames
    np.testing.assert_array_equal(on, again)  # deterministic
    # the default head's own rotations are small noise around 0 (never trained on any): replaced by smooth motion
    assert np.abs(on[:, HEAD] - off[:, HEAD]).max() > 0.5 / 180
    assert np.abs(np.diff(on[:, HEAD] * 180, axis=0)).max() <= MAX_HEAD_DEG_PER_S / FPS + 1e-4
    np.testing.assert_allclose(on[:, JAW], off[:, JAW], atol=1e-6)  # the alive layer never touches the mouth
    assert build_parser().parse_args(["x.wav", "--no-alive"]).alive is False
    assert build_parser().parse_args(["x.wav"]).alive is True


def test_segments_of_a_stream_join_up_when_given_their_start():
    """A stream made segment by segment (FaceMaker.for_audio per segment, as motion.face.streaming does) gets one
    continuous idle motion and a natural blink rate when each segment says where it starts."""
    sr, seg_s = 16000, 2.0
    audio = np.concatenate([_speechlike(30.0, sr, seed=k) for k in range(4)])  # 2 minutes
    seg = int(seg_s * sr)
    n_seg = int(seg_s * FPS)
    joined, naive = [], []
    for k in range(len(audio) // seg):
        flat = np.zeros((n_seg, NUM_VALUES), np.float32)
        part = audio[k * seg:(k + 1) * seg]
        joined.append(make_alive(flat, FPS, part, sr, AliveOptions(seed=5), start_s=k * seg_s))
        naive.append(make_alive(flat, FPS, part, sr, AliveOptions(seed=5)))
    joined, naive = np.concatenate(joined), np.concatenate(naive)
    assert max_head_step_deg(joined) <= MAX_HEAD_DEG_PER_S / FPS + 0.05  # no jump where segments meet
    assert max_head_step_deg(naive) > 2 * MAX_HEAD_DEG_PER_S / FPS  # (each segment restarting its motion jumps)
    bl = joined[:, INDEX["EyeBlinkLeft"]]
    rate = ((bl[1:] >= 0.5) & (bl[:-1] < 0.5)).sum() / (len(bl) / FPS / 60)
    assert 10 <= rate <= 25, rate
