"""The Live Link Face app's CSV export: read and write, mapping every column by name.

Header: ``Timecode,BlendShapeCount,<61 names>`` (some files spell ``BlendshapeCount``; matched case-insensitively).
The app's column order is the wire order with ``JawLeft/JawRight`` and ``MouthLeft/MouthRight`` swapped, so columns are
always looked up by name. Rows: ``HH:MM:SS:FF.fff,61,<61 values>`` where FF.fff is the frame (with its sub-frame
fraction) within the second at the take's rate.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bert_vits2.fileio import write_text_atomic
from motion.arkit import CSV_NAMES, NAMES, NUM_VALUES, ROTATION_NAMES, check_frames
from motion.constants import FACE_FPS as DEFAULT_FPS

log = logging.getLogger(__name__)


_COUNT_COLUMN = "blendshapecount"
_STANDARD_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 120.0)
_TIMECODE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[:;.](\d+(?:\.\d*)?)\s*$")


class CsvFormatError(ValueError):
    """The file is not a Live Link Face CSV (the message says what is wrong and where)."""


@dataclass
class LLFCsv:
    """A parsed app CSV. ``frames`` is float32 [T, 61] in wire order.

    ``fps`` is the rate of the rows (what the frames were captured at); ``timecode_fps`` the rate of the timecodes'
    frame field, which can be higher (a 30 fps capture with 60 fps timecodes steps FF by two).
    """

    frames: np.ndarray
    fps: float
    timecodes: list[str]
    frame_numbers: np.ndarray  # int64: timecode frames since 00:00:00:00 at ``timecode_fps``
    sub_frames: np.ndarray  # float32 in [0, 1)
    timecode_fps: float = DEFAULT_FPS

    @property
    def times(self) -> np.ndarray:
        """Seconds since the first row, from the timecodes (float64)."""
        if len(self.frame_numbers) == 0:
            return np.zeros(0)
        pos = self.frame_numbers.astype(np.float64) + self.sub_frames
        return (pos - pos[0]) / self.timecode_fps

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """(row index after which rows are missing, number of missing rows) wherever the timecodes jump."""
        step = self.timecode_fps / self.fps
        d = np.diff(self.frame_numbers) / step
        return [(int(i), int(round(v)) - 1) for i, v in enumerate(d) if round(v) > 1]


def parse_timecode(text: str) -> tuple[int, int, int, float]:
    """``HH:MM:SS:FF.fff`` → (hours, minutes, seconds, frame-with-fraction). Raises ``ValueError`` if malformed."""
    m = _TIMECODE.match(text)
    if not m:
        raise ValueError(f"bad timecode {text!r} (expected HH:MM:SS:FF.fff)")
    h, mi, s, ff = int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))
    if mi >= 60 or s >= 60:
        raise ValueError(f"bad timecode {text!r}: minutes and seconds must be below 60")
    return h, mi, s, ff


def format_timecode(frame_number: int, fps: float, sub_frame: float = 0.0) -> str:
    """Frame count since midnight at ``fps`` (+ sub-frame) → ``HH:MM:SS:FF.fff``."""
    rate = int(round(fps))
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    sub = min(max(float(sub_frame), 0.0), 0.999)
    total_s, ff = divmod(int(frame_number), rate)
    h, rest = divmod(total_s, 3600)
    mi, s = divmod(rest, 60)
    return f"{h % 24:02d}:{mi:02d}:{s:02d}:{ff:02d}.{int(round(sub * 1000)) if sub < 0.9995 else 999:03d}"


def _guess_fps(parsed: list[tuple[int, int, int, float]]) -> float:
    """The take's rate from its timecodes: the smallest standard rate above the largest frame field."""
    if not parsed:
        return DEFAULT_FPS
    top = max(int(p[3]) for p in parsed)
    for rate in _STANDARD_RATES:
        if top < rate:
            return rate if top >= rate / 2 or len(parsed) < rate else DEFAULT_FPS
    return float(top + 1)


def read_llf_csv(path: str | Path, fps: float | None = None, timecode_fps: float | None = None) -> LLFCsv:
    """Read an app CSV (columns by name).

    ``timecode_fps`` defaults to the rate implied by the timecodes' frame field (60 in practice); ``fps`` (the rows'
    rate) defaults to that divided by the typical step between rows.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise CsvFormatError(f"{path}: no such file") from err
    except UnicodeDecodeError as err:
        raise CsvFormatError(f"{path}: not a text CSV file ({err})") from err
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise CsvFormatError(f"{path}: the file is empty")
    header = [c.strip() for c in rows[0]]
    lower = [c.lower() for c in header]
    if "framerate" in lower and _COUNT_COLUMN not in lower:
        raise CsvFormatError(
            f"{path}: this looks like Unreal's ARKit CSV (Timecode, FrameRate, ...), not the Live Link Face app's "
            f"export (Timecode, BlendShapeCount, ...)"
        )
    if not lower or lower[0] != "timecode":
        raise CsvFormatError(f"{path}: first column must be Timecode (got {header[0]!r}); is this a Live Link Face CSV?")
    col = {name: i for i, name in enumerate(lower)}
    missing = [n for n in NAMES if n.lower() not in col]
    missing_shapes = [n for n in missing if n not in ROTATION_NAMES]
    if missing_shapes:
        raise CsvFormatError(f"{path}: missing columns {', '.join(missing_shapes)} (the header must name all 52 shapes)")
    if missing:
        log.warning("%s: no columns %s; they are set to 0", path, ", ".join(missing))
    idx = [col.get(n.lower(), -1) for n in NAMES]

    body = rows[1:]
    frames = np.zeros((len(body), NUM_VALUES), dtype=np.float32)
    timecodes: list[str] = []
    parsed = []
    for k, row in enumerate(body):
        line = k + 2
        if len(row) < len(header):
            raise CsvFormatError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
        try:
            parsed.append(parse_timecode(row[0]))
        except ValueError as err:
            raise CsvFormatError(f"{path}, line {line}: {err}") from err
        timecodes.append(row[0].strip())
        try:
            frames[k] = [float(row[i]) if i >= 0 else 0.0 for i in idx]
        except ValueError as err:
            raise CsvFormatError(f"{path}, line {line}: a value is not a number ({err})") from err
    if not np.isfinite(frames).all():
        raise CsvFormatError(f"{path}: holds NaN or infinite values")
    tc_rate = float(timecode_fps) if timecode_fps else _guess_fps(parsed)
    r = int(round(tc_rate))
    numbers = np.array([((h * 60 + mi) * 60 + s) * r + int(ff) for h, mi, s, ff in parsed], dtype=np.int64)
    subs = np.array([ff - int(ff) for *_, ff in parsed], dtype=np.float32)
    if fps:
        rate = float(fps)
    else:
        steps = np.diff(numbers)
        steps = steps[steps > 0]
        rate = tc_rate / float(np.median(steps)) if len(steps) else tc_rate
    return LLFCsv(frames=frames, fps=rate, timecodes=timecodes, frame_numbers=numbers, sub_frames=subs, timecode_fps=tc_rate)


def read_csv(path: str | Path, fps: float | None = None) -> tuple[np.ndarray, float]:
    """Read an app CSV → (frames float32 [T, 61] in wire order, the rows' rate in frames per second)."""
    data = read_llf_csv(path, fps)
    return data.frames, data.fps


def write_csv(path: str | Path, frames: np.ndarray, *options: Any, **timecodes: Any) -> None:
    """Write [T, 61] wire-order frames as an app CSV, atomically (``fps`` and the timecode options of
    :func:`csv_text`, in its order)."""
    write_text_atomic(path, csv_text(frames, *options, **timecodes))


def csv_text(
    frames: np.ndarray,
    fps: float = DEFAULT_FPS,
    frame_numbers: np.ndarray | None = None,
    sub_frames: np.ndarray | None = None,
    start_frame: int = 0,
    timecode_fps: float | None = None,
) -> str:
    """[T, 61] wire-order frames as the text of an app CSV (the app's column order and header).

    Timecodes count at ``timecode_fps`` (default ``fps``): from ``frame_numbers`` (+ ``sub_frames``) when given, else
    from ``start_frame`` one row every ``1 / fps`` seconds.
    """
    frames = check_frames(frames)
    tc = float(timecode_fps or fps)
    if fps <= 0 or abs(tc - round(tc)) > 1e-6 or tc <= 0:
        raise ValueError(f"the app's CSV timecodes need a whole frame rate; got {tc} (resample first)")
    t = frames.shape[0]
    if frame_numbers is None:
        numbers = start_frame + np.floor(np.arange(t) * tc / fps + 1e-9).astype(np.int64)
    else:
        numbers = np.asarray(frame_numbers)
    subs = np.zeros(t) if sub_frames is None else np.asarray(sub_frames, dtype=np.float64)
    if len(numbers) != t or len(subs) != t:
        raise ValueError("frame_numbers and sub_frames must have one entry per frame")
    order = [NAMES.index(n) for n in CSV_NAMES]
    out = io.StringIO()
    out.write("Timecode,BlendShapeCount," + ",".join(CSV_NAMES) + "\n")
    for i in range(t):
        vals = ",".join(f"{v:.10f}" for v in frames[i, order].tolist())
        out.write(f"{format_timecode(int(numbers[i]), tc, float(subs[i]))},{NUM_VALUES},{vals}\n")
    return out.getvalue()


__all__ = ["CsvFormatError", "LLFCsv", "csv_text", "format_timecode", "parse_timecode", "read_csv", "read_llf_csv", "write_csv"]
