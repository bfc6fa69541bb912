"""Audio -> the features the expression heads read: Bert-VITS2 latent ``z`` (posterior path) or a log-mel spectrogram.

Both run at the TTS frame rate (44100 / 512 = 86.13 frames/s): any audio is first made mono 44.1 kHz
(``bert_vits2.audio.load_audio``), spectrograms come from ``bert_vits2.mel_processing`` (the project's only TTS feature
code), ``z`` from a G checkpoint's posterior encoder ``enc_q`` (or from an exported ``post_enc.pth``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from bert_vits2.audio import TTS_SAMPLE_RATE, load_audio
from motion.constants import FEATURE_FPS, HOP

log = logging.getLogger(__name__)


N_FFT = 2048

DEFAULT_N_MELS = 80
# Log-mel normalisation (natural log): subtract the clip's loud level (99th percentile, but never below MEL_REF_FLOOR,
# so silence and very quiet noise stay low instead of being amplified), then scale. This makes the heads insensitive
# to recording level (-26..0 dB re. full scale map to the same features).
MEL_REF_FLOOR = -3.0
MEL_SCALE = 3.0


@dataclass(frozen=True)
class SpecParams:
    """STFT settings of a Bert-VITS2 config's ``data`` section (defaults: v2.3)."""

    sampling_rate: int = TTS_SAMPLE_RATE
    filter_length: int = N_FFT
    hop_length: int = HOP
    win_length: int = N_FFT

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | Any) -> "SpecParams":
        get = (lambda k: data[k]) if isinstance(data, Mapping) else (lambda k: getattr(data, k))
        return cls(int(get("sampling_rate")), int(get("filter_length")), int(get("hop_length")), int(get("win_length")))

    @property
    def fps(self) -> float:
        return self.sampling_rate / self.hop_length


def load_tts_audio(path: str | os.PathLike, sample_rate: int = TTS_SAMPLE_RATE) -> np.ndarray:
    """Any audio file (any rate, channels, wav/flac/mp3/...) -> mono float32 at ``sample_rate``.

    Files libsndfile reads are read in blocks (channel mean, then soxr HQ as a stream), so a 10-minute stereo upload
    never exists as a whole-length multichannel array; other formats (ffmpeg) go through ``load_audio``. The samples
    are those of ``load_audio`` (soxr's stream and one-shot agree exactly: tests/test_face_blocks.py)."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except Exception:  # noqa: BLE001 - not a libsndfile format (m4a, video, ...): ffmpeg via load_audio
        audio, _ = load_audio(path, sample_rate=sample_rate, mono=True)
        return audio
    with f:
        return _read_mono_resampled(f, int(sample_rate))


def iter_tts_audio(path: str | os.PathLike, sample_rate: int = TTS_SAMPLE_RATE,
                   block: int = 1 << 18) -> Iterator[np.ndarray]:
    """The samples of :func:`load_tts_audio`, block by block, so that a long upload can be turned into features and
    written out without ever being held whole (tests/test_face_blocks.py: the joined blocks are the same samples).
    Formats libsndfile cannot read are decoded whole by ffmpeg first (``load_audio``), then handed out in blocks."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except Exception:  # noqa: BLE001 - not a libsndfile format (m4a, video, ...): ffmpeg via load_audio
        audio, _ = load_audio(path, sample_rate=sample_rate, mono=True)
        for i in range(0, len(audio), block):
            yield audio[i: i + block]
        return
    with f:
        yield from _mono_blocks(f, int(sample_rate), block)


def _mono_blocks(f: Any, sample_rate: int, block: int = 1 << 18) -> Iterator[np.ndarray]:
    """An open ``soundfile.SoundFile`` -> mono float32 blocks at ``sample_rate`` (channel mean, soxr HQ stream)."""
    import soxr

    sr_in, total = int(f.samplerate), int(f.frames)
    if total <= 0:  # a header without a frame count (rare): read it whole
        data = f.read(dtype="float32", always_2d=True)
        mono = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
        yield soxr.resample(mono, sr_in, sample_rate, quality="HQ").astype(np.float32) if sr_in != sample_rate else mono
        return
    stream = None if sr_in == sample_rate else soxr.ResampleStream(sr_in, sample_rate, 1, dtype="float32", quality="HQ")
    read = 0
    while True:
        data = f.read(block, dtype="float32", always_2d=True)
        read += len(data)
        last = len(data) < block or read >= total
        mono = np.ascontiguousarray(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0], dtype=np.float32)
        del data
        yield stream.resample_chunk(mono, last=last) if stream is not None else mono
        if last:
            return


def _read_mono_resampled(f: Any, sample_rate: int, block: int = 1 << 18) -> np.ndarray:
    """An open ``soundfile.SoundFile`` -> mono float32 at ``sample_rate``, one block of ``block`` frames at a time."""
    total = int(f.frames)
    if total <= 0:
        return next(_mono_blocks(f, sample_rate, block))
    out = np.empty(int(np.ceil(total * sample_rate / int(f.samplerate))) + 16, dtype=np.float32)
    n = 0
    for mono in _mono_blocks(f, sample_rate, block):
        if n + len(mono) > len(out):
            out = np.concatenate([out[:n], np.empty(max(len(mono), len(out) // 8), np.float32)])
        out[n: n + len(mono)] = mono
        n += len(mono)
    return out[:n].copy() if n < len(out) - 16 else out[:n]


def _pad_short(audio: np.ndarray, n_fft: int) -> np.ndarray:
    # spectrogram_torch needs > (n_fft-hop)/2 samples; pad very short clips with silence
    need = n_fft
    return audio if len(audio) >= need else np.pad(audio, (0, need - len(audio)))


def num_feature_frames(num_samples: int, hop: int = HOP) -> int:
    """Frames of the spectrogram/z for a clip of ``num_samples`` (= ceil-free upstream count: samples // hop)."""
    from bert_vits2.mel_processing import spectrogram_frames

    return spectrogram_frames(max(num_samples, N_FFT), N_FFT, hop)


#: frames per block when long audio is turned into features (about 6 s at 86.13 frames/s): a 10-minute clip never
#: needs a whole-length STFT (1025 complex bins per frame) or posterior-encoder activations
FEATURE_BLOCK_FRAMES = 512
#: frames of context each side of a posterior-encoder block: its convolution stack sees 2 * 16 frames (16 layers of
#: kernel 5), so 64 leaves every kept frame exactly as in the whole computation
Z_CONTEXT_FRAMES = 64


def _spectrogram_block(audio: np.ndarray, f0: int, f1: int, params: SpecParams, start: int = 0,
                       n: int | None = None) -> torch.Tensor:
    """Linear magnitude spectrogram frames ``f0..f1`` of ``audio`` [1, n_fft//2+1, f1-f0], exactly the frames of
    ``bert_vits2.mel_processing.spectrogram_torch`` on the whole clip (reflect padding taken from the clip's ends).

    ``audio`` may be a window of the clip: its first sample is sample ``start`` of the clip, which has ``n`` samples
    (None: it ends with this window; a window not at the end must hold every sample the frames read)."""
    pad = (params.filter_length - params.hop_length) // 2
    n = start + len(audio) if n is None else int(n)
    idx = np.arange(f0 * params.hop_length, (f1 - 1) * params.hop_length + params.filter_length) - pad
    idx = np.abs(idx)  # reflect at the start (no repeated edge sample, as F.pad(mode="reflect"))
    idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)  # reflect at the end
    y = torch.from_numpy(np.clip(audio[idx - start], -1.0, 1.0).astype(np.float32, copy=False))[None]
    window = torch.hann_window(params.win_length, dtype=y.dtype)
    stft = torch.stft(y, params.filter_length, hop_length=params.hop_length, win_length=params.win_length,
                      window=window, center=False, normalized=False, onesided=True, return_complex=True)
    return torch.view_as_real(stft).pow(2).sum(-1).add(1e-6).sqrt()


def slaney_mel_basis(sampling_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                     fmax: float | None = None) -> np.ndarray:
    """Slaney-style mel filterbank [n_mels, n_fft//2+1] (float32), the same numbers as ``librosa.filters.mel``
    (htk=False, norm="slaney"; tests/test_face_blocks.py compares them). Computed here because importing librosa for
    it costs the web UI process ~130 MB (scipy.signal, numba) for a 80 x 1025 table."""
    fmax = float(sampling_rate) / 2 if fmax is None else float(fmax)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(f: float) -> float:
        return f / f_sp if f < min_log_hz else min_log_mel + float(np.log(f / min_log_hz)) / logstep

    mels = np.linspace(hz_to_mel(float(fmin)), hz_to_mel(fmax), n_mels + 2)
    mel_f = f_sp * mels
    log_t = mels >= min_log_mel
    mel_f[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sampling_rate)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


def _blocks(total: int, block: int):
    for f0 in range(0, total, block):
        yield f0, min(total, f0 + block)


def linear_spectrogram(audio: np.ndarray, params: SpecParams = SpecParams()) -> torch.Tensor:
    """Mono float32 audio at ``params.sampling_rate`` -> linear magnitude spectrogram [1, n_fft//2+1, frames]."""
    from bert_vits2.mel_processing import spectrogram_torch

    y = torch.from_numpy(_pad_short(np.asarray(audio, dtype=np.float32), params.filter_length)).unsqueeze(0)
    y = y.clamp(-1.0, 1.0)
    return spectrogram_torch(y, params.filter_length, params.sampling_rate, params.hop_length, params.win_length, center=False)


def log_mel(audio: np.ndarray, n_mels: int = DEFAULT_N_MELS, params: SpecParams = SpecParams(),
            block_frames: int = FEATURE_BLOCK_FRAMES) -> np.ndarray:
    """Mono float32 audio at 44.1 kHz -> level-normalised log-mel [n_mels, frames] at the z rate (mel-head input).

    Computed ``block_frames`` at a time (STFT frames are independent; only the level reference needs the whole clip,
    and it is taken from the finished [n_mels, frames] array), so memory stays bounded on long audio."""
    blocks = LogMelBlocks(n_mels, params, block_frames)
    blocks.push(audio)
    return blocks.finish()


#: frames per page of :class:`LogMelBlocks`' storage (2.6 MB for 80 mels, about 95 s)
_MEL_PAGE_FRAMES = 8192


class LogMelBlocks:
    """:func:`log_mel` of audio given piece by piece (a long upload as it is read): :meth:`push` any pieces, then
    :meth:`finish` gives the features of the joined audio, the same numbers as :func:`log_mel` on it (the same blocks
    of ``block_frames`` frames, each computed once its samples are in). Holds the raw log-mel [n_mels, frames] and
    less than one block of samples, never the audio."""

    def __init__(self, n_mels: int = DEFAULT_N_MELS, params: SpecParams = SpecParams(),
                 block_frames: int = FEATURE_BLOCK_FRAMES) -> None:
        self.n_mels, self.params, self.block = int(n_mels), params, max(1, int(block_frames))
        self.basis = torch.from_numpy(slaney_mel_basis(params.sampling_rate, params.filter_length, self.n_mels))
        self.buf = np.zeros(0, np.float32)  # samples start.. of the audio
        self.start = 0
        self.total = 0  # samples pushed
        self.done = 0  # frames computed
        self.pages: list[tuple[int, np.ndarray]] = []  # the raw log-mel: (first frame, [n_mels, frames])

    def _compute(self, f0: int, f1: int, n: int | None) -> None:
        from bert_vits2.mel_processing import LOG_CLAMP

        if not self.pages or f0 >= self.pages[-1][0] + self.pages[-1][1].shape[1]:
            # a few large pages: one small array per block, each kept among the freed STFT blocks, fragments the heap
            size = self.block * (_MEL_PAGE_FRAMES // self.block) if self.block <= _MEL_PAGE_FRAMES else f1 - f0
            self.pages.append((f0, np.empty((self.n_mels, size), np.float32)))
        start, page = self.pages[-1]
        with torch.no_grad():  # as mel_processing.spec_to_mel_torch, per block
            spec = _spectrogram_block(self.buf, f0, f1, self.params, self.start, n)
            mel = torch.log(torch.clamp(torch.matmul(self.basis, spec), min=LOG_CLAMP))[0]
            page[:, f0 - start: f1 - start] = mel.numpy()
        self.done = f1

    def push(self, audio: np.ndarray) -> None:
        """More mono float32 samples; every block whose samples are all in is computed now."""
        a = np.asarray(audio, dtype=np.float32).reshape(-1)
        self.buf = np.concatenate([self.buf, a]) if len(self.buf) else a  # the caller's array: no copy
        self.total += len(a)
        hop, nfft = self.params.hop_length, self.params.filter_length
        pad = (nfft - hop) // 2
        while (self.done + self.block - 1) * hop + nfft - pad <= self.total:  # the block's last sample is in
            self._compute(self.done, self.done + self.block, None)
        keep = max(0, self.done * hop - pad)  # the next block's first sample (never before the start's reflection)
        if keep > self.start:
            self.buf = self.buf[keep - self.start:]
            self.start = keep
            if self.buf.base is not None and self.buf.size < self.buf.base.size // 4:
                self.buf = self.buf.copy()  # let go of a large pushed array

    def finish(self) -> np.ndarray:
        """The level-normalised log-mel [n_mels, frames] of everything pushed (short audio padded with silence to one
        window, as :func:`log_mel`)."""
        from bert_vits2.mel_processing import spectrogram_frames

        nfft = self.params.filter_length
        if self.total < nfft:  # as _pad_short: zeros after the audio (nothing has been computed yet)
            self.buf = np.concatenate([self.buf, np.zeros(nfft - self.total, np.float32)])
            self.total = nfft
        total = spectrogram_frames(self.total, nfft, self.params.hop_length)
        for f0, f1 in _blocks(total, self.block):
            if f0 >= self.done:
                self._compute(f0, f1, self.total)
        self.buf = np.zeros(0, np.float32)
        if len(self.pages) == 1:
            mel = np.ascontiguousarray(self.pages.pop()[1][:, :total])
        else:
            mel = np.empty((self.n_mels, total), dtype=np.float32)
            while self.pages:  # joined page by page, each freed once copied
                start, page = self.pages.pop(0)
                mel[:, start: start + page.shape[1]] = page[:, : total - start]
                del page
        ref = max(float(np.percentile(mel, 99)), MEL_REF_FLOOR)
        mel -= ref
        mel /= MEL_SCALE
        mel += 1.0
        return mel


# --- incremental log-mel (live faces) ----------------------------------------------------------------------------

#: histogram of log-mel values the online level reference is taken from (natural log units)
_HIST_LO, _HIST_HI, _HIST_STEP = -14.0, 6.0, 0.05
#: the online reference forgets old audio with this half-life (s), so it follows a speaker who gets louder or quieter
ONLINE_REF_HALF_LIFE_S = 60.0


class OnlineLogMel:
    """The log-mel of :func:`log_mel`, computed as audio arrives (mono float32 at 44.1 kHz, any chunk sizes).

    Frames are the same STFT frames (the start reflected as in the whole-clip computation; a frame leaves once the
    2048 samples of its window are in, i.e. 1024 samples after its centre; :meth:`finish` adds the last frames with the
    end reflected). Only the level reference differs, as the whole clip is not known yet: instead of the clip's 99th
    percentile it is the 99th percentile of every value so far (a fixed histogram, old frames fading with a half-life
    of :data:`ONLINE_REF_HALF_LIFE_S`), never below ``MEL_REF_FLOOR``, updated frame by frame. Everything is per frame,
    so the features do not depend on how the audio was chunked; memory is a few thousand samples and the histogram."""

    def __init__(self, n_mels: int = DEFAULT_N_MELS, params: SpecParams = SpecParams()) -> None:
        self.n_mels = int(n_mels)
        self.params = params
        self.basis = slaney_mel_basis(params.sampling_rate, params.filter_length, self.n_mels)
        self.window = torch.hann_window(params.win_length).numpy()
        self.buf = np.zeros(0, np.float32)  # samples buf_start.. of the audio
        self.buf_start = 0
        self.total = 0  # samples received
        self.frames_out = 0
        self.hist = np.zeros(int(round((_HIST_HI - _HIST_LO) / _HIST_STEP)) + 1, np.float64)
        self.decay = 0.5 ** (1.0 / (ONLINE_REF_HALF_LIFE_S * params.fps))
        self.finished = False

    @property
    def pad(self) -> int:
        return (self.params.filter_length - self.params.hop_length) // 2

    def _frames(self, f0: int, f1: int, n: int | None) -> np.ndarray:
        """Raw log-mel frames f0..f1 from the buffer (``n``: the audio's final length for the end reflection)."""
        from bert_vits2.mel_processing import LOG_CLAMP

        hop, nfft = self.params.hop_length, self.params.filter_length
        idx = np.arange(f0 * hop, (f1 - 1) * hop + nfft) - self.pad
        idx = np.abs(idx)
        if n is not None:
            idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)
        seg = np.clip(self.buf[idx - self.buf_start], -1.0, 1.0)
        frames = np.lib.stride_tricks.sliding_window_view(seg, nfft)[::hop]  # [m, n_fft], as torch.stft frames them
        spec = np.fft.rfft(frames * self.window, axis=1)  # numpy: no per-call torch overhead for one frame
        mag = np.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-6).astype(np.float32)
        return np.log(np.maximum(self.basis @ mag.T, LOG_CLAMP)).astype(np.float32)

    def _normalise(self, mel: np.ndarray) -> np.ndarray:
        """Raw log-mel frames [n_mels, m] (in order, after the frames before) -> level-normalised, frame by frame."""
        out = np.empty_like(mel)
        nb = len(self.hist)
        bins = np.clip(np.round((mel - _HIST_LO) / _HIST_STEP).astype(np.int64), 0, nb - 1)
        for j in range(mel.shape[1]):
            self.hist *= self.decay
            self.hist += np.bincount(bins[:, j], minlength=nb)
            cum = np.cumsum(self.hist)
            k = int(np.searchsorted(cum, 0.99 * cum[-1]))
            ref = max(_HIST_LO + k * _HIST_STEP, MEL_REF_FLOOR)
            out[:, j] = (mel[:, j] - ref) / MEL_SCALE + 1.0
        return out

    def _trim(self) -> None:
        keep_from = max(0, self.frames_out * self.params.hop_length - self.pad - self.params.filter_length)
        if keep_from > self.buf_start + 4 * self.params.filter_length:
            self.buf = self.buf[keep_from - self.buf_start:].copy()
            self.buf_start = keep_from

    def push(self, audio: np.ndarray) -> np.ndarray:
        """New samples -> the level-normalised frames ``[n_mels, m]`` now complete (m may be 0)."""
        if self.finished:
            raise RuntimeError("OnlineLogMel: push after finish")
        a = np.asarray(audio, dtype=np.float32).reshape(-1)
        self.buf = np.concatenate([self.buf, a]) if len(self.buf) else a.copy()
        self.total += len(a)
        hop, nfft = self.params.hop_length, self.params.filter_length
        ready = (self.total + self.pad - nfft) // hop + 1 if self.total + self.pad >= nfft else 0
        if ready <= self.frames_out:
            return np.zeros((self.n_mels, 0), np.float32)
        mel = self._frames(self.frames_out, ready, None)
        self.frames_out = ready
        self._trim()
        return self._normalise(mel)

    def finish(self) -> np.ndarray:
        """The last frames (end reflected; audio shorter than one window padded with zeros, as :func:`log_mel`)."""
        from bert_vits2.mel_processing import spectrogram_frames

        self.finished = True
        n = self.total
        if n < self.params.filter_length:
            self.buf = np.concatenate([self.buf, np.zeros(self.params.filter_length - n, np.float32)])
            n = self.params.filter_length
        total = spectrogram_frames(n, self.params.filter_length, self.params.hop_length)
        if total <= self.frames_out:
            return np.zeros((self.n_mels, 0), np.float32)
        mel = self._frames(self.frames_out, total, n)
        self.frames_out = total
        return self._normalise(mel)


def online_from_offline(features: np.ndarray) -> np.ndarray:
    """:func:`log_mel` features (normalised by the whole clip's level) -> as :class:`OnlineLogMel` would give them
    (the level of the audio so far), for training a causal head on prepared takes whose audio is not at hand.

    The offline features are ``(mel - ref) / MEL_SCALE + 1``; the online reference is shift-equivariant, so every
    frame after the clip's first loud frames is recovered exactly (to the histogram's 0.05 resolution). Before them the
    floor decides, and the clip's own ``ref`` is unknown unless it was the floor (a quiet clip, whose 99th percentile
    is then below 1): otherwise it is taken as ``MEL_REF_FLOOR + 3`` (a loud take), which only shifts those first
    quiet frames."""
    f = np.asarray(features, dtype=np.float32)
    floored = f.size and float(np.percentile(f, 99)) < 1.0 - 1e-3
    ref = MEL_REF_FLOOR if floored else MEL_REF_FLOOR + 3.0
    return OnlineLogMel(f.shape[0])._normalise((f - 1.0) * MEL_SCALE + ref)


def online_log_mel(audio: np.ndarray, n_mels: int = DEFAULT_N_MELS, chunk: int = 1 << 16) -> np.ndarray:
    """Whole mono 44.1 kHz audio -> the features :class:`OnlineLogMel` gives for it (training a causal head)."""
    om = OnlineLogMel(n_mels)
    a = np.asarray(audio, dtype=np.float32)
    parts = [om.push(a[i:i + chunk]) for i in range(0, len(a), chunk)] + [om.finish()]
    return np.concatenate(parts, axis=1)


# --- posterior encoder -------------------------------------------------------------------------------------------


class PosteriorEncoderError(RuntimeError):
    """The G checkpoint / post_enc.pth could not be used; the message says what to do."""


@dataclass
class PosteriorEncoder:
    """A frozen ``enc_q`` with the STFT settings and (optional) speaker embedding it needs."""

    enc_q: torch.nn.Module
    spec: SpecParams
    g: torch.Tensor | None = None  # [1, gin, 1] speaker conditioning, or None (the original passed none)

    @property
    def out_channels(self) -> int:
        proj = getattr(self.enc_q, "proj")
        return int(proj.out_channels) // 2

    @torch.no_grad()
    def encode(self, audio: np.ndarray, sample: bool = False, seed: int | None = None,
               block_frames: int = FEATURE_BLOCK_FRAMES, context_frames: int = Z_CONTEXT_FRAMES) -> np.ndarray:
        """Mono audio at the TTS rate -> z [channels, frames]: the mean ``m`` or a sample ``m + eps * exp(logs)``.

        Long audio is encoded ``block_frames`` at a time with ``context_frames`` of spectrogram each side (more than the
        encoder's receptive field), so each frame equals the whole-clip computation within float rounding."""
        from bert_vits2.mel_processing import spectrogram_frames

        a = _pad_short(np.asarray(audio, dtype=np.float32), self.spec.filter_length)
        total = spectrogram_frames(len(a), self.spec.filter_length, self.spec.hop_length)
        m = np.empty((self.out_channels, total), dtype=np.float32)
        logs = np.empty_like(m) if sample else None
        ctx = max(0, int(context_frames))
        for f0, f1 in _blocks(total, max(1, int(block_frames))):
            c0, c1 = max(0, f0 - ctx), min(total, f1 + ctx)
            spec = _spectrogram_block(a, c0, c1, self.spec)
            _, mb, lb, _ = self.enc_q(spec, torch.tensor([c1 - c0], dtype=torch.long), g=self.g)
            m[:, f0:f1] = mb[0, :, f0 - c0: f1 - c0].numpy()
            if logs is not None:
                logs[:, f0:f1] = lb[0, :, f0 - c0: f1 - c0].numpy()
        if sample:  # one draw over the whole [1, C, T], in the same order as before blocking
            gen = torch.Generator().manual_seed(seed) if seed is not None else None
            eps = torch.randn((1, *m.shape), generator=gen)[0].numpy()
            return (m + eps * np.exp(logs)).astype(np.float32)
        return m


def posterior_from_generator(model: torch.nn.Module, data_params: Mapping[str, Any] | Any, speaker_id: int | None = None,
                             source: str | os.PathLike | None = None) -> PosteriorEncoder:
    """Take ``enc_q`` (and optionally a speaker's embedding) from a built ``SynthesizerTrn``.

    A generator loaded from a release checkpoint (``G_*_release.pth``) has no ``enc_q``: that is refused here with one
    line naming ``source`` and asking for the full ``G_*.pth``."""
    from bert_vits2.release import MissingPosteriorEncoderError, require_posterior_encoder

    try:
        require_posterior_encoder(model, "z extraction from audio (z heads, --export-posterior)", source)
    except MissingPosteriorEncoderError as err:
        raise PosteriorEncoderError(str(err)) from None
    g = None
    if speaker_id is not None:
        if not hasattr(model, "emb_g"):
            raise PosteriorEncoderError("this generator has no speaker embedding table (emb_g); run without --speaker")
        n = model.emb_g.num_embeddings
        if not 0 <= speaker_id < n:
            raise PosteriorEncoderError(f"speaker id {speaker_id} out of range: the model has {n} speakers (0..{n - 1})")
        with torch.no_grad():
            g = model.emb_g(torch.tensor([speaker_id])).unsqueeze(-1)
    enc = model.enc_q
    enc.eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return PosteriorEncoder(enc, SpecParams.from_data(data_params), g)


def speaker_id_from_name(hps: Any, speaker: str | int | None) -> int | None:
    """A speaker name (config ``data.spk2id``) or number -> id; None stays None."""
    if speaker is None or speaker == "":
        return None
    if isinstance(speaker, int) or str(speaker).isdigit():
        return int(speaker)
    spk2id = dict(hps.data.get("spk2id", {})) if hasattr(hps.data, "get") else {}
    if speaker not in spk2id:
        raise PosteriorEncoderError(f"speaker {speaker!r} is not in the config's spk2id ({', '.join(spk2id) or 'none'})")
    return int(spk2id[speaker])


def load_posterior_from_checkpoint(config: str | os.PathLike, checkpoint: str | os.PathLike, speaker: str | int | None = None) -> PosteriorEncoder:
    """Build the generator from ``config``, load the G checkpoint strictly and keep its posterior encoder."""
    from bert_vits2.inference import load_model_for_inference

    if not Path(checkpoint).is_file():
        raise PosteriorEncoderError(f"{checkpoint}: G checkpoint not found (train the TTS first, or pass -m/--checkpoint)")
    model, hps = load_model_for_inference(config, checkpoint)
    return posterior_from_generator(model, hps.data, speaker_id_from_name(hps, speaker), source=checkpoint)


def export_posterior(enc: PosteriorEncoder, path: str | os.PathLike, model_config: Mapping[str, Any]) -> None:
    """Write ``post_enc.pth``: enc_q weights + what is needed to rebuild it (weights_only-loadable, atomic)."""
    from bert_vits2.checkpoint import atomic_torch_save

    state = {k: v.detach().clone() for k, v in enc.enc_q.state_dict().items()}
    payload = {
        "kind": "bert_vits2_posterior_encoder",
        "model": state,
        "spec": {"sampling_rate": enc.spec.sampling_rate, "filter_length": enc.spec.filter_length,
                 "hop_length": enc.spec.hop_length, "win_length": enc.spec.win_length},
        "model_config": {k: model_config[k] for k in ("inter_channels", "hidden_channels", "gin_channels") if k in model_config},
        "g": None if enc.g is None else enc.g.detach().clone(),
    }
    atomic_torch_save(payload, Path(path))


def export_posterior_from_checkpoint(config: str | os.PathLike, checkpoint: str | os.PathLike,
                                     out: str | os.PathLike, speaker: str | int | None = None) -> Path:
    """``wav_to_visemes.py --export-posterior``: the posterior encoder of a G checkpoint alone, as ``post_enc.pth``."""
    from bert_vits2.hparams import load_hparams

    enc = load_posterior_from_checkpoint(config, checkpoint, speaker)
    export_posterior(enc, out, dict(load_hparams(config).model))
    return Path(out)


def load_exported_posterior(path: str | os.PathLike) -> PosteriorEncoder:
    """Load a ``post_enc.pth`` written by :func:`export_posterior` (no TTS model needed)."""
    from bert_vits2 import inference, models

    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PosteriorEncoderError(f"{path}: exported posterior encoder not found") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error here
        raise PosteriorEncoderError(f"{path}: not a readable post_enc.pth ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(payload, dict) or payload.get("kind") != "bert_vits2_posterior_encoder":
        raise PosteriorEncoderError(f"{path}: not a post_enc.pth written by wav_to_visemes --export-posterior")
    spec = SpecParams(**payload["spec"])
    cfg = payload["model_config"]
    gin = int(cfg.get("gin_channels", 0))
    enc = models.PosteriorEncoder(
        spec.filter_length // 2 + 1, int(cfg["inter_channels"]), int(cfg["hidden_channels"]), 5, 1, 16, gin_channels=gin
    )
    state = payload["model"]
    if not any(k.endswith(("weight_g", "weight_v", "original0", "original1")) for k in state):
        inference.remove_weight_norm_(enc)  # the file holds folded weights (exported from an inference model)
    missing, unexpected = enc.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PosteriorEncoderError(f"{path}: weights do not fit the posterior encoder (missing {missing[:3]}, unexpected {unexpected[:3]})")
    enc.eval()
    return PosteriorEncoder(enc, spec, payload.get("g"))


__all__ = [
    "DEFAULT_N_MELS", "FEATURE_FPS", "HOP", "LogMelBlocks", "ONLINE_REF_HALF_LIFE_S", "OnlineLogMel", "PosteriorEncoder", "PosteriorEncoderError", "SpecParams",
    "export_posterior", "export_posterior_from_checkpoint", "linear_spectrogram", "load_exported_posterior", "load_posterior_from_checkpoint",
    "iter_tts_audio", "load_tts_audio", "log_mel", "num_feature_frames", "online_from_offline", "online_log_mel", "posterior_from_generator", "slaney_mel_basis",
    "speaker_id_from_name",
]
