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
from typing import Any, Mapping

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
    """Any audio file (any rate, channels, wav/flac/mp3/...) -> mono float32 at ``sample_rate``."""
    audio, _ = load_audio(path, sample_rate=sample_rate, mono=True)
    return audio


def _pad_short(audio: np.ndarray, n_fft: int) -> np.ndarray:
    # spectrogram_torch needs > (n_fft-hop)/2 samples; pad very short clips with silence
    need = n_fft
    return audio if len(audio) >= need else np.pad(audio, (0, need - len(audio)))


def num_feature_frames(num_samples: int, hop: int = HOP) -> int:
    """Frames of the spectrogram/z for a clip of ``num_samples`` (= ceil-free upstream count: samples // hop)."""
    from bert_vits2.mel_processing import spectrogram_frames

    return spectrogram_frames(max(num_samples, N_FFT), N_FFT, hop)


def linear_spectrogram(audio: np.ndarray, params: SpecParams = SpecParams()) -> torch.Tensor:
    """Mono float32 audio at ``params.sampling_rate`` -> linear magnitude spectrogram [1, n_fft//2+1, frames]."""
    from bert_vits2.mel_processing import spectrogram_torch

    y = torch.from_numpy(_pad_short(np.asarray(audio, dtype=np.float32), params.filter_length)).unsqueeze(0)
    y = y.clamp(-1.0, 1.0)
    return spectrogram_torch(y, params.filter_length, params.sampling_rate, params.hop_length, params.win_length, center=False)


def log_mel(audio: np.ndarray, n_mels: int = DEFAULT_N_MELS, params: SpecParams = SpecParams()) -> np.ndarray:
    """Mono float32 audio at 44.1 kHz -> level-normalised log-mel [n_mels, frames] at the z rate (mel-head input)."""
    from bert_vits2.mel_processing import mel_spectrogram_torch

    y = torch.from_numpy(_pad_short(np.asarray(audio, dtype=np.float32), params.filter_length)).unsqueeze(0)
    mel = mel_spectrogram_torch(
        y.clamp(-1.0, 1.0), params.filter_length, n_mels, params.sampling_rate, params.hop_length, params.win_length,
        0.0, None, center=False,
    )[0].numpy()
    ref = max(float(np.percentile(mel, 99)), MEL_REF_FLOOR)
    return ((mel - ref) / MEL_SCALE + 1.0).astype(np.float32)


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
    def encode(self, audio: np.ndarray, sample: bool = False, seed: int | None = None) -> np.ndarray:
        """Mono audio at the TTS rate -> z [channels, frames]: the mean ``m`` or a sample ``m + eps * exp(logs)``."""
        spec = linear_spectrogram(audio, self.spec)
        lengths = torch.tensor([spec.shape[-1]], dtype=torch.long)
        _, m, logs, _ = self.enc_q(spec, lengths, g=self.g)
        if sample:
            gen = torch.Generator().manual_seed(seed) if seed is not None else None
            z = m + torch.randn(m.shape, generator=gen) * torch.exp(logs)
        else:
            z = m
        return z[0].numpy().astype(np.float32)


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
    "DEFAULT_N_MELS", "FEATURE_FPS", "HOP", "PosteriorEncoder", "PosteriorEncoderError", "SpecParams",
    "export_posterior", "export_posterior_from_checkpoint", "linear_spectrogram", "load_exported_posterior", "load_posterior_from_checkpoint",
    "load_tts_audio", "log_mel", "num_feature_frames", "posterior_from_generator", "speaker_id_from_name",
]
