"""The recorder behind ``motion/record.py``: microphone (or a file played as one) + the Live Link Face app's UDP
stream into one take in ``records/`` (see :mod:`motion.livelink.take`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from motion.constants import TTS_SAMPLE_RATE as SAMPLE_RATE
from motion.livelink import LiveLinkReceiver, PortInUseError, ReceiverThread
from motion.livelink.take import Take, save_take

log = logging.getLogger(__name__)


BLOCK = 1024
NO_PACKET_HINT_S = 3.0


class NoInputDeviceError(RuntimeError):
    """There is no microphone to record from."""


# --- audio sources: a microphone, or a file played in real time in its place ---


class AudioSource:
    """Collects mono float32 blocks; ``clock()`` is the time base for packet arrivals, ``first_sample_time`` on it."""

    sample_rate: int = SAMPLE_RATE
    device_name: str = ""

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.first_sample_time: float | None = None
        self.samples = 0
        self.level = 0.0  # RMS of the latest block
        self.error: BaseException | None = None

    def _push(self, block: np.ndarray, first_sample_time: float) -> None:
        with self._lock:
            if self.first_sample_time is None:
                self.first_sample_time = first_sample_time
            self._blocks.append(block)
            self.samples += len(block)
        self.level = float(np.sqrt(np.mean(block * block))) if len(block) else 0.0

    def audio(self) -> np.ndarray:
        with self._lock:
            return np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.float32)

    def seconds(self) -> float:
        return self.samples / self.sample_rate

    def clock(self) -> float:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as err:  # PortAudio missing
        raise NoInputDeviceError(
            f"the audio library is unavailable ({err}); install PortAudio (apt-get install libportaudio2) "
            f"or use --audio-file WAV"
        ) from err
    return sd


def list_devices() -> str:
    """Text listing of the input devices (``--list-devices``)."""
    sd = _sounddevice()
    lines = []
    default_in = sd.default.device[0] if isinstance(sd.default.device, (list, tuple)) else sd.default.device
    for i, d in enumerate(sd.query_devices()):
        if d["max_input_channels"] > 0:
            mark = "*" if i == default_in else " "
            lines.append(f"{mark} {i:3d}  {d['name']}  ({d['max_input_channels']} in, {d['default_samplerate']:.0f} Hz)")
    return "\n".join(lines) if lines else "no audio input devices found"


class MicrophoneSource(AudioSource):
    """Records the microphone (sounddevice); the clock is the input stream's own time, sample-accurate."""

    def __init__(self, device: int | str | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.device = device
        self._stream = None

    def _callback(self, indata, frames, time_info, status) -> None:  # pragma: no cover - needs a sound card
        t_first = time_info.inputBufferAdcTime or (time_info.currentTime - frames / self.sample_rate)
        self._push(indata[:, 0].copy(), t_first)

    def check(self) -> str:
        """The input device's name; raises :class:`NoInputDeviceError` (saying what to do) when there is none."""
        sd = _sounddevice()
        try:
            info = sd.query_devices(self.device, kind="input")
        except (ValueError, sd.PortAudioError) as err:
            raise NoInputDeviceError(
                f"no audio input device{'' if self.device is None else f' {self.device!r}'} ({err}). Plug in a "
                f"microphone, pick one with --device (see --list-devices), or use --audio-file WAV"
            ) from err
        self.device_name = str(info["name"])
        return self.device_name

    def start(self) -> None:  # pragma: no cover - needs a sound card
        sd = _sounddevice()
        self.check()
        try:
            self._stream = sd.InputStream(
                samplerate=self.sample_rate, channels=1, dtype="float32", blocksize=BLOCK, device=self.device,
                callback=self._callback,
            )
            self._stream.start()
        except sd.PortAudioError as err:
            raise NoInputDeviceError(f"cannot open {self.device_name!r} at {self.sample_rate} Hz mono ({err})") from err

    def clock(self) -> float:  # pragma: no cover - needs a sound card
        return self._stream.time if self._stream is not None else time.perf_counter()

    def stop(self) -> None:  # pragma: no cover - needs a sound card
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


class FileAudioSource(AudioSource):
    """Plays a file in place of the microphone: blocks arrive in real time as a live input would, then silence."""

    def __init__(self, path: str | Path, sample_rate: int = SAMPLE_RATE, block: int = BLOCK) -> None:
        from bert_vits2.audio import load_audio

        super().__init__()
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.data, _ = load_audio(self.path, self.sample_rate)
        self.device_name = f"file:{self.path.name}"
        self.block = block
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def file_seconds(self) -> float:
        return len(self.data) / self.sample_rate

    def clock(self) -> float:
        return time.perf_counter()

    def _run(self) -> None:
        t0 = time.perf_counter()
        k = 0
        while not self._stop.is_set():
            due = t0 + (k + 1) * self.block / self.sample_rate  # a block is delivered once fully "captured"
            wait = due - time.perf_counter()
            if wait > 0:
                self._stop.wait(wait)
                continue
            chunk = self.data[k * self.block : (k + 1) * self.block]
            if len(chunk) < self.block:
                chunk = np.concatenate([chunk, np.zeros(self.block - len(chunk), np.float32)])
            self._push(chunk, t0)
            k += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="file-audio")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


# --- one take ---


@dataclass
class TakeResult:
    stem: Path | None
    take: Take
    interrupted: bool = False
    error: BaseException | None = None


def local_ips() -> list[str]:
    """This machine's LAN addresses (what to type into the app's Live Link target)."""
    ips = set()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            ips.add(s.getsockname()[0])
    except OSError:
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            ips.add(info[4][0])
    except OSError:
        pass
    return sorted(ip for ip in ips if not ip.startswith("127."))


def no_packet_hint(address: tuple[str, int]) -> str:
    host, port = address
    ips = ", ".join(local_ips()) or "this machine's IP"
    return (
        f"no Live Link packets after {NO_PACKET_HINT_S:.0f} s on {host}:{port}. Check: in the Live Link Face app, "
        f"Settings > Live Link > Targets holds {ips} port {port}, and the app shows it is streaming (a face is in view); "
        f"phone and computer are on the same network; the firewall lets UDP {port} in "
        f"(Linux: sudo ufw allow {port}/udp; Windows: allow Python through Windows Defender Firewall)."
    )


def build_take(source: AudioSource, tally, seconds: float | None, address, interrupted: bool) -> Take:
    """Turn what a source and a receiver captured into a :class:`Take` (arrival times on the audio's axis)."""
    audio = source.audio()
    if seconds is not None:
        audio = audio[: int(round(seconds * source.sample_rate))]
    t_first = source.first_sample_time
    frames = tally.frames
    arr = np.stack([f.frame.values for f in frames]).astype(np.float32) if frames else np.zeros((0, 61), np.float32)
    arrival = np.array([f.arrival for f in frames], dtype=np.float64)
    times = arrival - (t_first if t_first is not None else (arrival[0] if len(arrival) else 0.0))
    numbers = np.array([f.frame.frame_number for f in frames], dtype=np.int64)
    subs = np.array([f.frame.sub_frame for f in frames], dtype=np.float32)
    first = frames[0].frame if frames else None
    rates = {(f.frame.fps_numerator, f.frame.fps_denominator) for f in frames}
    num, den = (first.fps_numerator, first.fps_denominator) if first else (60, 1)
    if len(rates) > 1:
        log.warning("the packets' declared rate changed during the take: %s", sorted(rates))
    d = np.diff(numbers) if len(numbers) > 1 else np.zeros(0, np.int64)
    meta = {
        "source": "live",
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "device_id": first.device_id if first else None,
        "subject": first.subject if first else None,
        "subjects": sorted({f.frame.subject for f in frames}),
        "rate": [num, den],
        "listen": f"{address[0]}:{address[1]}",
        "audio": {"device": source.device_name, "sample_rate": source.sample_rate},
        "packets": {
            "received": tally.received,
            "valid": len(frames),
            "header_only": tally.header_only,
            "invalid": tally.invalid,
            "invalid_reasons": dict(tally.invalid_reasons),
            "duplicate": int((d == 0).sum()),
            "out_of_order": int((d < 0).sum()),
        },
        "interrupted": interrupted,
    }
    fps = num / den if den else 60.0
    return Take(frames=arr, fps=fps if fps > 0 else 60.0, frame_times=times, frame_numbers=numbers, sub_frames=subs,
                audio=audio, sample_rate=source.sample_rate, meta=meta)


class StatusLine:
    """The live status line: a rewritten line on a terminal, a line every few seconds otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = -1e9

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + text.ljust(78)[:110])
            self.stream.flush()
        elif force or now - self._last >= 2.0:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _db(level: float) -> str:
    return f"{20 * math.log10(level):5.1f} dBFS" if level > 1e-6 else " -inf dBFS"


def record_take(
    source: AudioSource,
    receiver: LiveLinkReceiver,
    seconds: float,
    out_dir: str | Path,
    stem: str | Path | None = None,
    status: StatusLine | None = None,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> TakeResult:
    """Record one take of ``seconds`` (audio time) from ``source`` + ``receiver`` and save it.

    Ctrl-C (KeyboardInterrupt), ``stop`` or an error while recording ends the take early: what was captured is saved
    (atomically) and the result says so.
    """
    status = status or StatusLine()
    thread = ReceiverThread(receiver, source.clock)
    interrupted, error = False, None
    hinted = False
    t_wall = time.monotonic()
    try:
        receiver.drain()  # packets that queued up before the take (e.g. during a countdown) are not part of it
        source.start()
        thread.start()
        while True:
            if stop is not None and stop.wait(0.1):
                interrupted = True
                break
            if stop is None:
                time.sleep(0.1)
            if source.error is not None:
                raise source.error
            if thread.error is not None:
                raise thread.error
            elapsed = source.seconds()
            with thread.lock:
                n, received = len(thread.tally.frames), thread.tally.received
                recent = [f.arrival for f in thread.tally.frames[-120:]]
            rate = 0.0
            if len(recent) > 1 and recent[-1] > recent[0]:
                rate = (len(recent) - 1) / (recent[-1] - recent[0])
            status.update(f"{elapsed:5.1f}/{seconds:.0f} s  {n:5d} frames  {rate:5.1f} pkt/s  audio {_db(source.level)}")
            if not hinted and received == 0 and time.monotonic() - t_wall > NO_PACKET_HINT_S:
                hinted = True
                status.done()
                say(no_packet_hint(receiver.address))
            if elapsed >= seconds:
                break
    except KeyboardInterrupt:
        interrupted = True
    except Exception as err:  # save what we have, then report
        error = err
    finally:
        old = None
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the save
        try:
            if thread.is_alive():
                thread.stop()
            try:
                source.stop()
            except Exception as err:  # pragma: no cover
                log.warning("stopping the audio source failed: %s", err)
            status.done()
            with thread.lock:
                take = build_take(source, thread.tally, None if interrupted or error else seconds, receiver.address,
                                  interrupted or error is not None)
            stem_path = None
            if take.num_frames or (take.audio is not None and len(take.audio)):
                stem_path = save_take(take, out_dir, stem)
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
    return TakeResult(stem=stem_path, take=take, interrupted=interrupted, error=error)


def describe(result: TakeResult) -> str:
    t = result.take
    p = t.meta["packets"]
    dur = t.audio_duration_s or 0.0
    gaps = t.gaps()
    lines = [
        f"{'interrupted: saved what was captured' if result.interrupted or result.error else 'saved'}: "
        f"{result.stem}.wav/.npy/.json" if result.stem else "nothing was captured; no files written",
        f"  {dur:.2f} s audio, {t.num_frames} face frames at {t.fps:g} fps, {sum(g[1] for g in gaps)} dropped in "
        f"{len(gaps)} gaps, {p['header_only']} header-only (no face), {p['invalid']} invalid packets",
    ]
    return "\n".join(lines)


def import_take(csv: str | Path, audio: str | Path | None, out_dir: str | Path, offset_ms: float | None = None) -> Path:
    """Import a take the Live Link Face app recorded itself (CSV + its .mov or a wav) into ``out_dir``."""
    from motion.livelink.take import find_app_audio, import_app_take, new_take_stem

    csv = Path(csv)
    audio = Path(audio) if audio else find_app_audio(csv)
    if audio is None:
        log.warning("no audio given or found beside %s; importing the face only (use --audio MOV_OR_WAV)", csv)
    take = import_app_take(csv, audio, None if offset_ms is None else offset_ms / 1000.0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_take(take, out_dir, new_take_stem(out_dir, base=csv.stem))


# --- command line ---






def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """``record.py``: list devices, import an app take, or record ``--takes`` takes; returns the exit code."""
    err = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.list_devices:
            print(list_devices())
            return 0
        if args.import_csv:
            stem = import_take(args.import_csv, args.audio, args.out_dir, args.offset_ms)
            err(f"imported {args.import_csv} -> {stem}.npy/.json" + (" + .wav" if stem.with_suffix(".wav").exists() else ""))
            return 0
        if args.takes < 1:
            raise ValueError("--takes must be at least 1")

        def make_source() -> AudioSource:
            if args.audio_file:
                return FileAudioSource(args.audio_file, args.sample_rate)
            return MicrophoneSource(args.device, args.sample_rate)

        first = make_source()
        if args.seconds is not None:
            seconds = args.seconds
        elif isinstance(first, FileAudioSource):
            seconds = first.file_seconds
        else:
            seconds = 20.0
        if seconds <= 0:
            raise ValueError("--seconds must be positive")
        if isinstance(first, MicrophoneSource):
            first.check()  # before listening: no microphone is said at once
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        with LiveLinkReceiver(args.host, args.port) as receiver:
            host, port = receiver.address
            err(f"listening for Live Link Face on {host}:{port}; audio: "
                f"{args.audio_file or ('device ' + str(args.device) if args.device is not None else 'default microphone')}")
            status = StatusLine()
            for k in range(args.takes):
                source = first if k == 0 else make_source()
                if args.takes > 1:
                    for c in range(int(math.ceil(args.countdown)), 0, -1):
                        status.update(f"take {k + 1}/{args.takes} starts in {c}...", force=True)
                        time.sleep(min(1.0, args.countdown))
                    status.done()
                result = record_take(source, receiver, seconds, args.out_dir, status=status, say=err)
                if result.error is not None and result.stem is None:
                    raise result.error
                err(describe(result))
                if result.error is not None:
                    raise result.error
                if result.interrupted:
                    return 130
        return 0
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except (NoInputDeviceError, PortInUseError) as e:
        err(f"error: {e}")
        return 1
    except (ValueError, OSError, RuntimeError) as e:
        err(f"error: {e}")
        return 1
