"""The take format in ``records/``: ``<stem>.wav`` + ``<stem>.npy`` + ``<stem>.json``.

- ``.wav``: mono PCM16 (44.1 kHz from the recorder).
- ``.npy``: float32 [N, 61] in Live Link wire order, one row per face frame *as received* (not resampled).
- ``.json``: the names, the frame rate, per-frame arrival time in seconds relative to the first audio sample, the packets'
  frame numbers and sub-frames, device id and subject, audio device and rate, packet counts and gaps.

The JSON is written last, so a take with a JSON is complete. Takes are never overwritten. Takes recorded by the Live Link
Face app itself (its CSV + the audio of its .mov) are imported into the same format by :func:`import_app_take`.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from bert_vits2.audio import load_audio as load_audio_file  # load_take has a load_audio flag
from bert_vits2.audio import write_wav_pcm16
from bert_vits2.fileio import write_bytes_atomic as _atomic_write_bytes
from motion.arkit import NAMES, check_frames, reorder
from motion.frames import frame_centres, interp_frames
from motion.inputs import load_npy
from motion.livelink.app_csv import parse_timecode, read_llf_csv

log = logging.getLogger(__name__)

TAKE_FORMAT = "bert-vits2-face take"
TAKE_VERSION = 1
DEFAULT_RECORDS = Path("records")
_SUFFIXES = (".npy", ".wav", ".json", ".png")


class TakeError(ValueError):
    """A take could not be read; the message says which file and what to do."""


@dataclass
class Take:
    """A recorded (or imported) take. ``frames`` is float32 [N, 61] wire order, one row per received frame."""

    frames: np.ndarray
    fps: float
    frame_times: np.ndarray | None = None  # float64 [N], seconds after the first audio sample
    frame_numbers: np.ndarray | None = None  # int64 [N], the packets' frame numbers
    sub_frames: np.ndarray | None = None  # float32 [N]
    audio: np.ndarray | None = None  # float32 mono
    sample_rate: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    stem: Path | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frame_number_step(self) -> int:
        """How much the frame number grows per frame (1 for packets; 2 for a 30 fps app CSV with 60 fps timecode)."""
        return int(self.meta.get("frame_number_step", 1))

    @property
    def audio_duration_s(self) -> float | None:
        if self.audio is None or not self.sample_rate:
            return None
        return len(self.audio) / self.sample_rate

    @property
    def duration_s(self) -> float:
        """Length of the take: the audio's when present, else the frames' span."""
        a = self.audio_duration_s
        if a is not None:
            return a
        t = self.times()
        return float(t[-1] + 1.0 / self.fps) if len(t) else 0.0

    def times(self) -> np.ndarray:
        """Each frame's time in seconds on the audio's time axis.

        From frame numbers (regular, immune to network jitter) placed by the median offset of the arrival times; from
        arrival times alone, or ``i / fps`` when neither is known.
        """
        n = self.num_frames
        if self.frame_numbers is not None and len(self.frame_numbers) == n and n:
            fn = np.asarray(self.frame_numbers, dtype=np.float64)
            rel = (fn - fn[0]) / (self.fps * self.frame_number_step)
            if self.sub_frames is not None and len(self.sub_frames) == n:
                rel = rel + (np.asarray(self.sub_frames, np.float64) - float(self.sub_frames[0])) / (
                    self.fps * self.frame_number_step
                )
            if self.frame_times is not None and len(self.frame_times) == n:
                return rel + float(np.median(np.asarray(self.frame_times, np.float64) - rel))
            return rel
        if self.frame_times is not None and len(self.frame_times) == n:
            return np.asarray(self.frame_times, dtype=np.float64)
        return np.arange(n, dtype=np.float64) / self.fps

    def gaps(self) -> list[tuple[int, int]]:
        """(index of the frame before a gap, number of frames missing) wherever frame numbers skip."""
        if self.frame_numbers is None or len(self.frame_numbers) < 2:
            return []
        d = np.diff(np.asarray(self.frame_numbers, dtype=np.int64))
        step = self.frame_number_step
        return [(int(i), int(v // step) - 1) for i, v in enumerate(d) if v > step]

    def on_grid(self, fps: float | None = None, duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames on a uniform grid starting at the first audio sample: (frames [M, 61], measured [M] bool).

        Grid frame j is sampled at its centre ``(j + 0.5) / fps`` by linear interpolation between received frames
        (edges hold); ``measured`` is False where the sample falls in a gap or outside the received frames.
        """
        fps = float(fps or self.fps)
        dur = float(duration_s if duration_s is not None else self.duration_s)
        m = max(1, int(round(dur * fps)))
        grid_t = frame_centres(m, fps)
        if self.num_frames == 0:
            return np.zeros((m, len(NAMES)), np.float32), np.zeros(m, bool)
        t = self.times()
        order = np.argsort(t, kind="stable")
        t, frames = t[order], self.frames[order]
        keep = np.concatenate([[True], np.diff(t) > 1e-9])
        t, frames = t[keep], frames[keep]
        out = interp_frames(t, frames, grid_t)
        src_period = 1.0 / self.fps
        near = np.searchsorted(t, grid_t)
        prev_t = t[np.clip(near - 1, 0, len(t) - 1)]
        next_t = t[np.clip(near, 0, len(t) - 1)]
        measured = (grid_t >= t[0] - 0.5 * src_period) & (grid_t <= t[-1] + 0.5 * src_period)
        measured &= (next_t - prev_t <= 1.5 * src_period) | (np.abs(grid_t - t[np.clip(near, 0, len(t) - 1)]) < 1e-9)
        return out, measured

    def to_json(self) -> dict[str, Any]:
        meta = dict(self.meta)
        meta.update(
            {
                "format": TAKE_FORMAT,
                "version": TAKE_VERSION,
                "names": list(NAMES),
                "fps": float(self.fps),
                "num_frames": self.num_frames,
                "frame_times": None if self.frame_times is None else [round(float(x), 6) for x in self.frame_times],
                "frame_numbers": None if self.frame_numbers is None else [int(x) for x in self.frame_numbers],
                "sub_frames": None if self.sub_frames is None else [round(float(x), 7) for x in self.sub_frames],
                "gaps": [list(g) for g in self.gaps()],
                "dropped_frames": int(sum(g[1] for g in self.gaps())),
            }
        )
        audio = dict(meta.get("audio") or {})
        if self.audio is not None:
            audio.update({"sample_rate": int(self.sample_rate), "num_samples": int(len(self.audio))})
            audio["duration_s"] = round(len(self.audio) / self.sample_rate, 6)
        meta["audio"] = audio or None
        return meta




def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=np.float32))
    return buf.getvalue()


def new_take_stem(out_dir: str | Path = DEFAULT_RECORDS, when: _dt.datetime | None = None, base: str | None = None) -> Path:
    """``out_dir/<YYYY-mm-dd-HH-MM-SS>`` (or ``out_dir/<base>``), with ``-2``, ``-3``... appended if that take exists."""
    out_dir = Path(out_dir)
    base = base or (when or _dt.datetime.now()).strftime("%Y-%m-%d-%H-%M-%S")
    for k in range(1, 10000):
        stem = out_dir / (base if k == 1 else f"{base}-{k}")
        if stem.with_name(stem.name + ".partial").exists():  # a take being recorded (motion.livelink.partial)
            continue
        if not any(stem.with_name(stem.name + s).exists() or stem.with_name(stem.name + s + ".part").exists() for s in _SUFFIXES):
            return stem
    raise RuntimeError(f"{out_dir}: too many takes named {base}*")


def save_take(take: Take, out_dir: str | Path = DEFAULT_RECORDS, stem: str | Path | None = None) -> Path:
    """Write the take's .wav (if it has audio), .npy and .json atomically; returns the stem path. Never overwrites."""
    frames = check_frames(take.frames, "take frames") if take.num_frames else np.zeros((0, len(NAMES)), np.float32)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(stem) if stem is not None else new_take_stem(out_dir)
    if not stem.is_absolute() and stem.parent == Path("."):
        stem = out_dir / stem
    for s in (".npy", ".wav", ".json"):
        if stem.with_name(stem.name + s).exists():
            raise FileExistsError(f"{stem.with_name(stem.name + s)} exists; takes are never overwritten")
    if take.audio is not None:
        write_wav_pcm16(stem.with_name(stem.name + ".wav"), take.audio, int(take.sample_rate))
    _atomic_write_bytes(stem.with_name(stem.name + ".npy"), _npy_bytes(frames))
    meta = take.to_json()
    if take.audio is not None:
        meta["audio"]["file"] = stem.name + ".wav"
    meta["frames_file"] = stem.name + ".npy"
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items()) + "\n}\n"
    _atomic_write_bytes(stem.with_name(stem.name + ".json"), text.encode("utf-8"))
    take.stem = stem
    return stem


def resolve_stem(path_or_stem: str | Path) -> Path:
    """``records/X``, ``records/X.npy``/``.wav``/``.json`` → ``records/X``."""
    p = Path(path_or_stem)
    return p.with_suffix("") if p.suffix.lower() in _SUFFIXES else p


def load_take(path_or_stem: str | Path, fps: float | None = None, load_audio: bool = True) -> Take:
    """Load a take by stem or by any of its files; a bare ``.npy`` (needs ``fps`` unless a JSON says) or an app ``.csv``.

    An explicit ``fps`` overrides the JSON's rate (with a warning when they differ).
    """
    p = Path(path_or_stem)
    if p.suffix.lower() == ".csv":
        return import_app_take(p, find_app_audio(p))
    stem = resolve_stem(p)
    npy, wav, js = (stem.with_name(stem.name + s) for s in (".npy", ".wav", ".json"))
    if p.suffix.lower() == ".npy" and not npy.exists():
        raise TakeError(f"{p}: no such file")
    if not npy.exists():
        raise TakeError(f"{stem}: no {npy.name} here; give a take's stem (records/<name>) or the path of a [T, 61] .npy")
    meta: dict[str, Any] = {}
    if js.exists():
        try:
            meta = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise TakeError(f"{js}: unreadable take JSON ({err})") from err
    try:
        frames = load_npy(npy)
    except ValueError as err:
        raise TakeError(str(err)) from err
    frames = check_frames(frames, str(npy)) if frames.size else np.zeros((0, len(NAMES)), np.float32)
    names = meta.get("names")
    if names is not None and list(names) != list(NAMES):
        log.warning("%s: columns are not in Live Link wire order; reordering by name", js)
        frames = reorder(frames, names, NAMES)
    json_fps = meta.get("fps")
    if fps is None and json_fps is None:
        raise TakeError(f"{npy}: no JSON says the frame rate; pass it (--fps)")
    if fps is not None and json_fps is not None and abs(float(fps) - float(json_fps)) > 1e-6:
        log.warning("%s says %s fps; using %s as asked", js.name, json_fps, fps)
    try:
        rate = float(fps if fps is not None else json_fps)
    except (TypeError, ValueError):
        rate = float("nan")
    if not (math.isfinite(rate) and 0 < rate <= 1000):
        src = "--fps" if fps is not None else f"{js.name}'s fps"
        raise TakeError(f"{npy}: {src} is {fps if fps is not None else json_fps!r}; a frame rate must be a number "
                        f"between 0 and 1000")

    def arr(key, dtype):
        v = meta.get(key)
        return None if v is None or len(v) != len(frames) else np.asarray(v, dtype=dtype)

    audio, sr = None, None
    if load_audio and wav.exists():
        try:
            audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        except Exception as err:
            raise TakeError(f"{wav}: unreadable audio ({err})") from err
        audio = audio.mean(axis=1)
    return Take(
        frames=frames, fps=rate, frame_times=arr("frame_times", np.float64), frame_numbers=arr("frame_numbers", np.int64),
        sub_frames=arr("sub_frames", np.float32), audio=audio, sample_rate=sr, meta=meta, stem=stem,
    )


# --- importing takes recorded by the Live Link Face app ---


def find_app_audio(csv_path: str | Path) -> Path | None:
    """The app's take folder holds ``<Slate>_<Take>.mov`` beside ``<Slate>_<Take>_<Device>.csv``; find it."""
    csv_path = Path(csv_path)
    stem = csv_path.stem
    if stem.endswith("_cal"):
        stem = stem[: -len("_cal")]
    candidates = [stem, stem.rsplit("_", 1)[0] if "_" in stem else stem]
    for c in candidates:
        for ext in (".mov", ".MOV", ".wav", ".m4a", ".mp4"):
            p = csv_path.with_name(c + ext)
            if p.exists():
                return p
    return None


def media_start_timecode_s(path: str | Path) -> float | None:
    """Start timecode of a video (seconds since midnight) via ffprobe, or None when there is none."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    cmd = [ffprobe, "-v", "error", "-show_entries", "stream=r_frame_rate,codec_type:stream_tags=timecode:format_tags=timecode",
           "-of", "json", str(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=30)
        info = json.loads(out.stdout or b"{}")
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return None
    rate, tc = None, (info.get("format", {}).get("tags") or {}).get("timecode")
    for s in info.get("streams", []):
        tc = tc or (s.get("tags") or {}).get("timecode")
        if s.get("codec_type") == "video" and s.get("r_frame_rate", "0/0") != "0/0":
            num, den = s["r_frame_rate"].split("/")
            rate = float(num) / float(den or 1)
    if not tc or not rate:
        return None

    try:
        h, m, s, ff = parse_timecode(tc)
    except ValueError:
        return None
    return h * 3600 + m * 60 + s + ff / rate


def import_app_take(csv_path: str | Path, audio_path: str | Path | None = None, offset_s: float | None = None,
                    sample_rate: int = 44100) -> Take:
    """A Live Link Face app take (its CSV + the audio of its .mov, or a wav) → :class:`Take`.

    Face frame times come from the CSV's timecodes. ``offset_s`` is when the first CSV row happens on the audio's
    time axis; by default it is read from the video's start timecode (ffprobe) and is 0 when there is none.
    """
    csv_path = Path(csv_path)
    data = read_llf_csv(csv_path)
    audio, sr, offset_source = None, None, "manual" if offset_s is not None else "assumed 0"
    if audio_path is not None:
        audio, sr = load_audio_file(audio_path, sample_rate)
        if offset_s is None:
            start = media_start_timecode_s(audio_path)
            if start is not None and len(data.frame_numbers):
                first = (data.frame_numbers[0] + float(data.sub_frames[0])) / data.timecode_fps
                diff = first - start
                if abs(diff) < 10.0:
                    offset_s, offset_source = diff, "video timecode"
                else:
                    log.warning("%s: video timecode is %.1f s away from the CSV; assuming they start together", audio_path, diff)
    offset = float(offset_s or 0.0)
    step = max(1, int(round(data.timecode_fps / data.fps)))
    parts = csv_path.stem.split("_")
    meta = {
        "source": "Live Link Face app",
        "csv_file": csv_path.name,
        "device_id": None,
        "subject": None,
        "device_name": parts[-1] if len(parts) >= 3 else None,
        "rate": [int(round(data.timecode_fps)), 1],
        "frame_number_step": step,
        "timecode_fps": data.timecode_fps,
        "first_timecode": data.timecodes[0] if data.timecodes else None,
        "audio_offset_s": offset,
        "audio_offset_source": offset_source,
        "audio": {"source_file": str(Path(audio_path).name) if audio_path else None, "device": None},
        "packets": None,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    return Take(
        frames=data.frames, fps=data.fps, frame_times=data.times + offset, frame_numbers=data.frame_numbers,
        sub_frames=data.sub_frames, audio=audio, sample_rate=sr, meta=meta,
    )


__all__ = [
    "Take", "TakeError", "find_app_audio", "import_app_take", "load_take", "media_start_timecode_s", "new_take_stem",
    "resolve_stem", "save_take",
]
