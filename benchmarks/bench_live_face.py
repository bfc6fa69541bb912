"""Live face (motion/face/live.py): latency, compute, memory and agreement with the offline face.

- latency, audio-in -> frame-out, fed in 10 ms chunks as a microphone gives them, at 16/44.1/48 kHz: for each frame,
  (the audio time when the chunk that completed it ended - the frame's centre) + the wall time of that ``feed`` call;
  p50/p95 over the frames (the first is the wait for audio, which ``lookahead_s`` bounds; the second is compute);
- compute per second of audio (``feed`` wall time / audio duration, the alive layer on);
- memory: RSS growth over ``--long-minutes`` of audio in 10 ms chunks (state is bounded: it should stay flat);
- agreement with the offline default face on held-out eSpeak NG voices (motion/face/synth_data.py's
  HELD_OUT_VOICES, never used in training): JawOpen Pearson r pooled over clips (live vs offline, both without the
  alive layer), and lip closures on /p b m/ (motion/face/evaluation.py) of each, and both against the rule targets;
- the same on the held-out Kokoro-82M speaker jf_tebukuro in English and Japanese (synth_data.NEURAL_HELD_OUT_VOICES:
  an engine the heads were trained on, a speaker they never heard; made offline by motion/face/neural_voices.py, the
  clips of benchmarks/bench_face_neural_voice.py with the same seed; the engine's phone durations time the /p b m/).

Usage: python benchmarks/bench_live_face.py [--clips 12] [--kokoro-clips 12] [--long-minutes 2] [--threads 1]
       [--head V_*.pth] [--no-latency] [--clip-cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_synthesis import cpu_name  # noqa: E402


def _rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def latency(audio44: np.ndarray, sr: int, head, chunk_s: float = 0.01) -> tuple[np.ndarray, float, float, float]:
    """(per-frame latency s, wall s per audio s, CPU s per audio s, lookahead_s) for ``audio44`` resampled to
    ``sr``. The CPU time is the process's (what the stream costs); the wall time also holds waits for a shared CPU."""
    import soxr

    from motion.face.live import LiveFace

    audio = audio44 if sr == 44100 else soxr.resample(audio44, 44100, sr, quality="HQ").astype(np.float32)
    live = LiveFace(sr, head=head)
    step = int(round(sr * chunk_s))
    lat, busy, k = [], 0.0, 0
    cpu0 = time.process_time()
    for i in range(0, len(audio), step):
        t0 = time.perf_counter()
        frames = live.feed(audio[i:i + step])
        dt = time.perf_counter() - t0
        busy += dt
        t_end = min(len(audio), i + step) / sr
        for _ in range(len(frames)):
            lat.append(t_end - (k + 0.5) / 60.0 + dt)
            k += 1
    t0 = time.perf_counter()
    live.close()
    busy += time.perf_counter() - t0
    dur = len(audio) / sr
    return np.asarray(lat), busy / dur, (time.process_time() - cpu0) / dur, live.lookahead_s


def held_out_clips(voices, count: int, seed: int, cache: str | None) -> list:
    """``synth_data.evaluation_utterances``, kept in ``cache`` (one npz per set) so that comparing heads does not make
    the clips again (Kokoro's take minutes); the key holds the clip-making code's hash, so a change makes them anew."""
    from bert_vits2.fileio import save_npz_atomic
    from motion.face import neural_voices, synth_data

    if not cache:
        return synth_data.evaluation_utterances(voices, count, seed)
    code = b"".join(Path(m.__file__).read_bytes() for m in (synth_data, neural_voices))
    key = hashlib.sha1(json.dumps([list(voices), count, seed]).encode() + code).hexdigest()[:16]
    path = Path(cache) / f"held-out-clips-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return [synth_data.Utterance(m["text"], m["voice"], z[f"audio{i}"], [tuple(e) for e in m["events"]],
                                         z[f"targets{i}"]) for i, m in enumerate(meta)]
    clips = synth_data.evaluation_utterances(voices, count, seed)
    arrays = {f"audio{i}": c.audio for i, c in enumerate(clips)} | {f"targets{i}": c.targets for i, c in enumerate(clips)}
    meta = [{"text": c.text, "voice": c.voice, "events": [list(e) for e in c.events]} for c in clips]
    Path(cache).mkdir(parents=True, exist_ok=True)
    save_npz_atomic(path, meta=np.array(json.dumps(meta)), **arrays)
    return clips


def agreement(clips, head, offline) -> list[str]:
    """The live face (``head``, 10 ms chunks at 44.1 kHz) against the offline default face on ``clips``, both without
    the alive layer: JawOpen r (pooled, per clip), /p b m/ closures of each, JawOpen r of each vs the rule targets."""
    from motion.arkit import INDEX
    from motion.face.evaluation import closure_rate, jaw_r
    from motion.face.live import LiveFace

    live_faces, off_faces = [], []
    for c in clips:
        live = LiveFace(44100, head=head, alive=False)
        step = 441
        face = np.concatenate([live.feed(c.audio[i:i + step]) for i in range(0, len(c.audio), step)] + [live.close()])
        live_faces.append(face)
        off_faces.append(offline.audio_to_frames(c.audio, 60.0, len(face)))
    jaw = INDEX["JawOpen"]
    r = float(np.corrcoef(np.concatenate([f[:, jaw] for f in live_faces]),
                          np.concatenate([f[:, jaw] for f in off_faces]))[0, 1])
    per = [float(np.corrcoef(a[:, jaw], b[:, jaw])[0, 1]) for a, b in zip(live_faces, off_faces)]
    ev = [c.events for c in clips]
    lc, total = closure_rate(live_faces, ev)
    oc, _ = closure_rate(off_faces, ev)
    r_live, _ = jaw_r(live_faces, [c.targets for c in clips])
    r_off, _ = jaw_r(off_faces, [c.targets for c in clips])
    return [f"JawOpen r live vs offline default face: pooled {r:.3f}, per clip {min(per):.3f}-{max(per):.3f}",
            f"bilabial closures (/p b m/): live {lc}/{total} ({lc / max(1, total):.1%}), offline {oc}/{total} "
            f"({oc / max(1, total):.1%})",
            f"JawOpen r vs the rule targets: live {r_live:.3f}, offline {r_off:.3f}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=12, help="held-out eSpeak NG clips (three sentences each)")
    ap.add_argument("--long-minutes", type=float, default=2.0, help="audio for the memory check (0: skip)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--head", default=None, help="a causal head V_*.pth (default: the shipped one)")
    ap.add_argument("--kokoro-clips", type=int, default=12,
                    help="held-out Kokoro jf_tebukuro clips, English and Japanese in turn (0: skip)")
    ap.add_argument("--kokoro-seed", type=int, default=99, help="as benchmarks/bench_face_neural_voice.py's --seed")
    ap.add_argument("--clip-cache", default=None, metavar="DIR",
                    help="keep the held-out clips here and reuse them on the next run (comparing heads)")
    ap.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                    help="measure latency and compute (--no-latency: agreement and memory only)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from motion.face.live import LiveFace
    from motion.face.model import ExpressionModel
    from motion.face.neural_voices import NeuralVoiceUnavailable
    from motion.face.synth_data import HELD_OUT_VOICES, NEURAL_HELD_OUT_VOICES

    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; torch threads {args.threads}; load average "
          f"{os.getloadavg()[0]:.1f} at start; live head {args.head or 'the shipped causal head'}")
    clips = held_out_clips(HELD_OUT_VOICES, args.clips, 17, args.clip_cache)
    minutes = sum(len(c.audio) for c in clips) / 44100 / 60
    print(f"held-out eSpeak NG voices {', '.join(HELD_OUT_VOICES)}: {len(clips)} clips, {minutes:.2f} min")

    speech = np.concatenate([c.audio for c in clips[:4]])
    for sr in (16000, 44100, 48000) if args.latency else ():
        lat, wall, cpu, look = latency(speech, sr, args.head)
        print(f"{sr / 1000:g} kHz, 10 ms chunks: latency p50 {np.percentile(lat, 50) * 1000:.1f} ms, p95 "
              f"{np.percentile(lat, 95) * 1000:.1f} ms, max {lat.max() * 1000:.1f} ms (lookahead_s "
              f"{look * 1000:.1f} ms); compute {cpu:.3f} CPU s ({wall:.3f} wall s) per s of audio; load average "
              f"{os.getloadavg()[0]:.1f}")

    offline = ExpressionModel.load()
    for line in agreement(clips, args.head, offline):
        print(line)
    if args.kokoro_clips > 0:
        t0 = time.perf_counter()
        try:
            kokoro = held_out_clips(NEURAL_HELD_OUT_VOICES, args.kokoro_clips, args.kokoro_seed, args.clip_cache)
        except NeuralVoiceUnavailable as err:
            print(f"Kokoro clips skipped: {err}")
        else:
            minutes = sum(len(c.audio) for c in kokoro) / 44100 / 60
            print(f"held-out Kokoro voices {', '.join(NEURAL_HELD_OUT_VOICES)}: {len(kokoro)} clips, {minutes:.2f} min "
                  f"(made in {time.perf_counter() - t0:.0f} s)")
            for line in agreement(kokoro, args.head, offline):
                print(line)

    if args.long_minutes > 0:
        live = LiveFace(48000, head=args.head)
        n = int(48000 * 60)
        one_min = np.tile(speech, int(math.ceil(n / len(speech))))[:n] if len(speech) else np.zeros(n, np.float32)
        import soxr

        one_min = soxr.resample(one_min, 44100, 48000, quality="HQ").astype(np.float32)[:n]
        rss = []
        t0, c0 = time.perf_counter(), time.process_time()
        for m in range(int(math.ceil(args.long_minutes))):
            for i in range(0, n, 480):
                live.feed(one_min[i:i + 480])
            rss.append(_rss_mb())
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(f"{len(rss)} min of 48 kHz audio in 10 ms chunks: RSS after each minute "
              f"{', '.join(f'{v:.0f}' for v in rss)} MB; compute {dc / (60 * len(rss)):.3f} CPU s "
              f"({dt / (60 * len(rss)):.3f} wall s) per s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
