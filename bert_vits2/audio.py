"""Audio in and out: the one place this project reads audio files and writes wavs (both libraries use it).

- :func:`read_audio`: any file (wav/flac/ogg/mp3 through libsndfile; m4a, mov, mp4, ... through ffmpeg) as float32
  ``[frames, channels]`` at its own rate.
- :func:`load_audio`: the same as mono (channel mean) or multichannel, resampled with soxr HQ (what upstream's
  ``librosa.load(path, sr=...)`` does).
- :func:`write_wav_pcm16`: 16-bit PCM wav, clipped (never wrapped), written atomically.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf
import soxr

from bert_vits2.fileio import atomic_write

log = logging.getLogger(__name__)

__all__ = ["TTS_SAMPLE_RATE", "AUDIO_EXTENSIONS", "AudioReadError", "AudioLoadError", "read_audio", "load_audio",
           "to_mono_resampled", "wav_pcm16_writer", "write_wav_pcm16"]

#: Bert-VITS2 v2.3's sampling rate (``data.sampling_rate`` of every released config)
TTS_SAMPLE_RATE = 44100

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff", ".aifc", ".webm",
     ".mp4", ".mov", ".mkv", ".mka", ".caf", ".w64", ".au", ".snd"}
)


class AudioReadError(RuntimeError):
    """An audio file could not be read; the message names the file and what to do."""


AudioLoadError = AudioReadError  # the name motion's tools used


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioReadError(f"{path}: this format needs ffmpeg to decode (apt-get install ffmpeg), or convert it to wav")
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-f", "wav", "-acodec", "pcm_f32le", "-"],
        capture_output=True,
    )
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioReadError(f"{path}: not a readable audio file (ffmpeg: {msg[-1] if msg else 'no audio stream'})")
    data, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return data, int(sr)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode any audio file to float32 ``[frames, channels]`` and its sampling rate."""
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"{path}: no such audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        sr = int(sr)
    except Exception as err:  # noqa: BLE001 - libsndfile raises several types by format; ffmpeg gets a try
        log.debug("soundfile could not read %s (%s); trying ffmpeg", path, err)
        data, sr = _read_ffmpeg(path)
    if data.size == 0:
        raise AudioReadError(f"{path}: the file holds no audio samples")
    if not np.isfinite(data).all():
        raise AudioReadError(f"{path}: the audio holds NaN or infinite samples; re-export it as PCM")
    return data, sr


def to_mono_resampled(data: np.ndarray, sr_in: int, sr_out: int | None) -> np.ndarray:
    """Channel mean, then soxr HQ resampling to ``sr_out`` (None keeps the rate)."""
    mono = data.mean(axis=1) if data.ndim == 2 else data
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if sr_out is not None and sr_in != sr_out and mono.size:
        mono = soxr.resample(mono, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)
    return mono


def load_audio(path: str | os.PathLike, sample_rate: int | None = TTS_SAMPLE_RATE,
               mono: bool = True) -> tuple[np.ndarray, int]:
    """Read any audio (or a video's audio track) as float32 in [-1, 1] → ``(audio, rate)``.

    ``audio`` is ``[N]`` when ``mono`` else ``[N, C]``; resampled to ``sample_rate`` unless that is None.
    """
    data, sr = read_audio(path)
    if mono:
        out = to_mono_resampled(data, sr, sample_rate)
    else:
        out = data
        if sample_rate is not None and sr != sample_rate:
            out = soxr.resample(data, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(out, dtype=np.float32), int(sample_rate or sr)


def write_wav_pcm16(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write float audio (``[N]`` or ``[N, C]``) as 16-bit PCM wav atomically, clipped to [-1, 1]."""
    audio = np.asarray(audio, dtype=np.float32)
    with wav_pcm16_writer(path, sample_rate, 1 if audio.ndim == 1 else audio.shape[1]) as write:
        for i in range(0, len(audio), 1 << 20):  # in blocks: no whole-length copies of long audio
            write(audio[i: i + (1 << 20)])
    return Path(path)


@contextlib.contextmanager
def wav_pcm16_writer(path: str | os.PathLike, sample_rate: int, channels: int = 1) -> Iterator[Callable[[np.ndarray], None]]:
    """A 16-bit PCM wav written block by block (audio that is never held whole, e.g. a long upload as it is read):
    yields ``write(block)``; the file appears, atomically, when the block ends without an error (the same bytes as
    :func:`write_wav_pcm16` on the joined blocks)."""
    with atomic_write(path, "wb") as f, sf.SoundFile(f, "w", int(sample_rate), int(channels), subtype="PCM_16",
                                                      format="WAV") as out:
        yield lambda block: out.write(np.clip(np.nan_to_num(np.asarray(block, dtype=np.float32)), -1.0, 1.0))
