"""Live Link timing and capacity on loopback.

1. Sender: stream --seconds (default 60) at 60 fps to a loopback receiver on the monotonic clock (no sound card needed)
   and print the timing error vs schedule (median, p99, max ms), plus the receiver-side arrival error.
2. Receiver: a separate process sends real packets at increasing rates; print the highest rate received with no loss.

    python benchmarks/bench_livelink.py [--seconds 60] [--rates 2000,5000,10000,20000,40000,80000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import threading
import time

import numpy as np

from motion.livelink import LiveLinkReceiver, LiveLinkSender, PacketTally, frames_to_packets


def bench_sender(seconds: float, fps: float = 60.0) -> None:
    n = int(round(seconds * fps))
    frames = np.random.default_rng(0).uniform(0, 1, (n, 61)).astype(np.float32)
    arrivals: list[float] = []
    with LiveLinkReceiver("127.0.0.1", 0) as rx:
        done = threading.Event()

        def listen():
            while True:
                d = rx.receive(0.2)
                if d is None:
                    if done.is_set():
                        return
                    continue
                arrivals.append(time.perf_counter())

        th = threading.Thread(target=listen, daemon=True)
        th.start()
        with LiveLinkSender(*rx.address, subject="bench") as tx:
            t0 = time.perf_counter()
            stats = tx.stream(frames, fps)
        done.set()
        th.join()
    s = stats.summary_ms()
    print(f"sender: {stats.sent} frames over {seconds:g} s at {fps:g} fps (monotonic clock, loopback)")
    print(f"  send time - schedule: median {s['median']:.3f} ms, p99 {s['p99']:.3f} ms, max {s['max']:.3f} ms")
    a = np.asarray(arrivals) - t0
    if len(a) == n:
        err = np.abs(a - np.arange(n) / fps) * 1000
        err -= err.min()  # constant start-up offset removed
        print(f"  receiver arrival - schedule: median {np.median(err):.3f} ms, p99 {np.percentile(err, 99):.3f} ms, "
              f"max {err.max():.3f} ms; last frame at {a[-1]:.4f} s (due {(n - 1) / fps:.4f} s)")
    else:
        print(f"  receiver got {len(a)} of {n} frames")


def _blast(port: int, rate: float, seconds: float, packets: list[bytes]) -> None:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(n):
        due = t0 + i / rate
        while time.perf_counter() < due:
            pass
        s.sendto(packets[i % len(packets)], ("127.0.0.1", port))


def bench_receiver(rates: list[float], seconds: float = 1.0) -> None:
    packets = frames_to_packets(np.random.default_rng(1).uniform(0, 1, (600, 61)), "A" * 36, "bench")
    best = 0.0
    print(f"receiver capacity (decode every packet into a PacketTally; sender in another process, {seconds:g} s per rate):")
    for rate in rates:
        tally = PacketTally()
        with LiveLinkReceiver("127.0.0.1", 0, recv_buffer=1 << 20) as rx:
            proc = mp.get_context("spawn").Process(target=_blast, args=(rx.address[1], rate, seconds, packets))
            proc.start()
            while True:
                d = rx.receive(0.5)
                if d is None:
                    if not proc.is_alive():
                        break
                    continue
                tally.add(d, time.perf_counter())
            proc.join()
        expected = int(rate * seconds)
        lost = expected - tally.received
        ok = lost == 0 and tally.invalid == 0
        print(f"  {rate:8.0f} pkt/s: received {tally.received}/{expected}, lost {lost}{'' if ok else '  <- loss'}")
        if ok:
            best = max(best, rate)
    print(f"  highest rate with no loss: {best:.0f} packets/s (the app sends 60/s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="length of the sender run")
    p.add_argument("--rates", default="2000,5000,10000,20000,40000,80000", help="receiver test rates (packets/s)")
    args = p.parse_args()
    print(f"CPU: {os.cpu_count()} cores visible (shared machine: other jobs may be running; figures are noisy)")
    bench_sender(args.seconds)
    bench_receiver([float(r) for r in args.rates.split(",")])


if __name__ == "__main__":
    main()
