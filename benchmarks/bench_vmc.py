"""Benchmark body conversion speed and VMC sender timing.

Prints:
- conversion speed (frames/s): HumanML3D positions → local rotations; resampling 20 → send fps + Unity conversion
  (``make_clip``); OSC bundle encoding;
- sender timing at ``--fps`` over ``--seconds`` to a local UDP receiver: the scheduler's lateness against each
  frame's deadline and the receive-side error (arrival - i / fps, constant latency removed), median and p99 in ms,
  and the drift.

    python benchmarks/bench_vmc.py [--seconds 30] [--fps 30] [--joints ../shared/reference/motion/...npy]
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path

import numpy as np

from motion.body.skeleton import check_joints, positions_to_rotations
from motion.body.vmc import make_clip, stream_clip

DEFAULT_JOINTS = Path(__file__).resolve().parents[1].parent / "shared/reference/motion/humanml3d_012314_joints.npy"


def _best_rate(fn, frames: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return frames / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--joints", type=Path, default=DEFAULT_JOINTS, help="HumanML3D joints .npy (20 fps)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the timed send")
    p.add_argument("--fps", type=float, default=30.0, help="send rate")
    args = p.parse_args()

    joints = check_joints(np.load(args.joints))
    src_frames = int(np.ceil(args.seconds * 20.0))
    tiled = np.concatenate([joints] * int(np.ceil(src_frames / len(joints))), axis=0)[:src_frames]
    face = np.random.default_rng(0).uniform(0, 1, size=(int(args.seconds * 60), 61)).astype(np.float32)

    positions_to_rotations(joints[:4])  # warm up imports
    rate = _best_rate(lambda: positions_to_rotations(tiled), len(tiled))
    print(f"positions -> rotations: {rate:,.0f} frames/s ({len(tiled)} frames of 22 joints)")
    motion = positions_to_rotations(tiled)
    clip = make_clip(motion, face, face_fps=60.0, fps=args.fps)
    rate = _best_rate(lambda: make_clip(motion, face, face_fps=60.0, fps=args.fps), clip.num_frames)
    print(f"resample to {args.fps:g} fps + Unity conversion (make_clip): {rate:,.0f} output frames/s")
    n_enc = min(300, clip.num_frames)
    rate = _best_rate(lambda: [clip.bundle(i, i / args.fps) for i in range(n_enc)], n_enc)
    print(f"OSC bundle encoding (22 bones + 52 shapes, {len(clip.bundle(0, 0.0))} bytes): {rate:,.0f} bundles/s")

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    arrivals: list[float] = []

    def receive() -> None:
        while len(arrivals) < clip.num_frames:
            try:
                sock.recvfrom(65536)
            except socket.timeout:
                if done.is_set():
                    return
                continue
            arrivals.append(time.perf_counter())

    done = threading.Event()
    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    print(f"sending {clip.num_frames} bundles at {args.fps:g} fps ({clip.duration_s:.1f} s) to 127.0.0.1 ...")
    stats = stream_clip(clip, "127.0.0.1", sock.getsockname()[1])
    done.set()
    thread.join(2.0)
    s = stats.summary_ms()
    print(f"scheduler lateness: median {s['median']:.3f} ms, p99 {s['p99']:.3f} ms, max {s['max']:.3f} ms")
    arr = np.asarray(arrivals)
    # Arrival offset against the ideal grid i / fps, minus its constant part (start-up + delivery latency).
    offset = arr - np.arange(len(arr)) / args.fps
    jitter = np.abs(offset - np.median(offset)) * 1000.0
    drift = np.polyfit(np.arange(len(arr)) / args.fps, offset, 1)[0] * clip.duration_s * 1000.0
    print(f"received {len(arr)}/{clip.num_frames}; arrival error vs the ideal grid (constant latency removed): "
          f"median {np.median(jitter):.3f} ms, p99 {np.percentile(jitter, 99):.3f} ms; "
          f"fitted drift over the clip {drift:+.3f} ms")

if __name__ == "__main__":
    main()
