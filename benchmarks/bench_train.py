"""Seconds per Bert-VITS2 v2.3 training step (all four networks, full objective) for the full-size config.

CPU: batch 1. GPU (when present): batch 16 in fp32 and in bf16 autocast. Inputs are synthetic (random phones and
BERT features, a 440 Hz-ish waveform) of a typical utterance length; the WavLM is a randomly initialised
wavlm-base-plus-sized model (same compute as the real one, nothing is downloaded).

    python benchmarks/bench_train.py [--config configs/config.json] [--steps 3] [--threads N] [--no-gpu]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def synthetic_batch(hps, batch: int, seconds: float, n_phones: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    sr, hop = int(hps.data.sampling_rate), int(hps.data.hop_length)
    samples = int(seconds * sr) // hop * hop
    t = torch.arange(samples) / sr
    wav = (0.3 * torch.sin(2 * math.pi * 220 * t) + 0.05 * torch.randn(samples, generator=gen)).clamp(-1, 1)
    from bert_vits2.mel_processing import spectrogram_torch

    spec = spectrogram_torch(wav[None], int(hps.data.filter_length), sr, hop, int(hps.data.win_length)).squeeze(0)
    frames = spec.size(1)
    x = torch.randint(1, 112, (batch, n_phones), generator=gen)
    return (
        x, torch.full((batch,), n_phones), spec[None].repeat(batch, 1, 1), torch.full((batch,), frames),
        wav[None, None].repeat(batch, 1, 1)[..., : frames * hop], torch.full((batch,), frames * hop),
        torch.zeros(batch, dtype=torch.long), torch.randint(0, 12, (batch, n_phones), generator=gen),
        torch.zeros(batch, n_phones, dtype=torch.long),
        *(torch.randn(batch, 1024, n_phones, generator=gen) for _ in range(3)),
    )


def bench(hps, device: torch.device, batch: int, bf16: bool, steps: int, wavlm) -> float:
    from bert_vits2.train import build_step_runner

    hps.train.bf16_run = bf16
    runner = build_step_runner(hps, device, wavlm)
    data = synthetic_batch(hps, batch, seconds=4.0, n_phones=120)
    runner.train_step(data)  # warm-up (numba MAS compile, allocator, cuDNN autotune)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        runner.train_step(data)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "config.json"))
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-gpu", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import WavLMConfig, WavLMModel

    from bert_vits2.hparams import load_hparams

    hps = load_hparams(args.config)
    torch.manual_seed(0)
    wavlm = WavLMModel(WavLMConfig()).eval()  # wavlm-base-plus architecture, random weights
    for p in wavlm.parameters():
        p.requires_grad_(False)
    print(f"config {args.config}: hidden {hps.model.hidden_channels}, {hps.data.n_speakers} speakers, "
          f"segment {hps.train.segment_size} samples; 4 s utterance, 120 phones")
    cpu = bench(hps, torch.device("cpu"), 1, False, args.steps, wavlm)
    print(f"CPU ({torch.get_num_threads()} threads), batch 1, fp32: {cpu:.2f} s/step")
    if torch.cuda.is_available() and not args.no_gpu:
        dev = torch.device("cuda")
        for bf16 in (False, True):
            sec = bench(hps, dev, 16, bf16, max(args.steps, 5), wavlm)
            print(f"GPU {torch.cuda.get_device_name()}, batch 16, {'bf16' if bf16 else 'fp32'}: {sec:.3f} s/step")


if __name__ == "__main__":
    main()
