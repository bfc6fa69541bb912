"""Pre-flight data check (bert_vits2.data.preflight_check, ``train_ms.py --check``): every bad list line with its file,
line number and reason before training step 1, instead of a DataLoader traceback mid-run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import checkout_env

from bert_vits2.data import TextAudioSpeakerDataset, preflight_check
from bert_vits2.hparams import load_hparams

REPO = Path(__file__).resolve().parents[1]
PHONES, TONES, WORD2PH = "_ n i h ao _", "0 3 3 3 3 0", "1 2 2 1"  # 你好 (6 phones -> 13 ids with blanks)


def _wav(path: Path, sr: int = 16000, seconds: float = 0.5, channels: int = 1) -> None:
    t = np.arange(int(sr * seconds)) / sr
    audio = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([audio] * channels, axis=1) if channels > 1 else audio, sr, subtype="PCM_16")


def _bert(wav: Path, n_ids: int = 13) -> None:
    torch.save(torch.randn(1024, n_ids), wav.with_suffix(".bert.pt"))


@pytest.fixture()
def data(tmp_path: Path, bv2_ref: Path) -> dict:
    """A train list with one good line and one line per problem, a val list with one bad line."""
    cfg = json.loads((bv2_ref / "config.json").read_text())
    cfg["train"].update(segment_size=1024)
    cfg["data"].update(training_files=str(tmp_path / "train.list"), validation_files=str(tmp_path / "val.list"),
                       sampling_rate=16000, filter_length=1024, hop_length=256, win_length=1024,
                       n_speakers=2, spk2id={"alice": 0, "bob": 1})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    w = {name: tmp_path / f"{name}.wav" for name in ("good", "rate", "nobert", "stranger", "stereo", "shape", "short",
                                                     "val_bad")}
    _wav(w["good"])
    _bert(w["good"])
    _wav(w["rate"], sr=22050)
    _bert(w["rate"])
    _wav(w["nobert"])
    _wav(w["stranger"])
    _bert(w["stranger"])
    _wav(w["stereo"], channels=2)
    _bert(w["stereo"])
    _wav(w["shape"])
    _bert(w["shape"], n_ids=7)
    _wav(w["short"], seconds=0.03)
    _bert(w["short"])
    _wav(w["val_bad"], sr=44100)
    _bert(w["val_bad"])

    def line(wav: Path, speaker: str = "alice") -> str:
        return f"{wav}|{speaker}|ZH|你好|{PHONES}|{TONES}|{WORD2PH}"

    train = [line(w["good"]), line(w["rate"]), line(w["nobert"]), line(w["stranger"], "carol"), line(w["stereo"]),
             line(w["shape"]), line(w["short"]), line(tmp_path / "gone.wav"), "only|three|fields", ""]
    (tmp_path / "train.list").write_text("\n".join(train) + "\n", encoding="utf-8")
    (tmp_path / "val.list").write_text(line(w["good"], "bob") + "\n" + line(w["val_bad"]) + "\n", encoding="utf-8")
    return {"root": tmp_path, "config": tmp_path / "config.json", "wavs": w}


def test_every_bad_line_is_listed_with_file_line_and_reason(data) -> None:
    hps = load_hparams(data["config"])
    report = preflight_check(hps, progress=False)
    train, val = str(data["root"] / "train.list"), str(data["root"] / "val.list")
    assert report.checked == 11
    got = {(p.file, p.line): p.reason for p in report.errors}
    assert set(got) == {(train, n) for n in (2, 3, 4, 5, 6, 8, 9)} | {(val, 2)}
    assert "22050 Hz, the config expects 16000 Hz: run resample.py" in got[(train, 2)]
    assert got[(train, 3)].startswith("missing ") and "nobert.bert.pt: run bert_gen.py" in got[(train, 3)]
    assert "unknown speaker 'carol'" in got[(train, 4)]
    assert "2 channels" in got[(train, 5)]
    assert "shape (1024, 7), expected (1024, 13)" in got[(train, 6)]
    assert "gone.wav not found" in got[(train, 8)]
    assert "expected 7 '|'-separated fields" in got[(train, 9)]
    assert "44100 Hz" in got[(val, 2)]
    assert [(p.line, p.fatal) for p in report.warnings] == [(7, False)]  # too short: the dataset skips it, as upstream
    text = report.describe()
    assert text.splitlines()[0] == "data check: 11 lines, 8 bad, 1 skipped by the length filters"
    assert f"{train}:2: " in text and f"{val}:2: " in text
    assert report.bad_lines(train) == {2, 3, 4, 5, 6, 8, 9}
    # the dataset can leave exactly those lines out (train_ms.py --skip-bad-lines)
    dataset = TextAudioSpeakerDataset(train, hps, skip_lines=report.bad_lines(train), shuffle_seed=None)
    assert [Path(u.line.wav).name for u in dataset.utterances] == ["good.wav"]


@pytest.mark.slow
def test_train_ms_check_exit_codes_and_progress_bar(data) -> None:
    cmd = [sys.executable, str(REPO / "train_ms.py"), "--check", "-c", str(data["config"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=data["root"], env=checkout_env())
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "data check: 11 lines, 8 bad" in proc.stdout and "train.list:4: unknown speaker 'carol'" in proc.stdout
    assert "checking data" in proc.stderr  # the tqdm bar over the list
    assert "Traceback" not in proc.stderr
    # fix the lists: only good lines left -> exit 0
    train = (data["root"] / "train.list").read_text().splitlines()
    (data["root"] / "train.list").write_text(train[0] + "\n", encoding="utf-8")
    (data["root"] / "val.list").write_text(train[0] + "\n", encoding="utf-8")
    proc = subprocess.run(cmd + ["--no-progress"], capture_output=True, text=True, timeout=300, cwd=data["root"],
                          env=checkout_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert proc.stdout.strip() == "data check: 2 lines, 0 bad, 0 skipped by the length filters"


def test_missing_list_and_empty_spk2id(data) -> None:
    hps = load_hparams(data["config"])
    hps.data.training_files = str(data["root"] / "nowhere.list")
    hps.data.spk2id = {}
    report = preflight_check(hps, progress=False)
    reasons = [str(p) for p in report.errors]
    assert any(r.startswith(f"{data['root'] / 'nowhere.list'}: filelist not found") for r in reasons)
    assert any(r.startswith("config: data.spk2id is empty") for r in reasons)
