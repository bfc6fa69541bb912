"""The recorder behind ``motion/record.py``: microphone (or a file played as one) + the Live Link Face app's UDP
stream into one take in ``records/`` (see :mod:`motion.livelink.take`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bert_vits2.audio import load_audio
from motion.constants import TTS_SAMPLE_RATE as SAMPLE_RATE
from motion.livelink import LiveLinkReceiver, PortInUseError, ReceiverThread
from motion.livelink.partial import PartialTakeWriter, find_partials, finish_partial, recover_partials
from motion.livelink.protocol import PacketTally
from motion.livelink.take import Take, find_app_audio, import_app_take, new_take_stem, save_take

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
        """The blocks captured and not yet taken by :meth:`pop_blocks`."""
        with self._lock:
            return np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.float32)

    def pop_blocks(self) -> list[np.ndarray]:
        """Take the blocks captured since the last call (the recorder streams them to disk, keeping none)."""
        with self._lock:
            blocks, self._blocks = self._blocks, []
        return blocks

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
        import sounddevice as sd  # sounddevice: optional [record] extra, needs libportaudio
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


class StopSignals:
    """While a take records and saves, SIGINT and SIGTERM only ask it to stop.

    The first signal ends the recording; later ones (a second Ctrl-C, a service manager's SIGTERM) are harmless while
    the take is written. A signal can arrive while the main thread is anywhere, including inside this handler or
    inside ``Event.set`` (which holds the event's lock): so the handler takes no lock at all. It only bumps a counter
    and writes its message with ``os.write``; the recording loop polls :attr:`requested` (see :meth:`poll`) and sets
    ``event`` itself, outside the handler. Outside the main thread nothing is installed.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, event: threading.Event | None = None) -> None:
        self.event = event if event is not None else threading.Event()
        self.count = 0  # signals received; an int increment takes no lock
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived (safe to read anywhere)."""
        return self.count > 0

    def poll(self) -> bool:
        """Called by the recording loop (never by the handler): mirror a received signal into ``event``."""
        if self.count and not self.event.is_set():
            self.event.set()
        return self.event.is_set()

    def _say(self, msg: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(2, msg)

    def _handle(self, signum, frame) -> None:
        self.count += 1
        self._say(b"\nstopping: saving the take...\n" if self.count == 1 else b"\nstill saving the take, please wait\n")

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


# Test hook: called with "recording", "stopping" and "saving" at those moments (signals can be sent exactly then).
STAGE_HOOK: Callable[[str], None] | None = None


def _stage(name: str) -> None:
    if STAGE_HOOK is not None:
        STAGE_HOOK(name)


def check_out_dir(out_dir: str | Path) -> Path:
    """Make sure takes can be written to ``out_dir`` before recording (not after the whole take)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out-dir {out} is a file, not a folder; give a folder for the takes")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out-dir {out}: cannot create the folder ({err.strerror or err}); choose another") from err
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"--out-dir {out} is not writable ({err.strerror or err}); choose another folder or fix "
                         f"its permissions") from err
    return out


def record_take(
    source: AudioSource,
    receiver: LiveLinkReceiver,
    seconds: float,
    out_dir: str | Path,
    stem: str | Path | None = None,
    status: StatusLine | None = None,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    accept_device: str | None = None,
    accept_subject: str | None = None,
) -> TakeResult:
    """Record one take of ``seconds`` (audio time) from ``source`` + ``receiver`` and save it.

    Audio and frames are streamed into ``<stem>.partial/`` as they arrive (:mod:`motion.livelink.partial`), so a
    kill loses at most the last ~0.1 s; at the end the partial take becomes the normal take files. Ctrl-C, SIGTERM,
    ``stop`` or an error end the take early and what was captured is saved; further signals during the save are
    harmless. ``accept_device`` / ``accept_subject``: keep only frames from that phone / subject.
    """
    status = status or StatusLine()
    out = check_out_dir(out_dir)
    stem_path = Path(stem) if stem is not None else new_take_stem(out)
    if not stem_path.is_absolute() and stem_path.parent == Path("."):
        stem_path = out / stem_path
    stopping = threading.Event()
    tally = PacketTally(accept_device=accept_device, accept_subject=accept_subject)
    thread = ReceiverThread(receiver, source.clock, tally)
    interrupted, error = False, None
    hinted = False
    host, port = receiver.address[:2]
    with StopSignals(stopping) as signals:
        writer = PartialTakeWriter(stem_path, source.sample_rate, source.device_name, f"{host}:{port}", seconds)
        written = 0
        last_tally = 0.0

        def pump(force: bool = False) -> None:
            nonlocal written, last_tally
            writer.append_audio(source.pop_blocks())
            if source.first_sample_time is not None:
                writer.set_first_sample_time(source.first_sample_time)
            with thread.lock:
                new = tally.frames[written:]
                written = len(tally.frames)
                now = time.monotonic()
                counts = force or now - last_tally >= 1.0
            writer.append_frames(new)
            if counts:
                writer.write_tally(tally)
                last_tally = now
            writer.flush(force)

        t_wall = time.monotonic()
        try:
            receiver.drain()  # packets that queued up before the take (e.g. during a countdown) are not part of it
            source.start()
            thread.start()
            _stage("recording")
            while True:
                if signals.poll() or stopping.wait(0.1) or signals.poll() or (stop is not None and stop.is_set()):
                    interrupted = True
                    break
                if source.error is not None:
                    raise source.error
                if thread.error is not None:
                    raise thread.error
                pump()
                elapsed = writer.samples / source.sample_rate
                with thread.lock:
                    n, received = len(tally.frames), tally.received
                    recent = [f.arrival for f in tally.frames[-120:]]
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
        except KeyboardInterrupt:  # outside the main thread's handlers (or before they were installed)
            interrupted = True
        except Exception as err:  # save what we have, then report
            error = err
        _stage("stopping")
        if thread.is_alive():
            thread.stop()
        try:
            source.stop()
        except Exception as err:  # pragma: no cover
            log.warning("stopping the audio source failed: %s", err)
        status.done()
        try:
            pump(force=True)
        except OSError as err:  # e.g. the disk filled up: finish what reached it
            error = error or err
        writer.close()
        _stage("saving")
        try:
            saved, take = finish_partial(writer.dir, interrupted=interrupted or error is not None)
        except (OSError, ValueError) as err:
            raise OSError(f"could not write the take ({err}); what was captured is kept in {writer.dir}: free some "
                          f"space, then run record.py --recover {out}") from err
        interrupted = interrupted or signals.poll()
    return TakeResult(stem=saved, take=take, interrupted=interrupted, error=error)


def describe(result: TakeResult) -> str:
    t = result.take
    p = t.meta["packets"]
    dur = t.audio_duration_s or 0.0
    gaps = t.gaps()
    lines = [
        f"{'interrupted: saved what was captured' if result.interrupted or result.error else 'saved'}: "
        f"{result.stem}.wav/.npy/.json" if result.stem else "nothing was captured; no files written",
        f"  {dur:.2f} s audio, {t.num_frames} face frames at {t.fps:g} fps, {sum(g[1] for g in gaps)} dropped in "
        f"{len(gaps)} gaps, {p['header_only']} header-only (no face), {p['invalid']} invalid packets"
        + (f", {p['ignored']} from other devices/subjects ignored" if p.get("ignored") else ""),
    ]
    return "\n".join(lines)


def import_take(csv: str | Path, audio: str | Path | None, out_dir: str | Path, offset_ms: float | None = None) -> Path:
    """Import a take the Live Link Face app recorded itself (CSV + its .mov or a wav) into ``out_dir``."""
    csv = Path(csv)
    audio = Path(audio) if audio else find_app_audio(csv)
    if audio is None:
        log.warning("no audio given or found beside %s; importing the face only (use --audio MOV_OR_WAV)", csv)
    take = import_app_take(csv, audio, None if offset_ms is None else offset_ms / 1000.0)
    if take.num_frames == 0:
        raise ValueError(f"--import {csv}: the CSV holds no face frames (only a header); export the take from the "
                         f"Live Link Face app again")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_take(take, out_dir, new_take_stem(out_dir, base=csv.stem))


# --- command line ---


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def recover(folder: str | Path, say: Callable[[str], None]) -> int:
    """Finish the partial takes in ``folder`` (``--recover``); 0 when all were finished, 1 when one could not be."""
    results = recover_partials(folder)
    if not results:
        say(f"no partial takes in {folder}")
    failed = 0
    for partial, stem, problem in results:
        if problem is not None:
            failed += 1
            say(f"{partial}: {problem}")
        elif stem is None:
            say(f"{partial}: nothing had been captured; removed")
        else:
            say(f"recovered an interrupted take: {stem}.wav/.npy/.json")
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    """``record.py``: list devices, import an app take, recover partial takes, or record ``--takes`` takes."""
    err = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.list_devices:
            print(list_devices())
            return 0
        if getattr(args, "recover", None) is not None:
            folder = Path(args.recover or args.out_dir)
            if not folder.is_dir():
                raise ValueError(f"--recover {folder}: no such folder")
            return recover(folder, err)
        check_out_dir(args.out_dir)  # before anything is recorded: a file or a read-only folder is said at once
        if args.import_csv:
            stem = import_take(args.import_csv, args.audio, args.out_dir, args.offset_ms)
            err(f"imported {args.import_csv} -> {stem}.npy/.json" + (" + .wav" if stem.with_suffix(".wav").exists() else ""))
            return 0
        if args.takes < 1:
            raise ValueError("--takes must be at least 1")

        if find_partials(args.out_dir):
            err(f"{args.out_dir} holds takes an earlier run could not finish; finishing them first")
            if recover(args.out_dir, err):
                err("(the folders named above are left as they are; see record.py --recover)")

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
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"--seconds must be a positive number of seconds, not {seconds}")
        if isinstance(first, MicrophoneSource):
            first.check()  # before listening: no microphone is said at once
        if threading.current_thread() is threading.main_thread():  # (a test may call run() from a thread)
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
                result = record_take(source, receiver, seconds, args.out_dir, status=status, say=err,
                                     accept_device=getattr(args, "accept_device", None),
                                     accept_subject=getattr(args, "accept_subject", None))
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
