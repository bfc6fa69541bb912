"""Reading any audio file as mono float32 at a chosen rate (the one place audio enters `motion`)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TTS_SAMPLE_RATE = 44100


class AudioLoadError(RuntimeError):
    """An audio file could not be read; the message says which file and what to do."""


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data, int(sr)


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioLoadError(
            f"{path}: this format needs ffmpeg to decode (install it: apt-get install ffmpeg), or convert it to wav first"
        )
    # Decode to an in-memory float wav, keeping the file's own rate and channels.
    probe = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-f", "wav", "-acodec", "pcm_f32le", "-"],
        capture_output=True,
    )
    if probe.returncode != 0 or not probe.stdout:
        msg = probe.stderr.decode(errors="replace").strip().splitlines()
        raise AudioLoadError(f"{path}: ffmpeg could not decode an audio track ({msg[-1] if msg else 'no audio stream'})")
    import io

    import soundfile as sf

    data, sr = sf.read(io.BytesIO(probe.stdout), dtype="float32", always_2d=True)
    return data, int(sr)


def load_audio(path: str | Path, sample_rate: int | None = TTS_SAMPLE_RATE, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read any audio (or video's audio track) as float32 in [-1, 1].

    Returns ``(audio, rate)``: ``audio`` is [N] when ``mono`` (channels averaged) else [N, C]; it is resampled
    (soxr, high quality) to ``sample_rate`` unless that is None. wav/flac/ogg/mp3 are read with libsndfile; anything
    else (m4a, mov, mp4, ...) through ffmpeg.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioLoadError(f"{path}: no such audio file")
    try:
        data, sr = _read_soundfile(path)
    except Exception as err:  # libsndfile does not know the container: try ffmpeg
        log.debug("soundfile could not read %s (%s); trying ffmpeg", path, err)
        data, sr = _read_ffmpeg(path)
    if data.size == 0:
        raise AudioLoadError(f"{path}: the file holds no audio samples")
    if mono:
        data = data.mean(axis=1)
    if sample_rate is not None and sr != sample_rate:
        import soxr

        data = soxr.resample(data, sr, sample_rate, quality="HQ").astype(np.float32)
        sr = sample_rate
    return np.ascontiguousarray(data, dtype=np.float32), sr


def write_wav_pcm16(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono/multi-channel float audio as PCM16 wav atomically (temp file + rename)."""
    import os

    import soundfile as sf

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
