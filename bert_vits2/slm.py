"""WavLM for v2.3 training: the frozen speech model behind the WavLM feature loss and the WavLM discriminator.

The model is read from a local folder only (``hps.model.slm.model``, default ``./slm/wavlm-base-plus``: the
``microsoft/wavlm-base-plus`` files saved with ``save_pretrained``); nothing is downloaded. Audio is resampled from
the TTS rate to WavLM's 16 kHz with a differentiable windowed-sinc resampler, so the generator gets gradients
through the frozen WavLM.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bert_vits2.text.bert import load_failure_reason

__all__ = ["SLMMissingError", "resample", "load_wavlm", "WavLMFeatures", "DEFAULT_SLM_DIR"]

logger = logging.getLogger(__name__)

DEFAULT_SLM_DIR = "./slm/wavlm-base-plus"


class SLMMissingError(FileNotFoundError):
    """The WavLM folder is absent or unreadable; the message says what to put where."""


@functools.lru_cache(maxsize=8)
def _sinc_kernel(orig: int, new: int, width_taps: int, rolloff: float, dtype: torch.dtype, device_str: str):
    base = min(orig, new) * rolloff
    width = math.ceil(width_taps * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx[None, :]
    t = (t * base).clamp(-width_taps, width_taps)
    window = torch.cos(t * math.pi / width_taps / 2) ** 2  # Hann window over +-width_taps zero crossings
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernel = (sinc * window * (base / orig)).unsqueeze(1)  # [new, 1, taps]
    return kernel.to(dtype=dtype, device=torch.device(device_str)), width


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int, width_taps: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling of ``wav`` [..., T] (Hann-windowed sinc, polyphase; differentiable)."""
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr == new_sr:
        return wav
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    shape = wav.shape
    x = wav.reshape(-1, 1, shape[-1])
    kernel, width = _sinc_kernel(orig, new, width_taps, rolloff, x.dtype, str(x.device))
    x = F.pad(x, (width, width + orig))
    y = F.conv1d(x, kernel, stride=orig)  # [N, new, frames]
    y = y.transpose(1, 2).reshape(x.size(0), -1)
    target = math.ceil(new * shape[-1] / orig)
    return y[:, :target].reshape(*shape[:-1], -1)


def load_wavlm(path: str | os.PathLike = DEFAULT_SLM_DIR) -> nn.Module:
    """Load a WavLM folder (``transformers.WavLMModel.from_pretrained(local_files_only=True)``), frozen, eval mode."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise SLMMissingError(
            f"WavLM model not found at {folder} (no config.json). v2.3 training needs it for the WavLM loss and "
            f"discriminator: put the files of microsoft/wavlm-base-plus (config.json, pytorch_model.bin or "
            f"model.safetensors, preprocessor_config.json) in {folder}, or set model.slm.model in the config to "
            "where they are. To train without those two loss terms, set train.allow_missing_slm to true in the "
            "config or pass --allow-missing-slm."
        )
    from transformers import WavLMModel  # transformers: ~1.6 s import, only when the WavLM is loaded

    try:
        model = WavLMModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        first = load_failure_reason(exc)
        raise SLMMissingError(f"WavLM model at {folder} does not load ({first}); re-download microsoft/wavlm-base-plus "
                              "into that folder") from None
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


class WavLMFeatures(nn.Module):
    """Frozen WavLM: TTS-rate audio [B, T] or [B, 1, T] -> its hidden states (embeddings + every layer).

    ``train()`` never switches WavLM out of eval mode (dropout stays off, as upstream freezes it).
    """

    def __init__(self, wavlm: nn.Module, sampling_rate: int, slm_sampling_rate: int = 16000) -> None:
        super().__init__()
        self.wavlm = wavlm
        self.sampling_rate = int(sampling_rate)
        self.slm_sampling_rate = int(slm_sampling_rate)

    def train(self, mode: bool = True) -> "WavLMFeatures":
        super().train(mode)
        self.wavlm.eval()
        return self

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if wav.dim() == 3:
            wav = wav.squeeze(1)
        wav16 = resample(wav.float(), self.sampling_rate, self.slm_sampling_rate)
        return tuple(self.wavlm(input_values=wav16, output_hidden_states=True).hidden_states)
