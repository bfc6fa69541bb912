"""Expression heads: sequence models from TTS features (z or log-mel, 86.13 frames/s) to the 61 Live Link values.

- ``ZHead`` (spec §3, the original "VisemesNet"): Conv1d -> optional post-norm TransformerEncoder (no positional
  encoding) -> LSTM or GRU (bidirectional) -> MLP -> Conv1d temporal smoother; no output activation.
- ``MelHead`` (spec §4, the "2025 improvement", a CRNN on the log-mel). Gaps settled here:
  * ``n_mels`` is a config value (default 80); the mel comes from ``motion.face.features.log_mel``.
  * Pooling is **frequency-only** (MaxPool2d((2, 1))), so the output stays at the input frame rate and there is
    nothing to upsample; the GRU reads ``channels[-1] * n_mels / 4`` features per frame.
  * Output range: sigmoid for the 52 shapes ([0, 1]) and tanh for the 9 head/eye rotations ([-1, 1]).
  * BatchNorm statistics include zero padding frames of a padded batch (harmless with similar-length batches).

Both take ``x [B, C, T]`` (+ optional ``lengths [B]``) and return ``[B, 61, T]`` at the input frame rate; padded
positions are kept out of every recurrent/attention computation. ``motion.frames.resample_curves`` maps predictions to another rate on
frame-centre times (differentiable, used by the loss); ``predict`` does inference on one clip and returns ``[T', 61]``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from motion.arkit import NUM_BLENDSHAPES, NUM_VALUES
from motion.constants import FEATURE_FPS
from motion.frames import resample_curves

Z_HEAD_DEFAULTS: dict[str, Any] = {
    "type": "z", "in_channels": 192, "use_transformer": True, "transformer_layers": 3, "transformer_heads": 8,
    "transformer_ff": 512, "rnn": "lstm", "rnn_hidden": 128, "rnn_layers": 3, "mlp_hidden": 96, "dropout": 0.4,
    "smoother_kernel": 5,
}
MEL_HEAD_DEFAULTS: dict[str, Any] = {
    "type": "mel", "n_mels": 80, "channels": [32, 64], "rnn_hidden": 128, "rnn_layers": 2, "fc_hidden": 128,
    "dropout": 0.3,
}


def lengths_mask(lengths: torch.Tensor | None, batch: int, time: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean [B, T], True on valid frames."""
    if lengths is None:
        return torch.ones(batch, time, dtype=torch.bool, device=device)
    pos = torch.arange(time, device=lengths.device)
    return pos[None, :] < lengths[:, None]


def _run_rnn(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """x [B, T, C] -> [B, T, H]; packed so padding never leaks into the backward direction."""
    if lengths is None or bool((lengths == x.shape[1]).all()):
        return rnn(x)[0]
    packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def _make_rnn(kind: str, inp: int, hidden: int, layers: int, dropout: float) -> nn.RNNBase:
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}.get(kind.lower())
    if cls is None:
        raise ValueError(f"rnn must be 'lstm' or 'gru', got {kind!r}")
    return cls(inp, hidden, num_layers=layers, batch_first=True, bidirectional=True, dropout=dropout if layers > 1 else 0.0)


class ZHead(nn.Module):
    """z [B, C, T] -> [B, 61, T] (spec §3)."""

    def __init__(self, **cfg: Any) -> None:
        super().__init__()
        self.config = {**Z_HEAD_DEFAULTS, **cfg, "type": "z"}
        c = self.config
        ch, p = int(c["in_channels"]), float(c["dropout"])
        self.conv_in = nn.Conv1d(ch, ch, 3, padding=1)
        self.transformer = None
        if c["use_transformer"]:
            layer = nn.TransformerEncoderLayer(
                ch, int(c["transformer_heads"]), int(c["transformer_ff"]), p, activation="relu", batch_first=True,
                norm_first=False,
            )
            self.transformer = nn.TransformerEncoder(layer, int(c["transformer_layers"]), enable_nested_tensor=False)
        self.rnn = _make_rnn(c["rnn"], ch, int(c["rnn_hidden"]), int(c["rnn_layers"]), p)
        h = 2 * int(c["rnn_hidden"])
        self.mlp = nn.Sequential(
            nn.Dropout(p), nn.Linear(h, int(c["mlp_hidden"])), nn.LeakyReLU(0.01), nn.Dropout(p),
            nn.Linear(int(c["mlp_hidden"]), NUM_VALUES),
        )
        k = int(c["smoother_kernel"])
        self.smoother = nn.Conv1d(NUM_VALUES, NUM_VALUES, k, padding=k // 2)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for name, w in self.rnn.named_parameters():
            if "weight_hh" in name:
                nn.init.orthogonal_(w)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, _, t = x.shape
        mask = lengths_mask(lengths, b, t, x.device)
        m1 = mask[:, None, :].to(x.dtype)
        h = self.conv_in(x * m1) * m1
        h = h.transpose(1, 2)  # [B, T, C]
        if self.transformer is not None:
            h = self.transformer(h, src_key_padding_mask=None if lengths is None else ~mask)
        h = _run_rnn(self.rnn, h, lengths)
        y = self.mlp(h).transpose(1, 2) * m1  # [B, 61, T]
        return self.smoother(y) * m1


class MelHead(nn.Module):
    """log-mel [B, n_mels, T] -> [B, 61, T] (spec §4 CRNN, frequency-only pooling)."""

    def __init__(self, **cfg: Any) -> None:
        super().__init__()
        self.config = {**MEL_HEAD_DEFAULTS, **cfg, "type": "mel"}
        c = self.config
        n_mels = int(c["n_mels"])
        if n_mels % 4:
            raise ValueError(f"n_mels must be divisible by 4 (two 2x frequency poolings), got {n_mels}")
        c1, c2 = (int(v) for v in c["channels"])
        self.cnn = nn.ModuleList([
            nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.LeakyReLU(0.2), nn.MaxPool2d((2, 1))),
            nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.LeakyReLU(0.2), nn.MaxPool2d((2, 1))),
        ])
        self.rnn = _make_rnn("gru", c2 * n_mels // 4, int(c["rnn_hidden"]), int(c["rnn_layers"]), 0.0)
        self.fc = nn.Sequential(
            nn.Linear(2 * int(c["rnn_hidden"]), int(c["fc_hidden"])), nn.ReLU(), nn.Dropout(float(c["dropout"])),
            nn.Linear(int(c["fc_hidden"]), NUM_VALUES),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, f, t = x.shape
        mask = lengths_mask(lengths, b, t, x.device)
        m1 = mask[:, None, :].to(x.dtype)
        h = x.unsqueeze(1)
        m2 = m1[:, None]  # [B, 1, 1, T]
        for block in self.cnn:  # re-mask after each block so padding stays zero for the next convolution
            h = block(h * m2) * m2
        # h: [B, C, F/4, T]
        h = h.flatten(1, 2).transpose(1, 2)  # [B, T, C*F/4]
        h = _run_rnn(self.rnn, h, lengths)
        y = self.fc(h)  # [B, T, 61]
        y = torch.cat([torch.sigmoid(y[..., :NUM_BLENDSHAPES]), torch.tanh(y[..., NUM_BLENDSHAPES:])], dim=-1)
        return y.transpose(1, 2) * m1


def build_head(config: Mapping[str, Any]) -> nn.Module:
    """A head from its configuration dict (``type`` 'z' or 'mel'; other keys override the defaults)."""
    cfg = dict(config)
    kind = cfg.pop("type", "mel")
    if kind == "z":
        return ZHead(**cfg)
    if kind == "mel":
        return MelHead(**cfg)
    raise ValueError(f"head type must be 'z' or 'mel', got {kind!r}")


def head_config(kind: str, **overrides: Any) -> dict[str, Any]:
    """Defaults of a head type with ``overrides`` applied (None values ignored)."""
    base = copy.deepcopy(Z_HEAD_DEFAULTS if kind == "z" else MEL_HEAD_DEFAULTS)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return base


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def predict(
    head: nn.Module, features: np.ndarray, fps: float = 60.0, num_frames: int | None = None,
    feature_fps: float = FEATURE_FPS,
) -> np.ndarray:
    """One clip's features ``[C, T]`` -> curves ``[T', 61]`` at ``fps`` (default: frames covering the same duration)."""
    head.eval()
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[None]
    y = head(x)  # [1, 61, T]
    if num_frames is None:
        num_frames = max(1, int(math.ceil(x.shape[-1] / feature_fps * fps - 1e-6)))
    curves = y[0].transpose(0, 1).numpy().astype(np.float32)
    return resample_curves(curves, feature_fps, fps, num_frames)


__all__ = [
    "FEATURE_FPS", "MEL_HEAD_DEFAULTS", "MelHead", "Z_HEAD_DEFAULTS", "ZHead", "build_head", "count_parameters",
    "head_config", "lengths_mask", "predict",
]
