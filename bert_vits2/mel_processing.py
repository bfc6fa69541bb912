"""TTS audio features: linear and log-mel spectrograms exactly as Bert-VITS2 v2.3 computes them.

The only place in the project that turns waveforms into spectrograms. Numerics follow upstream's
``mel_processing.py`` so that checkpoints trained there see the same features here:

- reflect-pad ``(n_fft - hop) // 2`` samples on both sides, then ``torch.stft`` with a periodic Hann
  window, ``center=False``, one-sided;
- magnitude ``sqrt(re^2 + im^2 + 1e-6)`` (the epsilon inside the root keeps gradients finite);
- mel = Slaney ``librosa.filters.mel(sr=, n_fft=, n_mels=, fmin=, fmax=)`` (keyword call, identical to
  upstream's positional call on librosa 0.9) applied to the magnitude, then ``log(clamp(x, 1e-5))``.

Windows and mel bases are built once per (size, dtype, device) and cached.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bert_vits2.audio import AudioReadError, read_audio
from bert_vits2.checkpoint import atomic_torch_save

__all__ = [
    "spectrogram_torch",
    "spec_to_mel_torch",
    "mel_spectrogram_torch",
    "spectrogram_frames",
    "spec_cache_path",
    "load_wav",
    "load_wav_spectrogram",
]

logger = logging.getLogger(__name__)

MAGNITUDE_EPS = 1e-6  # added to re^2 + im^2 before the square root
LOG_CLAMP = 1e-5  # floor before the log of the mel energies


@functools.lru_cache(maxsize=32)
def _hann_window(win_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.hann_window(win_size, dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _mel_basis(
    sampling_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float | None, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    import librosa  # imported lazily: heavy, and only needed for mel features

    basis = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax)
    return torch.from_numpy(basis).to(dtype=dtype, device=device)


def _as_batch(y: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor waveform, got {type(y).__name__}")
    if not y.is_floating_point():
        raise TypeError(f"expected a float waveform in [-1, 1], got dtype {y.dtype} (divide int16 PCM by 32768)")
    if y.dim() == 1:
        return y.unsqueeze(0), True
    if y.dim() != 2:
        raise ValueError(f"expected a waveform of shape [batch, samples] or [samples], got {tuple(y.shape)}")
    return y, False


def _warn_if_out_of_range(y: torch.Tensor) -> None:
    """Warn when input audio leaves [-1, 1] (its features would not match what the model was trained on).

    Only audio read from disk is checked: a waveform that requires grad is the generator's own output during
    training (out of range there is expected, and turning it into Python floats warns and syncs), and a waveform
    on an accelerator would need a device->host copy on every call. One ``aminmax`` pass, no copy, on the CPU.
    """
    if y.requires_grad or y.device.type != "cpu" or not y.numel():
        return
    lo, hi = torch.aminmax(y)
    if lo < -1.0 or hi > 1.0:
        logger.warning("waveform outside [-1, 1] (min %.3f, max %.3f): features will not match training data",
                       float(lo), float(hi))


def spectrogram_frames(num_samples: int, n_fft: int, hop_size: int) -> int:
    """Number of frames ``spectrogram_torch`` gives for ``num_samples`` samples (center=False)."""
    pad = (n_fft - hop_size) // 2
    return (num_samples + 2 * pad - n_fft) // hop_size + 1


def spectrogram_torch(
    y: torch.Tensor, n_fft: int, sampling_rate: int, hop_size: int, win_size: int, center: bool = False
) -> torch.Tensor:
    """Linear magnitude spectrogram [B, n_fft//2+1, frames] of ``y`` [B, samples] (or [F, frames] for 1-D ``y``).

    ``sampling_rate`` is unused (kept for upstream's signature).
    """
    del sampling_rate
    y, unbatched = _as_batch(y)
    _warn_if_out_of_range(y)
    pad = (n_fft - hop_size) // 2
    if y.size(-1) <= pad or y.size(-1) + 2 * pad < n_fft:
        need = max(pad + 1, n_fft - 2 * pad)
        raise ValueError(f"audio too short for a spectrogram: {y.size(-1)} samples, need at least {need} "
                         f"(n_fft {n_fft}, hop {hop_size})")
    y = F.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = _hann_window(win_size, y.dtype, y.device)
    stft = torch.stft(
        y, n_fft, hop_length=hop_size, win_length=win_size, window=window, center=center,
        pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    )
    spec = torch.view_as_real(stft).pow(2).sum(-1).add(MAGNITUDE_EPS).sqrt()
    return spec.squeeze(0) if unbatched else spec


def spec_to_mel_torch(
    spec: torch.Tensor, n_fft: int, num_mels: int, sampling_rate: int, fmin: float, fmax: float | None
) -> torch.Tensor:
    """Log-mel [.., num_mels, frames] from a linear magnitude spectrogram [.., n_fft//2+1, frames]."""
    basis = _mel_basis(int(sampling_rate), int(n_fft), int(num_mels), float(fmin),
                       None if fmax is None else float(fmax), spec.dtype, spec.device)
    if spec.size(-2) != basis.size(1):
        raise ValueError(f"spectrogram has {spec.size(-2)} frequency bins, n_fft {n_fft} needs {basis.size(1)}")
    mel = torch.matmul(basis, spec)
    return torch.log(torch.clamp(mel, min=LOG_CLAMP))


def mel_spectrogram_torch(
    y: torch.Tensor, n_fft: int, num_mels: int, sampling_rate: int, hop_size: int, win_size: int,
    fmin: float, fmax: float | None, center: bool = False,
) -> torch.Tensor:
    """Log-mel spectrogram [B, num_mels, frames] of ``y`` [B, samples] (what training compares y_hat with)."""
    spec = spectrogram_torch(y, n_fft, sampling_rate, hop_size, win_size, center=center)
    return spec_to_mel_torch(spec, n_fft, num_mels, sampling_rate, fmin, fmax)


# --------------------------------------------------------------------------------------------------
# Data-loader helpers: read a training wav and cache its linear spectrogram beside it.

def spec_cache_path(wav_path: str | os.PathLike) -> Path:
    """``speaker/utt.wav`` -> ``speaker/utt.spec.pt`` (upstream's cache name; other names get ``.spec.pt`` appended)."""
    path = Path(wav_path)
    if path.suffix.lower() == ".wav":
        return path.with_suffix(".spec.pt")
    return path.with_name(path.name + ".spec.pt")


def load_wav(wav_path: str | os.PathLike, sampling_rate: int | None = None) -> torch.Tensor:
    """Mono float32 waveform [1, samples] in [-1, 1] (16-bit PCM divided by 32768, as upstream).

    Raises ValueError naming the file when it is not mono or its rate differs from ``sampling_rate``.
    """
    try:
        audio, rate = read_audio(wav_path)
    except AudioReadError as exc:
        raise ValueError(f"cannot read audio: {exc}") from None
    if audio.shape[1] != 1:
        raise ValueError(f"{wav_path}: {audio.shape[1]} channels, training audio must be mono (run resample.py)")
    if sampling_rate is not None and rate != sampling_rate:
        raise ValueError(f"{wav_path}: {rate} Hz, the config expects {sampling_rate} Hz (run resample.py)")
    return torch.from_numpy(audio[:, 0].copy()).unsqueeze(0)


def _get(data_hps: Mapping[str, Any] | Any, key: str) -> Any:
    return data_hps[key] if isinstance(data_hps, Mapping) else getattr(data_hps, key)


def load_wav_spectrogram(
    wav_path: str | os.PathLike, data_hps: Mapping[str, Any] | Any, use_cache: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear spectrogram [n_fft//2+1, frames] and waveform [1, samples] of a training wav.

    ``data_hps`` is ``hps.data`` (sampling_rate, filter_length, hop_length, win_length). With
    ``use_cache`` the spectrogram is read from / written to ``spec_cache_path(wav)`` (atomically);
    a cache that is unreadable, older than the wav or of the wrong shape is recomputed.
    """
    sampling_rate = int(_get(data_hps, "sampling_rate"))
    n_fft = int(_get(data_hps, "filter_length"))
    hop = int(_get(data_hps, "hop_length"))
    win = int(_get(data_hps, "win_length"))
    audio = load_wav(wav_path, sampling_rate)
    expected = (n_fft // 2 + 1, spectrogram_frames(audio.size(-1), n_fft, hop))
    cache = spec_cache_path(wav_path)
    if use_cache and cache.is_file() and cache.stat().st_mtime >= Path(wav_path).stat().st_mtime:
        try:
            spec = torch.load(cache, weights_only=True, map_location="cpu")
            if isinstance(spec, torch.Tensor) and tuple(spec.shape) == expected and spec.dtype == torch.float32:
                return spec, audio
            logger.warning("%s: stale spectrogram cache (shape %s, expected %s), recomputing", cache,
                           tuple(spec.shape) if isinstance(spec, torch.Tensor) else type(spec).__name__, expected)
        except Exception as exc:  # noqa: BLE001 - any unreadable cache is simply rebuilt
            logger.warning("%s: unreadable spectrogram cache (%s), recomputing", cache, str(exc).splitlines()[0][:200])
    spec = spectrogram_torch(audio, n_fft, sampling_rate, hop, win, center=False).squeeze(0)
    if use_cache:
        atomic_torch_save(spec, cache)
    return spec, audio
