"""Partial takes: what the recorder streams to disk while recording, so that no kill loses a take.

A take being recorded lives in ``<out-dir>/<stem>.partial/``:

- ``info.json``   written (atomically) before recording starts and again when the first audio sample's time is known:
  sample rate, audio device, listen address, pid and host of the recorder, the asked length.
- ``audio.f32``   mono float32 samples (little-endian), appended block by block as the audio arrives.
- ``frames.bin``  one fixed-size record per valid face frame (:data:`FRAME_RECORD`), appended as packets arrive.
- ``sources.jsonl`` one ``{"device_id", "subject"}`` line per sender seen; a frame record holds its line number.
- ``tally.json``  packet counts (received, header-only, invalid and ignored by reason), rewritten about once a second.

Everything is appended and flushed to the kernel every ~0.1 s (a SIGKILL or an out-of-memory kill keeps it) and
fsync'ed about once a second (a power cut keeps all but the last second). A torn last record is dropped on reading.

:func:`finish_partial` turns the folder into the normal take files (``.wav``/``.npy``/``.json``, written atomically
by :func:`motion.livelink.take.save_take`, JSON last) and then removes it; the recorder does this at the end of every
take, and ``record.py --recover`` (or the next run into the same folder) does it for takes whose recorder died.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bert_vits2.fileio import remove_stale_temps, write_json_atomic
from motion.arkit import NUM_VALUES
from motion.livelink.take import Take, save_take

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
PARTIAL_FORMAT = "bert-vits2-face partial take"
FRAME_RECORD = np.dtype([
    ("arrival", "<f8"), ("frame_number", "<i8"), ("sub_frame", "<f4"), ("fps_num", "<i4"), ("fps_den", "<i4"),
    ("source", "<i4"), ("values", "<f4", (NUM_VALUES,)),
])
AUDIO_DTYPE = np.dtype("<f4")
FSYNC_EVERY_S = 1.0


class PartialTakeError(ValueError):
    """A partial take folder cannot be finished (no info.json, unreadable); the message names the folder."""


def partial_dir_for(stem: Path) -> Path:
    return stem.with_name(stem.name + PARTIAL_SUFFIX)


def find_partials(folder: str | os.PathLike) -> list[Path]:
    """The partial take folders directly inside ``folder`` (sorted)."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith(PARTIAL_SUFFIX))


class PartialTakeWriter:
    """Appends audio blocks and received frames to a partial take folder as they arrive."""

    def __init__(self, stem: Path, sample_rate: int, audio_device: str, listen: str, seconds: float | None) -> None:
        self.stem = Path(stem)
        self.dir = partial_dir_for(self.stem)
        self.dir.mkdir(parents=False, exist_ok=False)  # fails at once on a read-only or missing --out-dir
        self.info: dict[str, Any] = {
            "format": PARTIAL_FORMAT, "version": 1, "stem": self.stem.name, "sample_rate": int(sample_rate),
            "audio_device": audio_device, "listen": listen, "seconds": seconds, "pid": os.getpid(),
            "host": socket.gethostname(), "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "first_sample_time": None,
        }
        write_json_atomic(self.dir / "info.json", self.info)
        self._audio = open(self.dir / "audio.f32", "ab")
        self._frames = open(self.dir / "frames.bin", "ab")
        self._sources_f = open(self.dir / "sources.jsonl", "a", encoding="utf-8")
        self._sources: dict[tuple[str, str], int] = {}
        self._last_sync = time.monotonic()
        self.samples = 0
        self.frames = 0

    def set_first_sample_time(self, t: float) -> None:
        """Record when the first audio sample was captured (the time axis of the frames' arrival times)."""
        if self.info["first_sample_time"] is None:
            self.info["first_sample_time"] = float(t)
            write_json_atomic(self.dir / "info.json", self.info)

    def append_audio(self, blocks: list[np.ndarray]) -> None:
        for b in blocks:
            data = np.ascontiguousarray(b, dtype=AUDIO_DTYPE)
            self._audio.write(data.tobytes())
            self.samples += len(data)

    def append_frames(self, received: list) -> None:
        """Append :class:`motion.livelink.ReceivedFrame` s."""
        if not received:
            return
        rec = np.zeros(len(received), FRAME_RECORD)
        for i, r in enumerate(received):
            f = r.frame
            key = (f.device_id, f.subject)
            if key not in self._sources:
                self._sources[key] = len(self._sources)
                self._sources_f.write(json.dumps({"device_id": f.device_id, "subject": f.subject}) + "\n")
                self._sources_f.flush()  # before any frame refers to it
            rec[i] = (r.arrival, f.frame_number, f.sub_frame, f.fps_numerator, f.fps_denominator, self._sources[key],
                      f.values)
        self._frames.write(rec.tobytes())
        self.frames += len(received)

    def write_tally(self, tally) -> None:
        write_json_atomic(self.dir / "tally.json", tally_dict(tally))

    def flush(self, force_sync: bool = False) -> None:
        """Hand everything to the kernel (survives SIGKILL); fsync about once a second (survives a power cut)."""
        for f in (self._audio, self._frames, self._sources_f):
            f.flush()
        now = time.monotonic()
        if force_sync or now - self._last_sync >= FSYNC_EVERY_S:
            for f in (self._audio, self._frames, self._sources_f):
                os.fsync(f.fileno())
            self._last_sync = now

    def close(self) -> None:
        for f in (self._audio, self._frames, self._sources_f):
            if not f.closed:
                with contextlib.suppress(OSError):  # a full disk: what reached it is still finished
                    f.flush()
                    os.fsync(f.fileno())
                with contextlib.suppress(OSError):
                    f.close()


def tally_dict(tally) -> dict[str, Any]:
    return {
        "received": int(tally.received), "header_only": int(tally.header_only), "invalid": int(tally.invalid),
        "invalid_reasons": dict(tally.invalid_reasons), "ignored": int(getattr(tally, "ignored", 0)),
        "ignored_reasons": dict(getattr(tally, "ignored_reasons", {})),
    }


@dataclass
class PartialContent:
    info: dict[str, Any]
    audio: np.ndarray
    frames: np.ndarray  # FRAME_RECORD records
    sources: list[dict[str, str]]
    tally: dict[str, Any] | None


def read_partial(folder: str | os.PathLike) -> PartialContent:
    """Read a partial take folder; torn last records (a kill mid-write) are dropped."""
    folder = Path(folder)
    try:
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise PartialTakeError(f"{folder}: no readable info.json ({err}); this is not a partial take the recorder "
                               f"can finish: move it away") from err
    if info.get("format") != PARTIAL_FORMAT:
        raise PartialTakeError(f"{folder}: info.json is not a {PARTIAL_FORMAT}; move the folder away")

    def raw(name: str) -> bytes:
        try:
            return (folder / name).read_bytes()
        except FileNotFoundError:
            return b""

    a = raw("audio.f32")
    audio = np.frombuffer(a[: len(a) - len(a) % AUDIO_DTYPE.itemsize], AUDIO_DTYPE).astype(np.float32)
    f = raw("frames.bin")
    frames = np.frombuffer(f[: len(f) - len(f) % FRAME_RECORD.itemsize], FRAME_RECORD).copy()
    sources = []
    for line in raw("sources.jsonl").decode("utf-8", "replace").splitlines():
        try:
            sources.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line
    tally = None
    with contextlib.suppress(OSError, json.JSONDecodeError):
        tally = json.loads((folder / "tally.json").read_text(encoding="utf-8"))
    return PartialContent(info, audio, frames, sources, tally)


def take_from_partial(content: PartialContent, interrupted: bool, recovered: bool = False) -> Take:
    """A :class:`Take` from a partial take's content (arrival times on the audio's axis)."""
    info, rec = content.info, content.frames
    sr = int(info["sample_rate"])
    audio = content.audio
    if not interrupted and info.get("seconds") is not None:
        audio = audio[: int(round(float(info["seconds"]) * sr))]
    arrival = rec["arrival"].astype(np.float64)
    t_first = info.get("first_sample_time")
    times = arrival - (float(t_first) if t_first is not None else (arrival[0] if len(arrival) else 0.0))
    numbers = rec["frame_number"].astype(np.int64)
    src = [content.sources[i] if 0 <= i < len(content.sources) else {"device_id": None, "subject": None}
           for i in rec["source"]]
    rates = sorted({(int(n), int(d)) for n, d in zip(rec["fps_num"], rec["fps_den"])})
    num, den = (int(rec["fps_num"][0]), int(rec["fps_den"][0])) if len(rec) else (60, 1)
    if len(rates) > 1:
        log.warning("the packets' declared rate changed during the take: %s", rates)
    d = np.diff(numbers) if len(numbers) > 1 else np.zeros(0, np.int64)
    tally = content.tally or {}
    meta = {
        "source": "live",
        "created": info.get("created") or _dt.datetime.now().isoformat(timespec="seconds"),
        "device_id": src[0]["device_id"] if src else None,
        "subject": src[0]["subject"] if src else None,
        "subjects": sorted({s["subject"] for s in src if s.get("subject") is not None}),
        "rate": [num, den],
        "listen": info.get("listen"),
        "audio": {"device": info.get("audio_device"), "sample_rate": sr},
        "packets": {
            "received": int(tally.get("received", len(rec))),
            "valid": int(len(rec)),
            "header_only": int(tally.get("header_only", 0)),
            "invalid": int(tally.get("invalid", 0)),
            "invalid_reasons": dict(tally.get("invalid_reasons", {})),
            "ignored": int(tally.get("ignored", 0)),
            "ignored_reasons": dict(tally.get("ignored_reasons", {})),
            "duplicate": int((d == 0).sum()),
            "out_of_order": int((d < 0).sum()),
        },
        "interrupted": bool(interrupted),
    }
    if recovered:
        meta["recovered"] = True
    fps = num / den if den else 60.0
    return Take(frames=rec["values"].astype(np.float32).reshape(-1, NUM_VALUES), fps=fps if fps > 0 else 60.0,
                frame_times=times, frame_numbers=numbers, sub_frames=rec["sub_frame"].astype(np.float32), audio=audio,
                sample_rate=sr, meta=meta)


def finish_partial(folder: str | os.PathLike, interrupted: bool = True, recovered: bool = False) -> tuple[Path | None, Take]:
    """Write the take files of a partial take (atomically, JSON last), then remove the folder.

    Returns (stem, take); stem is None when nothing was captured (no files are written then). Safe to repeat after
    a kill at any moment: take files without their JSON are from an unfinished finish and are written again; a
    take whose JSON exists is complete and only the folder is removed.
    """
    folder = Path(folder)
    content = read_partial(folder)
    take = take_from_partial(content, interrupted, recovered)
    stem = folder.with_name(folder.name[: -len(PARTIAL_SUFFIX)])
    files = [stem.with_name(stem.name + s) for s in (".wav", ".npy", ".json")]
    if files[2].exists():
        log.info("%s is complete already; removing %s", files[2], folder)
        shutil.rmtree(folder)
        take.stem = stem
        return stem, take
    for f in files[:2]:
        with contextlib.suppress(FileNotFoundError):
            f.unlink()  # left by a finish that was killed before its JSON: the partial is the source
    remove_stale_temps(stem.parent, stem.name)
    out: Path | None = None
    if take.num_frames or len(take.audio):
        out = save_take(take, stem.parent, stem)
    shutil.rmtree(folder)
    return out, take


def recorder_alive(info: dict[str, Any]) -> bool:
    """Whether the process that wrote a partial take is still running on this machine (then it is not finished)."""
    pid = info.get("pid")
    if info.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_partials(folder: str | os.PathLike) -> list[tuple[Path, Path | None, str | None]]:
    """Finish every partial take in ``folder`` whose recorder is gone: [(partial, stem or None, error or None)]."""
    results = []
    for p in find_partials(folder):
        try:
            info = read_partial(p).info
            if info.get("kind"):  # another tool's take (live_face.py's): its own --recover finishes it
                results.append((p, None, f"a {info['kind']} take; finish it with that tool's --recover"))
                continue
            if recorder_alive(info):
                results.append((p, None, f"still being recorded by process {info['pid']}; left alone"))
                continue
            stem, _ = finish_partial(p, interrupted=True, recovered=True)
            results.append((p, stem, None))
        except (PartialTakeError, OSError, ValueError) as err:
            results.append((p, None, str(err)))
    return results


__all__ = [
    "FRAME_RECORD", "PARTIAL_SUFFIX", "PartialTakeError", "PartialTakeWriter", "find_partials", "finish_partial",
    "partial_dir_for", "read_partial", "recover_partials", "take_from_partial",
]
