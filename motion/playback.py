"""Clocks and a drift-free frame scheduler for streaming curves alongside audio.

Frames are scheduled from a clock (the audio output stream's own clock while audio plays, else a monotonic clock):
frame i is due at ``start + delay + i / fps``; the loop sleeps until each deadline instead of a fixed interval, so
long clips do not drift and a late frame never delays the following ones.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the clock's origin (the start of playback)."""


class MonotonicClock:
    """Wall clock from ``time.perf_counter``, origin at construction (used when no audio is played)."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._t0


class VirtualClock:
    """Simulated time: ``sleep`` advances ``now`` instantly (checks a schedule without waiting in real time)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float, spin_s: float = 5e-5) -> None:
        # A zero-length sleep is the scheduler's spin: let a little time pass as a real spin would.
        self.t += seconds if seconds > 0 else spin_s


class AudioPlayer:
    """Plays mono float32 audio with sounddevice and exposes the output stream's clock.

    ``now()`` is the stream time since playback started, corrected by the reported output latency, so frames
    line up with what is heard. Use as a context manager; ``start()`` begins playback. ``loop`` repeats the
    audio seamlessly until ``stop()``.
    """

    def __init__(
        self, audio: np.ndarray, sample_rate: int, device: int | str | None = None, loop: bool = False
    ) -> None:
        self.audio = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).reshape(-1))
        if self.audio.size == 0:
            raise ValueError("AudioPlayer needs at least one sample")
        self.sample_rate = int(sample_rate)
        self.device = device
        self.loop = loop
        self._stream = None
        self._pos = 0
        self._t0 = 0.0
        self._latency = 0.0
        self.finished = threading.Event()

    def _callback(self, outdata, frames, time_info, status) -> None:  # pragma: no cover - needs a sound card
        outdata[:, 0] = self.fill(frames)

    def fill(self, frames: int) -> np.ndarray:
        """The next ``frames`` samples (wrapping around when looping, silence after the end otherwise)."""
        n = len(self.audio)
        if self.loop:
            idx = (self._pos + np.arange(frames)) % n
            self._pos = (self._pos + frames) % n
            return self.audio[idx]
        out = np.zeros(frames, dtype=np.float32)
        chunk = self.audio[self._pos : self._pos + frames]
        out[: len(chunk)] = chunk
        self._pos += frames
        if self._pos >= n:
            self.finished.set()
        return out

    def start(self) -> "AudioPlayer":
        import sounddevice as sd  # sounddevice: optional [record] extra, needs libportaudio

        try:
            self._stream = sd.OutputStream(
                samplerate=self.sample_rate, channels=1, dtype="float32", callback=self._callback, device=self.device
            )
            self._stream.start()
        except Exception as err:
            raise RuntimeError(
                f"could not open an audio output device ({err}); use --no-audio to stream without sound"
            ) from err
        self._latency = float(self._stream.latency or 0.0)
        self._t0 = self._stream.time
        return self

    def now(self) -> float:
        if self._stream is None:
            raise RuntimeError("AudioPlayer.now() called before start()")
        return self._stream.time - self._t0 - self._latency

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def __enter__(self) -> "AudioPlayer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class ScheduleStats:
    """Timing of a schedule run: per-frame lateness (actual - scheduled, seconds)."""

    sent: int = 0
    lateness: list[float] = field(default_factory=list)

    def summary_ms(self) -> dict[str, float]:
        if not self.lateness:
            return {"median": 0.0, "p99": 0.0, "max": 0.0}
        arr = np.abs(np.asarray(self.lateness)) * 1000.0
        return {"median": float(np.median(arr)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}


def run_schedule(
    num_frames: int,
    fps: float,
    send: Callable[[int, float], None],
    clock: Clock | None = None,
    delay_s: float = 0.0,
    loop: bool = False,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
    period_s: float | None = None,
) -> ScheduleStats:
    """Call ``send(i, t_due)`` for frame i at ``delay_s + i / fps`` on ``clock``; ``loop`` repeats from frame 0.

    Frames that are already late are sent at once (never skipped, never bunched behind a sleep). ``stop`` ends
    early. ``period_s`` is the loop length (default ``num_frames / fps``; pass the audio's length when it loops
    with the frames). The returned stats hold each frame's lateness against its deadline.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    clock = clock or MonotonicClock()
    stats = ScheduleStats()
    base = delay_s
    period = num_frames / fps if period_s is None else float(period_s)
    if num_frames <= 0:
        return stats
    while True:
        for i in range(num_frames):
            due = base + i / fps
            while True:
                if stop is not None and stop.is_set():
                    return stats
                wait = due - clock.now()
                if wait <= 0:
                    break
                # Sleep most of the wait, then spin briefly: sleep() overshoots by ~0.1-1 ms.
                sleep(wait - 0.0015 if wait > 0.002 else 0.0)
            stats.lateness.append(clock.now() - due)
            send(i, due)
            stats.sent += 1
        if not loop:
            return stats
        base += period
