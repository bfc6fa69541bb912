"""Web UI memory (issue 24 item 3): a long audio -> face request in a fresh process stays within a bounded increment
over the process's own baseline and gives its memory back (benchmarks/bench_webui_memory.py measures the largest)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, checkout_env

SCRIPT = REPO_ROOT / "benchmarks" / "bench_webui_memory.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_webui_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_long_audio_to_face_memory_is_bounded_and_released(bench, tmp_path):
    """120 s of 48 kHz stereo speech: before blocking, the whole-clip STFT and mel-head activations alone took
    ~450 MiB for this length (2.1 GB at 510 s); now the audio (21 MiB at 44.1 kHz) plus bounded blocks."""
    if not (REPO_ROOT / "motion" / "face" / "assets" / "default_mel_head.pth").is_file():
        pytest.skip("the shipped default head is missing")
    audio = bench.make_speech(tmp_path / "long.flac", 120.0, 48000, 2)
    warm = bench.make_speech(tmp_path / "warm.wav", 3.0, 44100, 1)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--child", "a2f", "--audio", str(audio), "--warm", str(warm),
                           "--threads", "2"], capture_output=True, text=True, timeout=900, env=checkout_env(),
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["peak_mib"] - r["baseline_mib"] <= 150, r
    assert r["after_mib"] - r["baseline_mib"] <= 60, r


def test_bench_refuses_bad_counts(bench, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--requests", "0"])
    assert exc.value.code == 2 and "at least 1" in capsys.readouterr().err
