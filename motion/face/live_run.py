"""The live face tool behind ``motion/live_face.py``: a microphone (or a file played as one) -> :class:`LiveFace` ->
Live Link, VMC and/or a take on disk, frame by frame as the audio arrives.

Latency is measured per frame as *send time - capture time of the audio at the frame's centre* (frame ``k`` is centred
at ``(k + 0.5) / 60`` s): the causal head's lookahead, plus the audio block the source delivers at once (10 ms for a
file, the sound card's block for a microphone), plus compute. It is logged once a second and kept in the take's JSON.
Ctrl-C (or SIGTERM) only asks the loop to stop (:class:`motion.livelink.recorder.StopSignals`: a handler that takes no
lock); the frames of the audio captured so far are finished and the take is written atomically before exit.

A take (``--out``) is streamed to disk as it is captured, as ``record.py`` streams its takes
(:mod:`motion.livelink.partial`): ``<stem>.partial/`` holds the audio (float32, appended per block) and every frame
sent (one record each: send time, frame number, the 61 values), handed to the kernel every ~0.1 s (a kill -9 keeps
them) and fsync'ed about once a second (a power cut keeps all but the last second). The end of the run, or after a
kill ``live_face.py --recover DIR`` / the next run into DIR, turns it into the take files (:func:`finish_live_take`:
wav + npy + app CSV + JSON, each atomic, JSON last) and removes the folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bert_vits2.fileio import remove_stale_temps, write_json_atomic
from motion.arkit import NUM_VALUES
from motion.constants import FACE_FPS, LIVELINK_PORT, VMC_PORT
from motion.livelink.partial import (
    FRAME_RECORD,
    FSYNC_EVERY_S,
    PARTIAL_SUFFIX,
    PartialTakeError,
    PartialTakeWriter,
    find_partials,
    read_partial,
    recorder_alive,
)

log = logging.getLogger(__name__)

FILE_BLOCK_S = 0.01
"""A file played as if live arrives in blocks of this many seconds."""
MIC_SAMPLE_RATE = 48000
#: the ``kind`` of a live_face.py partial take (motion.livelink.partial's info.json; record.py's takes have none)
LIVE_TAKE_KIND = "live_face"
#: how often the take's files are handed to the kernel (a kill -9 loses at most this much)
FLUSH_EVERY_S = 0.1


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


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as err:  # a full disk or a closed file: the final flush says it
            log.debug("fsync of a live take file: %s", err)


class LiveTakeWriter(PartialTakeWriter):
    """A live take streamed into ``<stem>.partial/`` (:class:`motion.livelink.partial.PartialTakeWriter`'s folder,
    audio file, flushing and fsync): ``info.json`` also holds ``kind`` (:data:`LIVE_TAKE_KIND`) and ``live`` (what the
    take's JSON says about the run), and each frame sent is one ``FRAME_RECORD`` (``arrival``: its send time)."""

    def __init__(self, stem: Path, sample_rate: int, source: str, live_meta: dict[str, Any]) -> None:
        super().__init__(stem, sample_rate, audio_device=source, listen="", seconds=None)
        self.info.update({"kind": LIVE_TAKE_KIND, "live": dict(live_meta)})
        write_json_atomic(self.dir / "info.json", self.info)

    _syncing: threading.Thread | None = None

    def flush(self, force_sync: bool = False) -> None:
        """Hand the new data to the kernel (survives a kill -9); fsync about once a second on a helper thread, so a
        slow disk never holds a frame back (``force_sync``: now, on this thread)."""
        files = (self._audio, self._frames, self._sources_f)
        for f in files:
            f.flush()
        now = time.monotonic()
        if force_sync:
            self._join_sync()
            for f in files:
                os.fsync(f.fileno())
            self._last_sync = now
        elif now - self._last_sync >= FSYNC_EVERY_S and (self._syncing is None or not self._syncing.is_alive()):
            fds = [f.fileno() for f in files]
            self._syncing = threading.Thread(target=_fsync_all, args=(fds,), name="live-take-fsync", daemon=True)
            self._syncing.start()
            self._last_sync = now

    def _join_sync(self) -> None:
        if self._syncing is not None:
            self._syncing.join()
            self._syncing = None

    def close(self) -> None:
        self._join_sync()  # before the files close under it
        super().close()

    def append_face(self, start: int, frames: np.ndarray, sent_at: float) -> None:
        """Frames ``start ..`` of the 60 fps grid, sent at ``sent_at`` (the source's clock)."""
        rec = np.zeros(len(frames), FRAME_RECORD)
        rec["arrival"] = sent_at
        rec["frame_number"] = np.arange(start, start + len(frames))
        rec["fps_num"], rec["fps_den"] = int(FACE_FPS), 1
        rec["values"] = frames
        self._frames.write(rec.tobytes())
        self.frames += len(frames)


class Outputs:
    """Where the frames go: Live Link packets, VMC bundles (Perfect Sync + head/eye bones) and/or the take, streamed
    to ``<out_dir>/<stem>.partial/`` as it is captured (:class:`LiveTakeWriter`) and finished by :meth:`write_take`.
    ``keep_take`` without ``out_dir`` keeps the take in memory (``audio``, ``frames``) instead."""

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
        self.keep = keep_take and self.out_dir is None
        self.audio: list[np.ndarray] = []  # in memory (keep_take without out_dir): int16 blocks
        self.frames: list[np.ndarray] = []
        self.sent = 0
        self.writer: LiveTakeWriter | None = None
        self._take: tuple[int, str, dict[str, Any]] | None = None  # (sample rate, source, live meta) for the writer
        self._t0: float | None = None
        self._flushed = time.monotonic()

    def begin(self, sample_rate: int, source: str, live_meta: dict[str, Any]) -> None:
        """What the take's files will say; its folder is made when the first audio arrives (none without audio)."""
        self._take = (int(sample_rate), str(source), dict(live_meta))

    def started(self, t0: float | None) -> None:
        """The source's clock at the first sample (the frames' send times are kept relative to it)."""
        self._t0 = t0
        if self.writer is not None and t0 is not None:
            self.writer.set_first_sample_time(t0)

    def _open_writer(self) -> LiveTakeWriter:
        from motion.livelink.take import new_take_stem

        if self._take is None:
            raise RuntimeError("Outputs.begin() must come before the take's first audio")
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        sr, source, meta = self._take
        self.writer = LiveTakeWriter(new_take_stem(self.out_dir), sr, source, meta)
        if self._t0 is not None:
            self.writer.set_first_sample_time(self._t0)
        return self.writer

    def audio_in(self, block: np.ndarray) -> None:
        a = np.clip(np.nan_to_num(np.asarray(block, np.float32)), -1.0, 1.0)
        if self.out_dir is not None:
            (self.writer or self._open_writer()).append_audio([a])
        elif self.keep:
            self.audio.append((a * 32767.0).astype(np.int16))  # half the memory of float32

    def send(self, start: int, frames: np.ndarray, clock: Callable[[], float] | None = None) -> None:
        """Send frames ``start ..`` to every target and keep them with the take (``clock``: their send time)."""
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
        if self.out_dir is not None:
            sent_at = clock() if clock is not None else time.perf_counter()
            (self.writer or self._open_writer()).append_face(start, np.asarray(frames, np.float32), sent_at)
        elif self.keep:
            self.frames.append(np.asarray(frames, np.float32))
        self.sent += len(frames)

    def pump(self, force: bool = False) -> None:
        """Hand the take's new data to the kernel every :data:`FLUSH_EVERY_S` (fsync about once a second)."""
        if self.writer is None:
            return
        now = time.monotonic()
        if force or now - self._flushed >= FLUSH_EVERY_S:
            self.writer.flush(force_sync=force)
            self._flushed = now

    def write_take(self, sample_rate: int, meta: dict[str, Any]) -> Path | None:
        """``<out>/<YYYY-mm-dd-HH-MM-SS>.wav`` + ``.npy`` ([T, 61]) + ``.csv`` (the app's) + ``.json``
        (:func:`finish_live_take`; each file atomic, never overwriting). None without ``--out`` or audio."""
        if self.writer is None:
            return None
        self.writer.close()
        folder = self.writer.dir
        try:
            return finish_live_take(folder, meta)
        except (OSError, ValueError) as err:
            raise OSError(f"could not write the take ({err}); what was captured is kept in {folder}: free some "
                          f"space, then run live_face.py --recover {folder.parent}") from err

    def close(self) -> None:
        if self.livelink is not None:
            self.livelink.close()
        if self.vmc is not None:
            self.vmc.close()
        if self.writer is not None:
            self.writer.close()  # (idempotent) an error before write_take: what was captured stays on disk


# --- finishing a take (also after a kill) -----------------------------------------------------------------------------


def _recovered_latency_ms(arrival: np.ndarray, first: int, t_first: float | None) -> dict[str, float]:
    """The latency figures of a take from its frames' send times (frames ``first ..``), as LiveReport states them."""
    if t_first is None or not len(arrival):
        return {}
    centres = float(t_first) + (np.arange(first, first + len(arrival)) + 0.5) / FACE_FPS
    return LiveReport(latencies=list(arrival - centres)).latency_ms()


def finish_live_take(folder: str | Path, meta: dict[str, Any] | None = None) -> Path | None:
    """Write a live partial take's files (wav, npy, app CSV, JSON last; each atomic) and remove the folder.

    ``meta``: what the run knows (latency, compute, interrupted); None after a kill: the JSON then says
    ``recovered`` and ``interrupted``, with the latency figures recomputed from the frames' send times. The frames
    are the ones sent (after a kill the last lookahead's worth of audio has none: ``face_seconds`` says how far they
    go). Safe to repeat after a kill at any moment, as :func:`motion.livelink.partial.finish_partial`: a take with
    its JSON is complete (only the folder is removed); files without it are written again. None: nothing captured."""
    import shutil

    from bert_vits2.audio import write_wav_pcm16
    from motion.face.outputs import write_curve_files

    folder = Path(folder)
    content = read_partial(folder)
    info = content.info
    if info.get("kind") != LIVE_TAKE_KIND:
        raise PartialTakeError(f"{folder}: not a live_face.py take (record.py --recover finishes record.py's)")
    stem = folder.with_name(folder.name[: -len(PARTIAL_SUFFIX)])
    npy, wav, csv, js = (stem.with_name(stem.name + s) for s in (".npy", ".wav", ".csv", ".json"))
    if js.exists():
        log.info("%s is complete already; removing %s", js, folder)
        shutil.rmtree(folder)
        return stem
    if not len(content.audio) and not len(content.frames):
        shutil.rmtree(folder)
        return None
    for f in (wav, npy, csv):
        f.unlink(missing_ok=True)  # left by a finish that was killed before its JSON: the partial is the source
    remove_stale_temps(stem.parent, stem.name)
    rec = content.frames
    start = int(rec["frame_number"][0]) if len(rec) else 0
    if len(rec) and not np.array_equal(rec["frame_number"], np.arange(start, start + len(rec))):
        raise PartialTakeError(f"{folder}: its frames are not in order; move the folder away")
    frames = rec["values"].astype(np.float32).reshape(-1, NUM_VALUES) if len(rec) else np.zeros((0, NUM_VALUES),
                                                                                                 np.float32)
    sr = int(info["sample_rate"])
    write_wav_pcm16(wav, content.audio, sr)
    if meta is None:
        meta = {**info.get("live", {}), "interrupted": True, "recovered": True,
                "latency_ms": _recovered_latency_ms(rec["arrival"], start, info.get("first_sample_time"))}
    full = {"sample_rate": sr, "audio_seconds": len(content.audio) / float(sr), "wav": wav.name,
            "face_seconds": round(len(frames) / FACE_FPS, 6), **meta}
    write_curve_files(npy, frames, FACE_FPS, full, csv, js)
    shutil.rmtree(folder)
    return stem


def _partial_info(folder: Path) -> dict[str, Any]:
    """A partial take's info.json alone (its audio can be an hour long)."""
    try:
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise PartialTakeError(f"{folder}: no readable info.json ({err}); move the folder away") from None
    if not isinstance(info, dict):
        raise PartialTakeError(f"{folder}: info.json is not a partial take's; move the folder away")
    return info


def recover_live_takes(folder: str | Path) -> list[tuple[Path, Path | None, str | None]]:
    """Finish every live partial take in ``folder`` whose process is gone: ``[(partial, stem or None, problem)]``
    (record.py's partial takes are left to ``record.py --recover``)."""
    results: list[tuple[Path, Path | None, str | None]] = []
    for p in find_partials(folder):
        try:
            info = _partial_info(p)
            if info.get("kind") != LIVE_TAKE_KIND:
                continue
            if recorder_alive(info):
                results.append((p, None, f"still being written by process {info['pid']}; left alone"))
                continue
            results.append((p, finish_live_take(p), None))
        except (PartialTakeError, OSError, ValueError) as err:
            results.append((p, None, str(err)))
    return results


def recover(folder: str | Path) -> int:
    """``live_face.py --recover DIR``: finish the takes a killed run left in ``folder``; 1 when one could not be."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--recover {folder}: no such folder; give the --out DIR of the interrupted run")
    results = recover_live_takes(folder)
    if not results:
        log.info("no interrupted live takes in %s", folder)
    for partial, stem, problem in results:
        if problem is not None:
            log.warning("%s: %s", partial, problem)
        elif stem is None:
            log.info("%s: nothing had been captured; removed", partial)
        else:
            log.info("recovered an interrupted take: %s.wav/.npy/.csv/.json", stem)
    return 1 if any(problem for _, _, problem in results) else 0


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
        outputs.send(report.frames, frames, clock=source.now)
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
                outputs.started(report.t0)
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
            outputs.pump()
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


def read_kind(partial: Path) -> str | None:
    """The ``kind`` of a partial take folder (None: record.py's, or unreadable)."""
    try:
        return _partial_info(partial).get("kind")
    except PartialTakeError:
        return None


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
        if any(read_kind(p) == LIVE_TAKE_KIND for p in find_partials(out)):
            log.info("%s holds takes an interrupted run left; finishing them first", out)
            if recover(out):
                log.warning("(the folders named above are left as they are; see live_face.py --recover)")
    source = open_source(args)
    kwargs: dict[str, Any] = {"alive": args.alive, "seed": args.seed, "emotion": getattr(args, "emotion", None),
                              "emotion_intensity": getattr(args, "emotion_intensity", 1.0)}
    if args.head:
        kwargs["head"] = args.head
    live = LiveFace(sample_rate=source.sample_rate, **kwargs)
    outputs = Outputs(ll, vmc, args.out, subject=args.subject)
    live_meta: dict[str, Any] = {"source": source.name, "lookahead_s": float(live.lookahead_s),
                                 "realtime": bool(source.realtime)}
    if live.emotion is not None:  # as wav_to_visemes.py's JSON says it
        from motion.face.emotion import parse_emotion

        live_meta["emotion"] = {"weights": parse_emotion(args.emotion), "intensity": args.emotion_intensity}
    outputs.begin(source.sample_rate, source.name, live_meta)
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
                meta = {**live_meta, "latency_ms": report.latency_ms(), "compute_s": round(report.compute_s, 3),
                        "interrupted": report.interrupted}
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
        if getattr(args, "recover", None) is not None:
            if not (args.recover or args.out):
                raise ValueError("--recover: give the folder (--recover DIR) or --out DIR")
            return recover(args.recover or args.out)
        report = run_live(args)
    except NoInputDeviceError as err:  # no microphone, PortAudio missing, a busy device: one line (motion.cli)
        raise ValueError(str(err).replace("--audio-file WAV", "--wav FILE")) from None
    return 130 if report.interrupted else 0


__all__ = ["FILE_BLOCK_S", "FileSource", "LIVE_TAKE_KIND", "LiveReport", "LiveTakeWriter", "LiveTargetError", "MicSource",
           "Outputs", "check_udp_target", "finish_live_take", "in_live_thread", "live_executor", "parse_host_port",
           "recover", "recover_live_takes", "run", "run_live", "stream_live"]
