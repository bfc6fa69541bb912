"""Small random networks shared by the speed and precision tests."""

from __future__ import annotations

import torch

from bert_vits2.inference import remove_weight_norm_
from bert_vits2.models import Generator


def random_decoder(resblock: str, ups: list[int], kernels: list[int], seed: int = 0) -> Generator:
    """A tiny v2.3-layout decoder (8 -> 32 channels, speaker input 6) with weight norm folded; its weights are
    perturbed by 0.2 because HiFi-GAN's init (std 0.01) leaves later layers near silent."""
    torch.manual_seed(seed)
    dec = Generator(8, resblock, [3, 5], [[1, 3], [1, 3]] if resblock == "2" else [[1, 3, 5], [1, 3, 5]],
                    ups, 32, kernels, gin_channels=6).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return remove_weight_norm_(dec)
