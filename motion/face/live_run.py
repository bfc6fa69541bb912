"""The live face tool behind ``motion/live_face.py``: a microphone (or a file played as one) -> :class:`LiveFace` ->
Live Link, VMC and/or a take on disk, frame by frame as the audio arrives.

Latency is measured per frame as *send time - capture time of the audio at the frame's centre* (frame ``k`` is centred
at ``(k + 0.5) / 60`` s): the causal head's lookahead, plus the audio block the source delivers at once (10 ms for a
file, the sound card's block for a microphone), plus compute. It is logged once a second and kept in the take's JSON.
Ctrl-C (or SIGTERM) only asks the loop to stop (:class:`motion.livelink.recorder.StopSignals`: a handler that takes no
lock); the frames of the audio captured so far are finished and the take is written atomically before exit.
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from motion.arkit import NAMES
from motion.constants import FACE_FPS, LIVELINK_PORT, VMC_PORT

log = logging.getLogger(__name__)

FILE_BLOCK_S = 0.01
"""A file played as if live arrives in blocks of this many seconds."""
MIC_SAMPLE_RATE = 48000


class LiveTargetError(ValueError):
    """A Live Link / VMC address that cannot be reached (one line for the user)."""


def parse_host_port(text: str, default_port: int, option: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``HOST`` / ``PORT`` -> ``(host, port)`` (host default 127.0.0.1); ValueError names ``option``."""
    text = str(text).strip()
    host, port = "127.0.0.1", default_port
    try:
        if text.isdigit():
            port = int(text)
        elif text.count(":") == 1:
            host, p = text.split(":")
            port = int(p) if p else default_port
        elif text:
            host = text
    except ValueError:
        raise ValueError(f"{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:{default_port}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{option} {text!r}: port {port} is out of range (1-65535)")
    return host or "127.0.0.1", port


def check_udp_target(host: str, port: int, option: str, probe_s: float = 0.2) -> None:
    """Raise :class:`LiveTargetError` when ``host:port`` cannot be reached: an unknown host, no route, or (seen at
    once on this machine or the local network) nothing listening there. An empty datagram is the probe."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, UnicodeError) as err:
        raise LiveTargetError(f"{option} {host}:{port}: unknown host ({err}); give an IP address") from None
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(probe_s)
        try:
            s.connect(address)
            s.send(b"")
            s.recv(1)
        except socket.timeout:
            return  # nothing came back: the usual answer of a UDP receiver
        except ConnectionRefusedError:
            raise LiveTargetError(f"{option} {host}:{port}: nothing listens on that UDP port (connection refused); "
                                  f"start the receiving app first or fix the port") from None
        except OSError as err:
            raise LiveTargetError(f"{option} {host}:{port}: cannot be reached ({err.strerror or err}); "
                                  f"check the address") from None


# --- live faces inside a server process --------------------------------------------------------------------------------

_LIVE_POOL: ThreadPoolExecutor | None = None
_LIVE_LOCK = threading.Lock()


def live_executor() -> ThreadPoolExecutor:
    """The one thread that runs live faces' steps in a server or web UI process (:func:`in_live_thread`)."""
    global _LIVE_POOL
    with _LIVE_LOCK:
        if _LIVE_POOL is None:
            _LIVE_POOL = ThreadPoolExecutor(1, thread_name_prefix="bv2-live-face")
    return _LIVE_POOL


def _one_torch_thread(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """``fn`` with torch on one thread, the process's setting restored after.

    One thread is the fastest for 10 ms chunks; the process's two on a busy 2-core machine cost ~20x (measured at a
    load of 10: 6.8 ms vs 153 ms per chunk). ``torch.set_num_threads`` is process-wide (MKL's setting is global), so
    it is set for the step only: synthesis in other threads keeps the process's threads between steps."""
    import torch  # the live head runs on torch; only its thread setting is touched here

    prev = torch.get_num_threads()
    if prev != 1:
        torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        if prev != 1:
            torch.set_num_threads(prev)


async def in_live_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on :func:`live_executor`'s thread with torch on one thread, awaited (the event loop
    keeps serving; the synthesis pool is not used, so a busy pool never holds live frames back)."""
    import asyncio

    return await asyncio.wrap_future(live_executor().submit(_one_torch_thread, fn, args, kwargs))


# --- audio sources ----------------------------------------------------------------------------------------------------


class FileSource:
    """A file's audio in blocks of :data:`FILE_BLOCK_S`, delivered when each block would have been fully captured
    (``realtime``) or at once. Its clock is ``time.perf_counter``; sample ``i`` is captured at ``t0 + (i + 1) / sr``."""

    def __init__(self, path: str | Path, realtime: bool = True, block_s: float = FILE_BLOCK_S) -> None:
        from bert_vits2.audio import load_audio

        self.audio, self.sample_rate = load_audio(path, sample_rate=None)
        self.name = f"file {Path(path).name}"
        self.realtime = bool(realtime)
        self.block = max(1, int(round(block_s * self.sample_rate)))
        self.t0: float | None = None

    def now(self) -> float:
        return time.perf_counter()

    def captured_at(self, t_audio: float) -> float | None:
        """When the audio at ``t_audio`` s was captured, on :meth:`now`'s clock (None: not a live source)."""
        return None if self.t0 is None or not self.realtime else self.t0 + t_audio

    def blocks(self, stopped: Callable[[], bool]) -> Iterator[np.ndarray]:
        self.t0 = time.perf_counter()
        n = len(self.audio)
        for k, start in enumerate(range(0, n, self.block)):
            end = min(n, start + self.block)
            if self.realtime:
                due = self.t0 + end / self.sample_rate
                while (wait := due - time.perf_counter()) > 0:
                    if stopped():
                        return
                    time.sleep(min(wait, 0.05))
            if stopped():
                return
            yield self.audio[start:end]

    def stop(self) -> None:
        pass


class MicSource:
    """The microphone through :class:`motion.livelink.recorder.MicrophoneSource` (sounddevice); the clock is the
    input stream's own, so capture times are the sound card's."""

    def __init__(self, device: int | str | None, sample_rate: int) -> None:
        from motion.livelink.recorder import MicrophoneSource, NoInputDeviceError

        try:
            import sounddevice  # noqa: F401 - the optional [record] extra; PortAudio errors are said by check()
        except ImportError:
            raise NoInputDeviceError("the microphone needs the sounddevice package (pip install -e \".[record]\"); "
                                     "or use --wav FILE") from None
        except OSError:
            pass
        class _LowLatencyMic(MicrophoneSource):  # 10 ms blocks and PortAudio's low-latency setting
            def start(self) -> None:  # pragma: no cover - needs a sound card
                from motion.livelink.recorder import _sounddevice

                sd = _sounddevice()
                self.check()
                try:
                    self._stream = sd.InputStream(samplerate=self.sample_rate, channels=1, dtype="float32",
                                                  blocksize=max(64, self.sample_rate // 100), latency="low",
                                                  device=self.device, callback=self._callback)
                    self._stream.start()
                except sd.PortAudioError as err:
                    raise NoInputDeviceError(f"cannot open {self.device_name!r} at {self.sample_rate} Hz mono ({err}); "
                                             f"is another program using it? try --sample-rate 44100") from err

        self.mic = _LowLatencyMic(device, sample_rate)
        self.name = self.mic.check()  # no microphone: NoInputDeviceError, before anything is loaded
        self.sample_rate = int(sample_rate)
        self.realtime = True

    def now(self) -> float:
        return self.mic.clock()

    def captured_at(self, t_audio: float) -> float | None:
        first = self.mic.first_sample_time
        return None if first is None else first + t_audio

    def blocks(self, stopped: Callable[[], bool]) -> Iterator[np.ndarray]:  # pragma: no cover - needs a sound card
        self.mic.start()
        while not stopped():
            if self.mic.error is not None:
                raise self.mic.error
            got = self.mic.pop_blocks()
            if not got:
                time.sleep(0.002)
                continue
            yield from got

    def stop(self) -> None:  # pragma: no cover - needs a sound card
        self.mic.stop()


# --- outputs ----------------------------------------------------------------------------------------------------------


class Outputs:
    """Where the frames go: Live Link packets, VMC bundles (Perfect Sync + head/eye bones) and/or the take kept in
    memory until :meth:`write_take`."""

    def __init__(self, livelink: tuple[str, int] | None = None, vmc: tuple[str, int] | None = None,
                 out_dir: str | Path | None = None, subject: str | None = None, keep_take: bool = False) -> None:
        from motion.livelink.protocol import LiveLinkSender

        self.livelink = LiveLinkSender(livelink[0], livelink[1], **({"subject": subject} if subject else {})) \
            if livelink else None
        self.vmc = None
        if vmc:
            from motion.body.vmc import VmcSender

            self.vmc = VmcSender(vmc[0], vmc[1])
        self.out_dir = Path(out_dir) if out_dir else None
        self.keep = keep_take or self.out_dir is not None
        self.audio: list[np.ndarray] = []  # int16 blocks (half the memory of float32)
        self.frames: list[np.ndarray] = []
        self.sent = 0

    def audio_in(self, block: np.ndarray) -> None:
        if self.keep:
            self.audio.append((np.clip(np.nan_to_num(block), -1.0, 1.0) * 32767.0).astype(np.int16))

    def send(self, start: int, frames: np.ndarray) -> None:
        if not len(frames):
            return
        if self.livelink is not None:
            for i, row in enumerate(frames):
                self.livelink.send(row, start + i)
        if self.vmc is not None:
            from motion.body.vmc import make_clip

            clip = make_clip(face=frames, face_fps=FACE_FPS, fps=FACE_FPS)
            for i in range(clip.num_frames):
                self.vmc.send(clip.bundle(i, (start + i) / FACE_FPS))
        if self.keep:
            self.frames.append(np.asarray(frames, np.float32))
        self.sent += len(frames)

    def write_take(self, sample_rate: int, meta: dict[str, Any]) -> Path | None:
        """``<out>/<YYYY-mm-dd-HH-MM-SS>.wav`` + ``.npy`` ([T, 61]) + ``.csv`` (the app's) + ``.json``; each file
        atomic, never overwriting (a new stem when one exists). None without ``--out``."""
        if self.out_dir is None or not (self.audio or self.frames):
            return None
        from bert_vits2.audio import write_wav_pcm16
        from motion.face.outputs import write_curve_files
        from motion.livelink.take import new_take_stem

        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = new_take_stem(self.out_dir)
        audio = np.concatenate(self.audio).astype(np.float32) / 32767.0 if self.audio else np.zeros(0, np.float32)
        frames = np.concatenate(self.frames) if self.frames else np.zeros((0, len(NAMES)), np.float32)
        write_wav_pcm16(stem.with_name(stem.name + ".wav"), audio, sample_rate)
        info = {"sample_rate": int(sample_rate), "audio_seconds": len(audio) / float(sample_rate),
                "wav": stem.name + ".wav", **meta}
        write_curve_files(stem.with_name(stem.name + ".npy"), frames, FACE_FPS, info,
                          stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json"))
        return stem

    def close(self) -> None:
        if self.livelink is not None:
            self.livelink.close()
        if self.vmc is not None:
            self.vmc.close()


# --- the loop ---------------------------------------------------------------------------------------------------------


@dataclass
class LiveReport:
    """What a run did: frames sent, seconds of audio, the per-frame latencies (s; live sources only), compute."""

    frames: int = 0
    audio_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    compute_s: float = 0.0
    t0: float | None = None  # the source's clock at the first sample (file: perf_counter)
    lookahead_s: float = 0.0
    interrupted: bool = False
    take: Path | None = None

    def latency_ms(self) -> dict[str, float]:
        if not self.latencies:
            return {}
        x = np.asarray(self.latencies) * 1000.0
        return {"p50": round(float(np.percentile(x, 50)), 1), "p95": round(float(np.percentile(x, 95)), 1),
                "max": round(float(x.max()), 1)}

    def line(self, recent: list[float] | None = None) -> str:
        """A status line; ``recent``: the latencies (s) of the last second instead of the whole run's."""
        lat = LiveReport(latencies=recent).latency_ms() if recent is not None else self.latency_ms()
        text = f"{self.audio_s:6.1f} s of audio, {self.frames} frames"
        if lat:
            text += f", latency p50 {lat['p50']:.0f} ms p95 {lat['p95']:.0f} ms"
        if self.audio_s > 0:
            text += f", compute {100.0 * self.compute_s / self.audio_s:.0f}% of real time"
        return text


def stream_live(source: Any, live: Any, outputs: Outputs, stopped: Callable[[], bool],
                max_seconds: float | None = None, log_every_s: float = 1.0,
                on_start: Callable[[LiveReport], None] | None = None, report: LiveReport | None = None) -> LiveReport:
    """Feed ``source``'s blocks to ``live`` and hand the frames to ``outputs`` as they come; ``stopped()`` (polled
    between blocks) or ``max_seconds`` of audio end it, then the remaining frames are sent (``live.close()``).
    ``report`` (filled in as it goes) still holds what was done when an error ends the stream."""
    report = report if report is not None else LiveReport()
    report.lookahead_s = float(live.lookahead_s)
    sr = source.sample_rate
    samples, recent, next_log = 0, [], None

    def emit(frames: np.ndarray) -> None:
        outputs.send(report.frames, frames)
        sent_at = source.now()
        for k in range(report.frames, report.frames + len(frames)):
            cap = source.captured_at((k + 0.5) / FACE_FPS)
            if cap is not None and (k + 0.5) / FACE_FPS <= samples / sr:  # frames past the end: after close()
                recent.append(sent_at - cap)
        report.frames += len(frames)

    try:
        for block in source.blocks(stopped):
            if report.t0 is None:
                report.t0 = source.captured_at(0.0)
                if on_start is not None:
                    on_start(report)
            if max_seconds is not None and samples >= max_seconds * sr:
                break
            outputs.audio_in(block)
            samples += len(block)
            t = time.perf_counter()
            frames = live.feed(block)
            report.compute_s += time.perf_counter() - t
            emit(frames)
            report.audio_s = samples / sr
            now = time.monotonic()
            if next_log is None:
                next_log = now + log_every_s
            elif now >= next_log:
                report.latencies += recent
                log.info("live: %s", report.line(recent))
                recent, next_log = [], now + log_every_s
    finally:
        source.stop()
        t = time.perf_counter()
        emit(live.close())
        report.compute_s += time.perf_counter() - t
        report.latencies += recent
        report.audio_s = samples / sr
    return report


def open_source(args: argparse.Namespace) -> Any:
    if args.wav:
        return FileSource(args.wav, realtime=args.realtime)
    return MicSource(args.device, args.sample_rate or MIC_SAMPLE_RATE)


def run_live(args: argparse.Namespace, stopped: Callable[[], bool] | None = None,
             on_start: Callable[[LiveReport], None] | None = None) -> LiveReport:
    """``live_face.py``'s work: check every target, open the source and the head, stream, write the take.

    Errors the user can fix raise ``ValueError`` / :class:`motion.livelink.recorder.NoInputDeviceError` with one line;
    Ctrl-C / SIGTERM (main thread only) or ``stopped()`` end the stream and the take is still written."""
    from motion.face.live import LiveFace
    from motion.livelink.recorder import StopSignals

    if not (args.livelink or args.vmc or args.out):
        raise ValueError("nothing to send the face to: give --livelink HOST:PORT, --vmc HOST:PORT and/or --out DIR")
    ll = parse_host_port(args.livelink, LIVELINK_PORT, "--livelink") if args.livelink else None
    vmc = parse_host_port(args.vmc, VMC_PORT, "--vmc") if args.vmc else None
    for target, option in ((ll, "--livelink"), (vmc, "--vmc")):
        if target:
            check_udp_target(*target, option)
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out}: is a file, not a folder")
    source = open_source(args)
    kwargs: dict[str, Any] = {"alive": args.alive, "seed": args.seed, "emotion": getattr(args, "emotion", None),
                              "emotion_intensity": getattr(args, "emotion_intensity", 1.0)}
    if args.head:
        kwargs["head"] = args.head
    live = LiveFace(sample_rate=source.sample_rate, **kwargs)
    outputs = Outputs(ll, vmc, args.out, subject=args.subject)
    targets = ", ".join(x for x in (ll and f"Live Link {ll[0]}:{ll[1]}", vmc and f"VMC {vmc[0]}:{vmc[1]}",
                                    args.out and f"takes in {args.out}") if x)
    log.info("live face: %s at %d Hz -> %s (lookahead %.0f ms); Ctrl-C stops and keeps the take",
             source.name, source.sample_rate, targets, 1000 * live.lookahead_s)
    report = LiveReport()
    try:
        with StopSignals() as signals:
            def stop_now() -> bool:
                return signals.poll() or (stopped is not None and stopped())

            try:
                stream_live(source, live, outputs, stop_now, args.seconds, on_start=on_start, report=report)
            finally:  # an error (a microphone unplugged) still keeps what was captured
                report.interrupted = signals.requested
                meta = {"source": source.name, "lookahead_s": report.lookahead_s, "latency_ms": report.latency_ms(),
                        "compute_s": round(report.compute_s, 3), "realtime": bool(source.realtime),
                        "interrupted": report.interrupted}
                if live.emotion is not None:  # as wav_to_visemes.py's JSON says it
                    from motion.face.emotion import parse_emotion

                    meta["emotion"] = {"weights": parse_emotion(args.emotion), "intensity": args.emotion_intensity}
                report.take = outputs.write_take(source.sample_rate, meta)
    finally:
        outputs.close()
    log.info("live face done: %s%s", report.line(), f"; take {report.take}.wav/.npy/.csv/.json" if report.take else "")
    return report


def run(args: argparse.Namespace) -> int:
    """The CLI's one call: ``--list-devices`` or :func:`run_live`; 130 when stopped by Ctrl-C."""
    from motion.livelink.recorder import NoInputDeviceError, list_devices

    try:
        if args.list_devices:
            print(list_devices())
            return 0
        report = run_live(args)
    except NoInputDeviceError as err:  # no microphone, PortAudio missing, a busy device: one line (motion.cli)
        raise ValueError(str(err).replace("--audio-file WAV", "--wav FILE")) from None
    return 130 if report.interrupted else 0


__all__ = ["FILE_BLOCK_S", "FileSource", "in_live_thread", "live_executor", "LiveReport", "LiveTargetError", "MicSource", "Outputs", "check_udp_target",
           "parse_host_port", "run", "run_live", "stream_live"]
