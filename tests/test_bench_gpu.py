"""benchmarks/bench_gpu.py on a machine without a GPU: its options, the one-line refusal, and the synthetic training
set its torchrun run trains on (checked here by the trainer's own pre-flight check, and by one CPU step)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, checkout_env

SCRIPT = REPO_ROOT / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options_and_quick(bench):
    args = bench.parse_args([])
    assert (args.steps, args.batch, args.phones, args.no_torchrun) == (5, 16, [50, 200], False)
    quick = bench.parse_args(["--quick", "--no-torchrun"])
    assert (quick.steps, quick.batch, quick.phones, quick.repeats, quick.no_torchrun) == (2, 4, [50], 2, True)
    for bad in (["--steps", "0"], ["--batch", "-1"], ["--phones", "2"]):
        with pytest.raises(SystemExit) as exc:
            bench.parse_args(bad)
        assert exc.value.code == 2


def test_without_cuda_it_says_so_in_one_line(bench, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--quick"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA device" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script would run the benchmark")
def test_script_exits_cleanly_here():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=120,
                          env=checkout_env(), cwd=str(REPO_ROOT))
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench_gpu.py: no CUDA device"), proc.stderr[-2000:]


@pytest.mark.slow
def test_synthetic_dataset_passes_the_trainers_check(bench, tmp_path):
    from bert_vits2.data import preflight_check
    from bert_vits2.hparams import load_hparams

    config = bench.write_synthetic_dataset(tmp_path / "data", bench.tiny_config(REPO_ROOT / "configs" / "config.json"))
    hps = load_hparams(config)
    report = preflight_check(hps, progress=False)
    assert report.checked == 6 and not report.problems, report.problems
    assert (tmp_path / "data" / "wavlm" / "config.json").is_file()


@pytest.mark.slow
def test_synthetic_dataset_trains_one_step_on_cpu(bench, tmp_path):
    config = bench.write_synthetic_dataset(tmp_path / "data", bench.tiny_config(REPO_ROOT / "configs" / "config.json"))
    env = checkout_env(OMP_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "train_ms.py"), "-m", str(tmp_path / "run"), "-c",
                           str(config), "--num-workers", "0", "--max-steps", "1", "--no-progress"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (Path(tmp_path) / "run" / "models" / "G_1.pth").is_file()
