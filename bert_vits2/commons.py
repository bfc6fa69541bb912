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
