"""Dataset tools: resample.py, preprocess_text.py, bert_gen.py (bert_vits2.preprocess)."""

from __future__ import annotations

import importlib
import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import checkout_env

from bert_vits2.preprocess import (
    CleanedLine,
    bert_gen,
    bert_path_for,
    clean_transcription,
    preprocess_text,
    resample_folder,
    split_train_val,
)
from bert_vits2.text.bert import BertModelMissingError, get_bert_feature

REPO = Path(__file__).resolve().parents[1]


def _has_frontend() -> bool:
    try:
        return hasattr(importlib.import_module("bert_vits2.text"), "clean_text")
    except ImportError:
        return False


needs_frontend = pytest.mark.skipif(not _has_frontend(), reason="bert_vits2.text.clean_text not available yet")


def _sine(sr: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --- resample ---------------------------------------------------------------------------------------------------------


def test_resample_stereo_48k_flac_mp3_keeps_tree_and_skips_done(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "wavs"
    (raw / "alice").mkdir(parents=True)
    (raw / "bob" / "take2").mkdir(parents=True)
    tone = _sine(48000, 0.5)
    sf.write(raw / "alice" / "a.wav", np.stack([tone, tone], axis=1), 48000, subtype="PCM_24")
    sf.write(raw / "bob" / "take2" / "b.flac", _sine(22050, 0.3), 22050)
    sf.write(raw / "bob" / "c.mp3", _sine(44100, 0.4), 44100)
    (raw / "bob" / "notes.txt").write_text("not audio")

    summary = resample_folder(raw, out, 44100, processes=1, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (3, 0, [])
    for rel, seconds in (("alice/a.wav", 0.5), ("bob/take2/b.wav", 0.3), ("bob/c.wav", 0.4)):
        info = sf.info(out / rel)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (44100, 1, "PCM_16", "WAV")
        assert abs(info.frames - seconds * 44100) < 0.03 * 44100  # mp3 adds encoder padding
    assert not (out / "bob" / "notes.wav").exists()
    got, _ = sf.read(out / "alice" / "a.wav", dtype="float32")
    want = _sine(44100, 0.5)
    assert np.abs(got[1000:-1000] - want[1000:-1000]).max() < 2e-3  # same sine, stereo mean, 48k -> 44.1k

    again = resample_folder(raw, out, 44100, processes=1, progress=False)
    assert (again.done, again.skipped) == (0, 3)
    forced = resample_folder(raw, out, 44100, processes=1, overwrite=True, progress=False)
    assert forced.done == 3


def test_resample_parallel_ffmpeg_fallback_and_bad_file(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "wavs"
    raw.mkdir()
    for i in range(3):
        sf.write(raw / f"{i}.wav", _sine(16000, 0.2), 16000)
    (raw / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=300:duration=0.3",
                        "-ac", "2", "-ar", "32000", "-c:a", "aac", str(raw / "clip.m4a")], check=True)
    summary = resample_folder(raw, out, 44100, processes=2, progress=False)
    assert len(summary.failed) == 1 and "broken.wav" in summary.failed[0]
    assert summary.done == (4 if shutil.which("ffmpeg") else 3)
    if shutil.which("ffmpeg"):
        info = sf.info(out / "clip.wav")
        assert (info.samplerate, info.channels) == (44100, 1) and info.frames > 0.25 * 44100
    assert not list(out.glob("*.tmp*"))  # no half-written files left behind


def test_resample_cli(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    sf.write(raw / "x.wav", _sine(8000, 0.1), 8000)
    main = runpy.run_path(str(REPO / "resample.py"))["main"]
    assert main(["--in-dir", str(raw), "--out-dir", str(tmp_path / "o"), "--processes", "1", "--quiet"]) == 0
    assert sf.info(tmp_path / "o" / "x.wav").samplerate == 44100
    assert main(["--in-dir", str(tmp_path / "missing"), "--out-dir", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize("script", ["resample.py", "preprocess_text.py", "bert_gen.py"])
def test_scripts_answer_help(script, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=checkout_env())
    assert proc.returncode == 0 and "usage" in proc.stdout and "default" in proc.stdout


# --- preprocess_text --------------------------------------------------------------------------------------------------


def _lines(lang, n, speaker="s"):
    return [CleanedLine(f"{lang}{i}.wav", speaker, lang, "x", ("_",), (0,), (1,)) for i in range(n)]


def test_split_train_val_semantics():
    lines = _lines("ZH", 10) + _lines("JP", 3) + _lines("EN", 6)
    train, val = split_train_val(lines, val_per_lang=4, max_val_total=12, seed=0)
    assert len(val) == 11 and len(train) == 8  # 4 + 3 (all of JP) + 4
    assert sorted(l.wav for l in train + val) == sorted(l.wav for l in lines)
    train, val = split_train_val(lines, val_per_lang=4, max_val_total=5, seed=0)
    assert len(val) == 5 and len(train) == 14
    assert split_train_val(lines, 4, 5, seed=0) == (train, val)  # reproducible
    by_spk = _lines("ZH", 5, "a") + _lines("EN", 5, "b")
    _, val = split_train_val(by_spk, val_per_lang=2, max_val_total=12, seed=0, group_by="speaker")
    assert sorted(l.speaker for l in val) == ["a", "a", "b", "b"]


def test_cleaned_line_parse_rejects_inconsistent():
    good = CleanedLine("a.wav", "s", "ZH", "我.", ("_", "w", "o", ".", "_"), (0, 3, 3, 0, 0), (1, 2, 1, 1))
    assert CleanedLine.parse(good.to_line()) == good
    with pytest.raises(ValueError, match="word2ph sums"):
        CleanedLine.parse("a.wav|s|ZH|我.|_ w o . _|0 3 3 0 0|1 2 1 2")
    with pytest.raises(ValueError, match="7"):
        CleanedLine.parse("a.wav|s|ZH|我.")


@pytest.fixture
def dataset(tmp_path, bv2_ref, monkeypatch):
    """A made-up dataset: wavs for two speakers, a transcription list with good and bad lines, a config copy."""
    monkeypatch.chdir(tmp_path)
    wavs = Path("wavs")
    wavs.mkdir()
    for name in ("a1", "a2", "a3", "b1", "b2", "b3", "e1", "dup"):
        sf.write(wavs / f"{name}.wav", _sine(44100, 0.1), 44100, subtype="PCM_16")
    lines = [
        "wavs/a1.wav|alice|ZH|我很好。",                       # 1
        "wavs/a2.wav|alice|ZH|我觉得他还在睡觉。",              # 2
        "wavs/missing.wav|alice|ZH|你好。",                     # 3 missing wav
        "wavs/b1.wav|bob|ZH|欸，你好。",                        # 4
        "wavs/b2.wav|bob|KR|안녕하세요",                        # 5 unknown language
        "wavs/b3.wav|bob|ZH",                                   # 6 wrong field count
        "",                                                     # 7 blank: ignored
        "wavs/a3.wav|alice|ZH|覅客气。",                        # 8 rejected by the frontend (upstream asserts)
        "wavs/e1.wav|carol|EN|Hello world, this is a test.",    # 9
        "wavs/a1.wav|alice|ZH|重复的音频。",                     # 10 duplicate wav
        "wavs/dup.wav|bob|zh|对不起，我不知道。",                # 11 lower-case language accepted
    ]
    Path("filelists").mkdir()
    Path("filelists/esd.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    Path("configs").mkdir()
    shutil.copy(bv2_ref / "config.json", "configs/config.json")
    return {"tokenizer_dirs": {"EN": bv2_ref / "tokenizer_en_spm", "JP": bv2_ref / "tokenizer_ja_char"}}


@needs_frontend
@pytest.mark.slow
def test_preprocess_text_end_to_end_with_bad_lines(dataset):
    before = json.loads(Path("configs/config.json").read_text())
    summary = preprocess_text(tokenizer_dirs=dataset["tokenizer_dirs"], val_per_lang=1, max_val_total=12,
                              progress=False)
    problems = "\n".join(summary.problems)
    for line_no, what in ((3, "not found"), (5, "unknown language"), (6, "4 '|'-separated"), (8, "rejected"),
                          (10, "already used on line 1")):
        assert f"esd.list:{line_no}:" in problems and what in problems, (line_no, problems)
    assert len(summary.problems) == 5 and summary.n_lines == 10
    assert summary.spk2id == {"alice": 0, "bob": 1, "carol": 2}

    cleaned = Path("filelists/esd.list.cleaned").read_text(encoding="utf-8").splitlines()
    assert len(cleaned) == 6  # the duplicate is still a valid cleaned line; it is dropped at the split
    first = CleanedLine.parse(cleaned[0])
    assert first.to_line() == "wavs/a1.wav|alice|ZH|我很好.|_ w o h en h ao . _|0 3 3 2 2 3 3 0 0|1 2 2 2 1 1"
    train = Path("filelists/train.list").read_text(encoding="utf-8").splitlines()
    val = Path("filelists/val.list").read_text(encoding="utf-8").splitlines()
    assert len(val) == 2 and len(train) == 3  # one per language (ZH, EN) for validation
    assert sorted(CleanedLine.parse(l).wav for l in train + val) == sorted(
        ["wavs/a1.wav", "wavs/a2.wav", "wavs/b1.wav", "wavs/e1.wav", "wavs/dup.wav"])
    assert all(CleanedLine.parse(l).language in ("ZH", "EN") for l in train + val)

    after = json.loads(Path("configs/config.json").read_text())
    assert after["data"]["spk2id"] == {"alice": 0, "bob": 1, "carol": 2} and after["data"]["n_speakers"] == 3
    assert after["data"]["training_files"] == "filelists/train.list" and after["version"] == "2.3"
    assert after["model"] == before["model"] and after["train"] == before["train"]

    # the frontend in two worker processes gives the same lines and report, in file order (ZH only: cheap workers)
    zh_lines = [l for l in Path("filelists/esd.list").read_text(encoding="utf-8").splitlines() if "|ZH|" in l]
    Path("filelists/zh.list").write_text("\n".join(zh_lines) + "\n", encoding="utf-8")
    serial = clean_transcription("filelists/zh.list", progress=False)
    assert clean_transcription("filelists/zh.list", progress=False, processes=2) == serial
    assert len(serial[0]) == 4 and len(serial[1]) == 2

    # --no-clean reuses the cleaned list and gives the same split
    again = preprocess_text(clean=False, val_per_lang=1, progress=False)
    assert again.spk2id == summary.spk2id and (again.n_train, again.n_val) == (3, 2)
    assert Path("filelists/train.list").read_text(encoding="utf-8").splitlines() == train


def test_preprocess_text_cli_errors(tmp_path, monkeypatch, bv2_ref):
    monkeypatch.chdir(tmp_path)
    main = runpy.run_path(str(REPO / "preprocess_text.py"))["main"]
    assert main(["--transcription-path", "nothing.list", "--config-path", str(bv2_ref / "config.json")]) == 2
    assert main(["--config-path", "missing.json"]) == 2


# --- bert_gen ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def bert_lists(tmp_path, bv2_ref):
    """Cleaned lists built from the upstream seq_zh cases (phones/word2ph as upstream's frontend gave them)."""
    cases = torch.load(bv2_ref / "cases.pt", weights_only=True)
    wav_dir = tmp_path / "wavs"
    wav_dir.mkdir()
    lines = []
    for i, name in enumerate(("seq_zh_0", "seq_zh_1", "seq_zh_2")):
        out = cases[name]["outputs"]
        wav = wav_dir / f"u{i}.wav"
        sf.write(wav, _sine(44100, 0.05), 44100)
        lines.append(CleanedLine(str(wav), "alice", "ZH", out["norm_text"], tuple(out["phones"]),
                                 tuple(out["tones_raw"]), tuple(out["word2ph"])))
    train, val = tmp_path / "train.list", tmp_path / "val.list"
    train.write_text("".join(l.to_line() + "\n" for l in lines[:2]), encoding="utf-8")
    val.write_text(lines[2].to_line() + "\n" + lines[0].to_line() + "\n", encoding="utf-8")  # u0 twice: once computed
    return {"lists": [train, val], "lines": lines, "cases": cases, "dirs": {"ZH": bv2_ref / "bert_tiny_zh"}}


@pytest.mark.slow
def test_bert_gen_writes_skips_and_repairs(bert_lists):
    lines, dirs = bert_lists["lines"], bert_lists["dirs"]
    summary = bert_gen(bert_lists["lists"], dirs, add_blank=True, processes=1, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (3, 0, [])
    for i, line in enumerate(lines):
        path = Path(bert_path_for(line.wav))
        assert path.name == f"u{i}.bert.pt"
        feat = torch.load(path, weights_only=True)
        assert feat.shape == (64, 2 * len(line.phones) + 1)
        want_w2p = bert_lists["cases"][f"seq_zh_{i}"]["outputs"]["word2ph_blank"]
        torch.testing.assert_close(feat, get_bert_feature(line.norm_text, want_w2p, "ZH", dirs["ZH"]))

    again = bert_gen(bert_lists["lists"], dirs, progress=False)
    assert (again.done, again.skipped) == (0, 3)

    Path(bert_path_for(lines[0].wav)).write_bytes(b"truncated")  # corrupt cache
    torch.save(torch.zeros(64, 5), bert_path_for(lines[1].wav))  # stale length
    repaired = bert_gen(bert_lists["lists"], dirs, progress=False)
    assert (repaired.done, repaired.skipped) == (2, 1)
    assert torch.load(bert_path_for(lines[1].wav), weights_only=True).shape[-1] == 2 * len(lines[1].phones) + 1

    forced = bert_gen(bert_lists["lists"], dirs, overwrite=True, progress=False)
    assert forced.done == 3
    assert not list(Path(lines[0].wav).parent.glob(".*tmp"))


def test_bert_gen_without_blanks_and_bad_lines(bert_lists, tmp_path):
    lines, dirs = bert_lists["lines"], bert_lists["dirs"]
    bad_list = tmp_path / "bad.list"
    bad_list.write_text(lines[0].to_line() + "\nnot|a|cleaned|line\n", encoding="utf-8")
    summary = bert_gen([bad_list], dirs, add_blank=False, progress=False)
    assert summary.done == 1 and len(summary.failed) == 1 and "bad.list:2" in summary.failed[0]
    assert torch.load(bert_path_for(lines[0].wav), weights_only=True).shape == (64, len(lines[0].phones))


def test_bert_gen_missing_model_stops_before_work(bert_lists, tmp_path):
    with pytest.raises(BertModelMissingError, match="chinese-roberta-wwm-ext-large"):
        bert_gen(bert_lists["lists"], {"ZH": tmp_path / "no_model"}, progress=False)
    assert not list((tmp_path / "wavs").glob("*.bert.pt"))


@pytest.mark.slow
def test_bert_gen_cli_parallel(bert_lists, tmp_path, bv2_ref):
    config = json.loads((bv2_ref / "config.json").read_text())
    config["data"]["training_files"], config["data"]["validation_files"] = map(str, bert_lists["lists"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    main = runpy.run_path(str(REPO / "bert_gen.py"))["main"]
    rc = main(["-c", str(tmp_path / "config.json"), "--bert-dir-zh", str(bert_lists["dirs"]["ZH"]),
               "--device", "cpu", "--num-processes", "2", "--quiet"])
    assert rc == 0
    assert len(list((tmp_path / "wavs").glob("*.bert.pt"))) == 3


def test_bert_path_naming():
    assert bert_path_for("data/x.wav") == "data/x.bert.pt"
    assert bert_path_for("data/x.WAV") == "data/x.bert.pt"
    assert bert_path_for("data/x.flac") == "data/x.bert.pt"


def test_missing_tokenizer_folder_is_refused_up_front(tmp_path, monkeypatch, bv2_ref, caplog):
    """No English tokenizer folder: one line before any cleaning, unless --allow-tokenizer-fallback is given."""
    from bert_vits2.preprocess import TokenizerMissingError

    monkeypatch.chdir(tmp_path)
    Path("wavs").mkdir()
    for name in ("z1", "e1", "e2"):
        sf.write(f"wavs/{name}.wav", _sine(44100, 0.1), 44100, subtype="PCM_16")
    Path("esd.list").write_text("wavs/z1.wav|a|ZH|你好。\nwavs/e1.wav|a|EN|Hello there.\nwavs/e2.wav|a|EN|Good.\n",
                                encoding="utf-8")
    shutil.copy(bv2_ref / "config.json", "config.json")
    args = dict(transcription_path="esd.list", train_path="train.list", val_path="val.list", config_path="config.json",
                tokenizer_dirs={"EN": tmp_path / "no_such_dir"}, progress=False)
    with pytest.raises(TokenizerMissingError, match=r"esd\.list: 2 EN line\(s\) need the English word tokenizer, but "
                                                    r"its folder .*no_such_dir does not exist: .*--tokenizer-dir-en DIR"
                                                    r"; --allow-tokenizer-fallback") as info:
        preprocess_text(**args)
    assert "\n" not in str(info.value)
    assert not Path("esd.list.cleaned").exists() and not Path("train.list").exists()
    main = runpy.run_path(str(REPO / "preprocess_text.py"))["main"]
    assert main(["--transcription-path", "esd.list", "--config-path", "config.json", "--tokenizer-dir-en",
                 str(tmp_path / "no_such_dir"), "--quiet"]) == 2
    if _has_frontend():  # the explicit fallback goes on (and says so)
        with caplog.at_level("WARNING"):
            summary = preprocess_text(**args, allow_tokenizer_fallback=True, val_per_lang=0)
        assert summary.n_train == 3 and "fallback split (--allow-tokenizer-fallback)" in caplog.text
