"""Result files: ``[T, 61]`` npy + Live Link Face CSV + JSON (+ wav and a PNG plot for a request).

- :func:`write_curve_files`: the curve files of one clip (``wav_to_visemes.py``, the web UI, the server).
- :func:`write_outputs`: wav + curve files + plot into a per-request folder made by :func:`new_request_dir`
  (never fixed names in the working directory).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bert_vits2.audio import write_wav_pcm16
from bert_vits2.fileio import atomic_write, save_npy_atomic, write_json_atomic
from motion.arkit import INDEX, NAMES
from motion.livelink.app_csv import write_csv

log = logging.getLogger(__name__)

#: curves shown in the plot (jaw, lips, smile, blink, brows)
PLOT_NAMES = ("JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthSmileLeft", "EyeBlinkLeft", "BrowInnerUp",
              "BrowDownLeft")


def new_request_dir(root: str | os.PathLike) -> Path:
    """A fresh, uniquely named folder under ``root`` for one request's files."""
    path = Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def plot_curves(frames: np.ndarray, fps: float, path: str | os.PathLike, title: str = "") -> Path:
    """PNG of the main blendshape curves over time."""
    import matplotlib  # matplotlib: ~0.4 s import (Figure ~1.3 s), only for PNG plots

    t = (np.arange(len(frames)) + 0.5) / fps
    # CJK titles: fall back to WenQuanYi (Debian fonts-wqy-microhei) where DejaVu has no glyph
    fonts = {"font.family": ["DejaVu Sans", "WenQuanYi Micro Hei", "sans-serif"]}
    with matplotlib.rc_context(fonts):
        return _plot(frames, t, path, title)


def _plot(frames: np.ndarray, t: np.ndarray, path: str | os.PathLike, title: str) -> Path:
    from matplotlib.figure import Figure  # matplotlib: ~1.3 s import, only for PNG plots

    fig = Figure(figsize=(9, 3.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for name in PLOT_NAMES:
        ax.plot(t, frames[:, INDEX[name]], label=name, linewidth=1.2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("weight")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, max(t[-1] if len(t) else 0.0, 1e-3))
    ax.set_title(title or "blendshape curves")
    ax.legend(loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def write_curve_files(
    npy_path: str | os.PathLike, frames: np.ndarray, fps: float, meta: dict[str, Any] | None = None,
    csv_path: str | os.PathLike | None = None, json_path: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write ``frames`` as npy (float32 ``[T, 61]``), the app's CSV (whole frame rates only: its timecodes need one)
    and JSON (names, fps, frame count + ``meta``). Returns the paths written, by kind."""
    frames = np.asarray(frames, dtype=np.float32)
    paths = {"npy": save_npy_atomic(npy_path, frames)}
    if csv_path is not None:
        if abs(fps - round(fps)) < 1e-6:
            write_csv(csv_path, frames, fps=int(round(fps)))
            paths["csv"] = Path(csv_path)
        else:
            log.warning("%s: no Live Link Face CSV at %g fps (its timecodes need a whole rate)", csv_path, fps)
    if json_path is not None:
        info = {"names": list(NAMES), "fps": fps, "num_frames": int(len(frames)), **(meta or {}),
                "csv": Path(csv_path).name if "csv" in paths else None}
        paths["json"] = write_json_atomic(json_path, info)
    return paths


def write_outputs(
    out_dir: str | os.PathLike, audio: np.ndarray | None, sample_rate: int, face: Any, meta: dict[str, Any] | None = None,
    stem: str = "speech",
) -> dict[str, Path]:
    """Write ``<stem>.wav``, ``.npy`` ([T, 61] float32), ``.csv`` (Live Link Face app format), ``.json`` and ``.png``.

    ``audio`` None: ``<stem>.wav`` is already in ``out_dir`` (written block by block, e.g. a long upload as it was
    read; ``bert_vits2.audio.wav_pcm16_writer``) and its length is read from its header."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{stem}.{k}" for k in ("wav", "npy", "csv", "json", "png")}
    if audio is None:
        import soundfile as sf

        info = sf.info(str(paths["wav"]))
        seconds, sample_rate = info.frames / float(info.samplerate), int(info.samplerate)
    else:
        write_wav_pcm16(paths["wav"], audio, sample_rate)
        seconds = len(audio) / float(sample_rate)
    info = {"sample_rate": int(sample_rate), "audio_seconds": seconds, "face_source": face.source, **(meta or {})}
    write_curve_files(paths["npy"], face.frames, face.fps, info, paths["csv"], paths["json"])
    plot_curves(face.frames, face.fps, paths["png"], title=meta.get("title", "") if meta else "")
    return paths


__all__ = ["PLOT_NAMES", "new_request_dir", "plot_curves", "write_curve_files", "write_outputs"]
