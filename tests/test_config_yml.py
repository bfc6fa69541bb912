"""config.yml (issue 14): upstream's settings file for the tools; the default file on first use; options win."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from bert_vits2.config_yml import (
    DEFAULT_YML_TEXT,
    YmlError,
    apply_webui_model,
    apply_yml,
    load_yml,
    section_values,
    write_default_yml,
)

UPSTREAM_SECTIONS = {"dataset_path", "mirror", "openi_token", "resample", "preprocess_text", "bert_gen", "emo_gen",
                     "train_ms", "webui", "server", "translate"}


def _yml(tmp_path, dataset: str, **sections) -> str:
    data = yaml.safe_load(DEFAULT_YML_TEXT)
    data["dataset_path"] = dataset
    for name, values in sections.items():
        data[name].update(values)
    path = tmp_path / "my.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_default_file_has_upstream_layout(tmp_path):
    path = write_default_yml(tmp_path / "config.yml")
    data = load_yml(path)
    assert set(data) == UPSTREAM_SECTIONS
    assert data["dataset_path"] == "Data/"
    assert data["resample"] == {"sampling_rate": 44100, "in_dir": "audios/raw", "out_dir": "audios/wavs"}
    assert {"transcription_path", "cleaned_path", "train_path", "val_path", "config_path"} <= set(data["preprocess_text"])
    assert data["preprocess_text"]["val_per_lang"] == 4 and data["preprocess_text"]["max_val_total"] == 12
    assert data["train_ms"]["env"] == {"MASTER_ADDR": "localhost", "MASTER_PORT": 10086, "WORLD_SIZE": 1,
                                       "LOCAL_RANK": 0, "RANK": 0}
    assert data["train_ms"]["model"] == "models" and data["train_ms"]["keep_ckpts"] == 8
    assert data["webui"]["port"] == 7860 and data["webui"]["language_identification_library"] == "langid"
    assert isinstance(data["server"]["models"], list)
    with pytest.raises(FileExistsError):  # never overwrites a user's file
        write_default_yml(path)


def test_paths_joined_with_dataset_path(tmp_path):
    data = {"dataset_path": "Data/alice", "resample": {"in_dir": "raw", "out_dir": str(tmp_path / "abs")},
            "preprocess_text": {"cleaned_path": "", "clean": False, "val_per_lang": 2},
            "train_ms": {"spec_cache": False, "model": "models"}}
    assert section_values(data, "resample") == {"in_dir": "Data/alice/raw", "out_dir": str(tmp_path / "abs")}
    assert section_values(data, "preprocess_text") == {"cleaned_path": None, "clean": False, "val_per_lang": 2}
    assert section_values(data, "train_ms") == {"no_spec_cache": True, "model_dir": "Data/alice/models"}


def test_malformed_file_is_named(tmp_path):
    bad = tmp_path / "config.yml"
    bad.write_text("resample: [1, 2\n", encoding="utf-8")
    with pytest.raises(YmlError, match="config.yml"):
        load_yml(bad)
    bad.write_text("resample: 3\n", encoding="utf-8")
    with pytest.raises(YmlError, match="section 'resample'"):
        load_yml(bad)


def _wav(path, seconds=0.2, sr=22050):
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)


def test_resample_first_use_then_reads_config(tmp_path, monkeypatch, capsys):
    import resample

    monkeypatch.chdir(tmp_path)
    assert resample.main([]) == 0  # upstream's first run: writes config.yml and stops
    assert (tmp_path / "config.yml").read_text(encoding="utf-8") == DEFAULT_YML_TEXT
    assert "wrote the default settings file config.yml" in capsys.readouterr().out
    text = (tmp_path / "config.yml").read_text(encoding="utf-8").replace('dataset_path: "Data/"',
                                                                          'dataset_path: "Data/alice"')
    (tmp_path / "config.yml").write_text(text, encoding="utf-8")
    _wav(tmp_path / "Data/alice/audios/raw/spk/001.wav")
    assert resample.main(["--quiet"]) == 0  # no arguments about paths: all from config.yml
    import soundfile as sf

    info = sf.info(tmp_path / "Data/alice/audios/wavs/spk/001.wav")
    assert info.samplerate == 44100 and info.channels == 1 and info.subtype == "PCM_16"
    assert resample.main(["--quiet", "--out-dir", "elsewhere", "--sr", "22050"]) == 0  # the command line wins
    assert sf.info(tmp_path / "elsewhere/spk/001.wav").samplerate == 22050


def test_yml_option_names_the_file(tmp_path, monkeypatch):
    import bert_gen
    import resample

    monkeypatch.chdir(tmp_path)
    assert resample.main(["-y", "other.yml"]) == 0  # -y naming a missing file writes it, as upstream
    assert load_yml(tmp_path / "other.yml")["resample"]["sampling_rate"] == 44100
    assert not (tmp_path / "config.yml").exists()
    # bert_gen reads bert_gen.config_path from it: Data/config.json does not exist -> error naming it
    assert bert_gen.main(["-y", "other.yml", "--quiet"]) == 2
    assert resample.main(["--in-dir", "x", "-y", "missing.yml"]) == 2  # with other options: no silent default


def test_preprocess_text_from_config_yml(tmp_path, monkeypatch, bv2_ref):
    import preprocess_text

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "Data" / "bob"
    (root / "filelists").mkdir(parents=True)
    lines = []
    for i, text in enumerate(["你好。", "今天天气很好。", "我们走吧。", "再见。"]):
        _wav(root / "audios" / "wavs" / f"{i}.wav")
        lines.append(f"{root / 'audios' / 'wavs' / f'{i}.wav'}|bob|ZH|{text}")
    (root / "filelists" / "esd.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "config.json").write_text((bv2_ref / "config.json").read_text(encoding="utf-8"), encoding="utf-8")
    yml = _yml(tmp_path, "Data/bob", preprocess_text={"val_per_lang": 1, "max_val_total": 1})
    assert preprocess_text.main(["-y", yml, "--quiet"]) == 0
    assert len((root / "filelists" / "val.list").read_text(encoding="utf-8").splitlines()) == 1
    assert len((root / "filelists" / "train.list").read_text(encoding="utf-8").splitlines()) == 3
    assert (root / "filelists" / "esd.list.cleaned").is_file()
    cfg = json.loads((root / "config.json").read_text(encoding="utf-8"))
    assert cfg["data"]["spk2id"] == {"bob": 0}


def test_train_ms_and_webui_read_their_sections(tmp_path, monkeypatch, capsys):
    import train_ms
    import webui

    monkeypatch.chdir(tmp_path)
    for key in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.setenv(key, "")  # recorded, so what apply_env sets is undone after the test
        monkeypatch.delenv(key)
    yml = _yml(tmp_path, "Data/carol", webui={"model": "models/G_100.pth", "port": 7999})
    # --check uses train_ms.config_path from config.yml: Data/carol/config.json is missing -> named in the error
    assert train_ms.main(["-y", yml, "--check", "--no-progress"]) == 1
    assert "Data/carol/config.json" in capsys.readouterr().err
    import os

    assert os.environ["MASTER_PORT"] == "10086"  # train_ms.env fills what the environment lacks

    parser = webui.build_parser()
    args = parser.parse_args(["-y", yml])
    apply_yml(parser, args, ["-y", yml], "webui")
    apply_webui_model(args)
    assert (args.checkpoint, args.model_dir, args.config, args.port) == (
        "Data/carol/models/G_100.pth", "Data/carol/models", "Data/carol/config.json", 7999)
    args = parser.parse_args(["-y", yml, "--port", "8000", "-m", "voice"])  # options win
    apply_yml(parser, args, ["-y", yml, "--port", "8000", "-m", "voice"], "webui")
    apply_webui_model(args)
    assert (args.port, args.model_dir, args.checkpoint) == (8000, "voice", None)
