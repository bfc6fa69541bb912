"""CUDA figures (issue 21): training steps, synthesis real-time factor per precision, torchrun + NCCL on one GPU.

- **training**: seconds per Bert-VITS2 v2.3 step (all four networks, full objective; bench_train.bench) for the tiny
  test-sized config and the full-size configs/config.json, each with ``train.bf16_run`` off and on; synthetic batches
  (bench_train.synthetic_batch) and a randomly initialised WavLM of the config's size (nothing is downloaded);
- **synthesis**: the full-size v2.3 generator (bench_synthesis.build_model, weight norm folded) on 50/200 phones in
  fp32, fp16 autocast and bf16 autocast: best wall time, RTF (time / audio seconds) and SNR against fp32;
- **torchrun**: ``torchrun --standalone --nproc_per_node=1 train_ms.py`` for a few steps on a synthetic dataset
  (tiny config, wavs + cleaned lists + .bert.pt written to a temp folder), so DDP over NCCL is exercised end to end.

Needs a CUDA device: without one it says so in one line and exits with status 1.

Run:  python benchmarks/bench_gpu.py [--quick] [--steps 5] [--batch 16] [--no-torchrun]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent

#: the test suite's tiny model (tests/test_train.py), on top of configs/config.json
TINY_MODEL = dict(inter_channels=16, hidden_channels=32, filter_channels=64, n_heads=2, n_layers=3, resblock="1",
                  resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]], upsample_rates=[4, 4, 4, 4],
                  upsample_initial_channel=32, upsample_kernel_sizes=[8, 8, 8, 8], gin_channels=16)
TINY_DATA = dict(sampling_rate=16000, filter_length=1024, hop_length=256, win_length=1024, n_mel_channels=40)
TINY_SLM = {"sr": 16000, "hidden": 32, "nlayers": 3, "initial_channel": 8}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench_gpu.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs" / "config.json"), help="the full-size config")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps after one warm-up step")
    ap.add_argument("--batch", type=int, default=16, help="training batch size")
    ap.add_argument("--phones", type=int, nargs="+", default=[50, 200], help="synthesis input lengths (phone ids)")
    ap.add_argument("--repeats", type=int, default=5, help="synthesis runs per precision (best is kept)")
    ap.add_argument("--torchrun-steps", type=int, default=4, help="steps of the torchrun training run")
    ap.add_argument("--no-torchrun", action="store_true", help="skip the torchrun + NCCL run")
    ap.add_argument("--quick", action="store_true", help="2 steps, batch 4, 50 phones, 2 repeats, 2 torchrun steps")
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.batch, args.phones, args.repeats = 2, 4, [50], 2
        args.torchrun_steps = min(args.torchrun_steps, 2)
    for name in ("steps", "batch", "repeats", "torchrun_steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if any(n < 3 for n in args.phones):
        ap.error("--phones must be at least 3")
    return args


def _bench_modules():
    """bench_train and bench_synthesis (the shared helpers), importable from this folder."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import bench_synthesis
    import bench_train

    return bench_train, bench_synthesis


def tiny_config(full_config: str | os.PathLike) -> dict:
    """configs/config.json with the test suite's tiny model and 16 kHz data."""
    cfg = json.loads(Path(full_config).read_text(encoding="utf-8"))
    cfg["model"].update(TINY_MODEL, slm={**cfg["model"].get("slm", {}), **TINY_SLM})
    cfg["data"].update(TINY_DATA, n_speakers=1, spk2id={"spk0": 0})
    cfg["train"].update(segment_size=1024, batch_size=2, log_interval=1, eval_interval=1000, epochs=1000, keep_ckpts=1,
                        bucket_boundaries=[8, 2000], skip_optimizer=False)
    return cfg


def _wavlm(hps):
    """A random WavLM with the layer count and width the config's ``model.slm`` expects."""
    from transformers import WavLMConfig, WavLMModel

    slm = hps.model.slm
    hidden, layers = int(slm["hidden"]), int(slm["nlayers"])
    if hidden == 768:
        cfg = WavLMConfig(num_hidden_layers=layers - 1)
    else:
        cfg = WavLMConfig(hidden_size=hidden, num_hidden_layers=layers - 1, num_attention_heads=2,
                          intermediate_size=2 * hidden, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=4, num_buckets=32, max_bucket_distance=100)
    return WavLMModel(cfg).eval()


def write_synthetic_dataset(root: Path, cfg: dict, n_utts: int = 6, seconds: float = 2.0) -> Path:
    """A training set ``train_ms.py`` accepts: mono wavs at the config's rate, cleaned lists, ``.bert.pt`` features,
    a random WavLM folder and the config (returned). Everything random but seeded."""
    import numpy as np
    import soundfile as sf
    import torch

    from bert_vits2.data import bert_path_for

    root.mkdir(parents=True, exist_ok=True)
    sr = int(cfg["data"]["sampling_rate"])
    rng = np.random.default_rng(0)
    phones, tones, word2ph = "_ n i h ao sh i j ie _", "0 3 3 3 3 4 4 4 4 0", "1 2 2 2 2 1"
    lines = []
    for i in range(n_utts):
        t = np.arange(int(seconds * sr)) / sr
        wav = 0.3 * np.sin(2 * math.pi * (150 + 20 * i) * t) + 0.02 * rng.standard_normal(len(t))
        path = root / f"utt{i}.wav"
        sf.write(path, wav.astype(np.float32), sr, subtype="PCM_16")
        torch.save(torch.from_numpy(rng.standard_normal((1024, 2 * 10 + 1)).astype(np.float32)), bert_path_for(str(path)))
        lines.append(f"{path}|spk0|ZH|你好世界|{phones}|{tones}|{word2ph}")
    (root / "train.list").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    (root / "val.list").write_text(lines[-1] + "\n", encoding="utf-8")
    cfg = json.loads(json.dumps(cfg))
    cfg["data"].update(training_files=str(root / "train.list"), validation_files=str(root / "val.list"))
    cfg["model"]["slm"]["model"] = str(root / "wavlm")
    from bert_vits2.hparams import HParams

    torch.manual_seed(0)
    _wavlm(HParams(**cfg)).save_pretrained(root / "wavlm")
    config = root / "config.json"
    config.write_text(json.dumps(cfg), encoding="utf-8")
    return config


def bench_training(args, device) -> None:
    import torch

    from bert_vits2.hparams import HParams, load_hparams

    bench_train, _ = _bench_modules()
    for name, hps in (("tiny", HParams(**tiny_config(args.config))), ("full-size", load_hparams(args.config))):
        torch.manual_seed(0)
        wavlm = _wavlm(hps)
        for p in wavlm.parameters():
            p.requires_grad_(False)
        for bf16 in (False, True):
            if bf16 and not torch.cuda.is_bf16_supported():
                print(f"train {name}: bf16_run skipped (this GPU has no bfloat16)")
                continue
            sec = bench_train.bench(hps, device, args.batch, bf16, args.steps, wavlm)
            print(f"train {name:9s} batch {args.batch:3d} bf16_run={str(bf16).lower():5s}: {sec:.3f} s/step", flush=True)
        del wavlm
        torch.cuda.empty_cache()


def _timed(net, inputs, repeats: int, dtype):
    import torch

    best, out = math.inf, None
    for i in range(repeats + 1):  # the first run is a warm-up (cuDNN autotune, kernels)
        torch.manual_seed(1)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None), torch.inference_mode():
            out = net.infer(*inputs, noise_scale=0.667, noise_scale_w=0.8, length_scale=1.0, sdp_ratio=0.0)
        torch.cuda.synchronize()
        if i:
            best = min(best, time.perf_counter() - t0)
    return best, out[0].float().cpu()


def bench_synthesis_gpu(args, device) -> None:
    import torch

    from bert_vits2.models import remove_weight_norm_

    _, bench_synthesis = _bench_modules()
    net = bench_synthesis.build_model(5.0)
    remove_weight_norm_(net)
    net = net.to(device).eval()
    for n in args.phones:
        inputs = tuple(t.to(device) for t in bench_synthesis.make_inputs(n))
        ref = None
        for label, dtype in (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
            if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
                print(f"synthesis {n} phones {label}: skipped (no bfloat16 on this GPU)")
                continue
            sec, audio = _timed(net, inputs, args.repeats, dtype)
            seconds = audio.shape[-1] / bench_synthesis.SAMPLING_RATE
            snr = "" if ref is None or ref.shape != audio.shape else \
                f", SNR vs fp32 {bench_synthesis.snr_db(ref, audio):.1f} dB"
            ref = audio if ref is None else ref
            print(f"synthesis {n:4d} phones {label}: {sec * 1000:8.1f} ms for {seconds:.2f} s of audio, "
                  f"RTF {sec / seconds:.4f}{snr}", flush=True)


def bench_torchrun(args) -> None:
    torchrun = shutil.which("torchrun")
    cmd_head = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    with tempfile.TemporaryDirectory(prefix="bv2-gpu-") as tmp:
        config = write_synthetic_dataset(Path(tmp) / "data", tiny_config(args.config))
        model = Path(tmp) / "run"
        cmd = cmd_head + ["--standalone", "--nproc_per_node=1", str(REPO / "train_ms.py"), "-m", str(model), "-c",
                          str(config), "--num-workers", "0", "--max-steps", str(args.torchrun_steps), "--no-progress"]
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=1800)
        wall = time.perf_counter() - t0
        saved = sorted(p.name for p in (model / "models").glob("G_*.pth")) if (model / "models").is_dir() else []
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"torchrun --nproc_per_node=1 (NCCL): FAILED with status {proc.returncode}: {tail}")
            return
        print(f"torchrun --nproc_per_node=1 (NCCL), tiny config, {args.torchrun_steps} steps: {wall:.1f} s wall "
              f"including start-up; saved {', '.join(saved) or 'nothing'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu.py: no CUDA device is available (torch.cuda.is_available() is False); run it on a machine "
              "with an NVIDIA GPU and a CUDA build of torch", file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO))
    device = torch.device("cuda")
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    bench_training(args, device)
    bench_synthesis_gpu(args, device)
    if not args.no_torchrun:
        bench_torchrun(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
