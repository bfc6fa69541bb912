"""Expression benchmarks (CPU): inference speed of both heads and agreement figures of the rule-based lip-sync.

    python benchmarks/bench_expression.py [--seconds 20] [--threads 1] [--clips 10]

Prints: seconds of audio processed per second for the mel path (log-mel + shipped default head) and the z path
(full-size v2.3 posterior encoder + full-size z head, with and without its transformer; random weights, same cost);
rule-based lip-sync speed; the lip-sync's agreement with the synthetic targets when driven by quantised
Bert-VITS2-style durations (86.13 fps frames) and by jittered timings; the default head's agreement on unseen voices.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

SHAPES = ("JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthSmileLeft", "MouthLowerDownLeft")


def _speed(fn, audio_s: float, repeat: int = 3) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return audio_s * repeat / (time.perf_counter() - t)


def _agreement(pred: np.ndarray, tgt: np.ndarray) -> str:
    from motion.arkit import INDEX

    parts = []
    for n in SHAPES:
        i = INDEX[n]
        r = np.corrcoef(pred[:, i], tgt[:, i])[0, 1] if pred[:, i].std() > 1e-8 and tgt[:, i].std() > 1e-8 else float("nan")
        parts.append(f"{n} r={r:.3f} MAE={np.abs(pred[:, i] - tgt[:, i]).mean():.4f}")
    return "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the test audio")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clips", type=int, default=10, help="utterances for the agreement figures")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from bert_vits2 import models
    from motion.face.features import PosteriorEncoder, SpecParams, log_mel
    from motion.face.heads import ZHead, predict
    from motion.face.lipsync import lipsync, lipsync_events
    from motion.face.model import ExpressionModel
    from motion.face.synth_data import HELD_OUT_VOICES, make_utterance, random_sentence, random_utterance

    rng = np.random.default_rng(0)
    pieces, total = [], 0.0
    while total < args.seconds:
        u = make_utterance(random_sentence("en", rng, 8, 14), "en")
        pieces.append(u.audio)
        total += len(u.audio) / 44100
    audio = np.concatenate(pieces)[: int(args.seconds * 44100)]
    dur = len(audio) / 44100
    print(f"threads {args.threads}, test audio {dur:.1f} s")

    mel_model = ExpressionModel.load()
    print(f"mel path (log-mel + default head, {sum(p.numel() for p in mel_model.head.parameters())} params): "
          f"{_speed(lambda: mel_model.audio_to_frames(audio), dur):.1f} s audio / s")
    feats = log_mel(audio)
    print(f"  mel features alone: {_speed(lambda: log_mel(audio), dur):.1f} s/s; head alone: "
          f"{_speed(lambda: predict(mel_model.head, feats), dur):.1f} s/s")

    enc = models.PosteriorEncoder(1025, 192, 192, 5, 1, 16, gin_channels=512).eval()
    post = PosteriorEncoder(enc, SpecParams())
    z = post.encode(audio)
    print(f"posterior encoder (full v2.3 size): {_speed(lambda: post.encode(audio), dur, 2):.1f} s/s")
    for tr in (True, False):
        head = ZHead(use_transformer=tr).eval()
        n = sum(p.numel() for p in head.parameters())
        s_head = _speed(lambda: predict(head, z), dur)
        s_all = _speed(lambda: predict(head, post.encode(audio)), dur, 2)
        print(f"z head ({'with' if tr else 'without'} transformer, {n / 1e6:.2f} M params): head alone {s_head:.1f} s/s, "
              f"audio -> enc_q -> head {s_all:.1f} s/s")

    # rule-based lip-sync
    u = make_utterance(random_sentence("en", rng, 10, 12), "en")
    reps = max(1, int(math.ceil(args.seconds / (len(u.audio) / 44100))))
    events = []
    offset = 0.0
    for _ in range(reps):
        events += [(p, s + offset, e + offset) for p, s, e in u.events]
        offset += len(u.audio) / 44100
    print(f"rule-based lip-sync: {_speed(lambda: lipsync_events(events, 60), offset):.0f} s of speech / s")

    quant, jit, head_pred, tgts = [], [], [], []
    rng = np.random.default_rng(1)
    for _ in range(args.clips):
        u = random_utterance(rng, HELD_OUT_VOICES, augmented=False)
        n = len(u.targets)
        phones = [p for p, _, _ in u.events]
        frames = np.round(np.array([e - s for _, s, e in u.events]) * 44100 / 512)  # BV2-like integer frames
        quant.append(lipsync(phones, frames, 60, lang="ipa", frame_rate=44100 / 512, num_frames=n))
        noisy = [(p, s + d, e + d2) for (p, s, e), d, d2 in zip(u.events, rng.normal(0, 0.03, len(u.events)),
                                                                  np.r_[rng.normal(0, 0.03, len(u.events) - 1), 0])]
        noisy = [(p, s, max(e, s)) for p, s, e in noisy]
        jit.append(lipsync_events(noisy, 60, num_frames=n))
        head_pred.append(mel_model.audio_to_frames(u.audio, num_frames=n))
        tgts.append(u.targets)
    tgt = np.concatenate(tgts)
    print(f"agreement with the synthetic targets ({args.clips} unseen utterances, held-out voices):")
    print("  lip-sync from durations quantised to 86.13 fps frames: " + _agreement(np.concatenate(quant), tgt))
    print("  lip-sync with 30 ms timing jitter:                    " + _agreement(np.concatenate(jit), tgt))
    print("  default mel head (audio only):                        " + _agreement(np.concatenate(head_pred), tgt))


if __name__ == "__main__":
    main()
