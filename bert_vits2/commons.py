"""Small tensor helpers shared by the networks and the text pipeline."""

from __future__ import annotations

from typing import Sequence, TypeVar

import torch

T = TypeVar("T")


def intersperse(items: Sequence[T], blank: T) -> list[T]:
    """Put ``blank`` before, between and after ``items`` (VITS ``add_blank``): n items -> 2n+1."""
    out = [blank] * (len(items) * 2 + 1)
    out[1::2] = list(items)
    return out


def sequence_mask(length: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Boolean mask [B, max_length] that is True inside each sequence."""
    if max_length is None:
        max_length = int(length.max())
    positions = torch.arange(max_length, dtype=length.dtype, device=length.device)
    return positions.unsqueeze(0) < length.unsqueeze(1)


def init_weights(module: torch.nn.Module, mean: float = 0.0, std: float = 0.01) -> None:
    """HiFi-GAN initialisation of conv weights (used by the decoder's upsampling and residual blocks)."""
    if "Conv" in type(module).__name__:
        module.weight.data.normal_(mean, std)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of an odd kernel with the given dilation."""
    return (kernel_size * dilation - dilation) // 2


def slice_segments(x: torch.Tensor, ids_str: torch.Tensor, segment_size: int = 4) -> torch.Tensor:
    """Cut a window of ``segment_size`` frames from each item of ``x`` [B, C, T] starting at ``ids_str`` [B]."""
    index = ids_str.to(torch.long).view(-1, 1) + torch.arange(segment_size, device=x.device).view(1, -1)
    index = index.unsqueeze(1).expand(-1, x.size(1), -1)
    return torch.gather(x, 2, index)


def rand_slice_segments(
    x: torch.Tensor, x_lengths: torch.Tensor | None = None, segment_size: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random training window per item: start uniform in [0, length - segment_size]."""
    b, _, t = x.size()
    if x_lengths is None:
        x_lengths = torch.full((b,), t, device=x.device)
    ids_str_max = (x_lengths - segment_size + 1).clamp_min(1)
    ids_str = (torch.rand([b], device=x.device) * ids_str_max).to(dtype=torch.long)
    return slice_segments(x, ids_str, segment_size), ids_str


def generate_path(duration: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard monotonic alignment [B, 1, T_y, T_x] from integer durations [B, 1, T_x] (cumsum, mask, diff)."""
    b, _, t_y, t_x = mask.shape
    cum_duration = torch.cumsum(duration, -1).view(b * t_x)
    path = sequence_mask(cum_duration, t_y).to(mask.dtype).view(b, t_x, t_y)
    path = path - torch.nn.functional.pad(path, (0, 0, 1, 0))[:, :-1]
    return path.unsqueeze(1).transpose(2, 3) * mask


def fused_add_tanh_sigmoid_multiply(input_a: torch.Tensor, input_b: torch.Tensor, n_channels: int) -> torch.Tensor:
    """WaveNet gate: tanh(first half) * sigmoid(second half) of ``input_a + input_b``."""
    in_act = input_a + input_b
    return torch.tanh(in_act[:, :n_channels]) * torch.sigmoid(in_act[:, n_channels:])


def convert_pad_shape(pad_shape: Sequence[Sequence[int]]) -> list[int]:
    """[[before, after] per dim, first dim first] -> the flat, last-dim-first list F.pad wants."""
    return [item for sublist in reversed(pad_shape) for item in sublist]
