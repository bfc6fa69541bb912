"""bert_vits2.hparams: upstream config.json access, validation and atomic write-back."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest

from bert_vits2.hparams import ConfigError, ConfigNotFoundError, HParams, load_hparams, save_hparams


@pytest.fixture()
def ref_config(bv2_ref: Path) -> Path:
    return bv2_ref / "config.json"


def test_attribute_and_mapping_access(ref_config: Path) -> None:
    hps = load_hparams(ref_config)
    raw = json.loads(ref_config.read_text(encoding="utf-8"))
    assert hps.model.hidden_channels == 32
    assert hps.model.gin_channels == 16
    assert hps.data.n_speakers == 3
    assert hps.data.spk2id.bob == 1 and hps.data.spk2id["carol"] == 2
    assert hps.model.slm.nlayers == 13 and hps["model"]["slm"]["hidden"] == 768
    assert hps.train.betas == [0.8, 0.99] and hps.train.eps == 1e-9
    assert hps.data.mel_fmax is None
    assert hps.version == "2.3"
    # every section and key of the file is there, in file order
    assert list(hps) == list(raw) and list(hps.model.keys()) == list(raw["model"])
    assert len(hps.model) == len(raw["model"])
    assert "gin_channels" in hps.model and "nope" not in hps.model
    assert hps.model.get("nope", 5) == 5 and hps.get("version") == "2.3"
    assert dict(hps.model.items())["n_heads"] == 2
    assert hps.to_dict() == raw
    assert isinstance(hps.to_dict()["model"]["slm"], dict) and not isinstance(hps.to_dict()["model"]["slm"], HParams)
    with pytest.raises(AttributeError, match="no hyperparameter 'nope'"):
        _ = hps.model.nope
    with pytest.raises(KeyError):
        _ = hps.model["nope"]


def test_splat_into_constructor(ref_config: Path) -> None:
    hps = load_hparams(ref_config)

    def constructor(n_vocab, spec_channels, segment_size, n_speakers=0, gin_channels=0, **kwargs):
        return dict(n_speakers=n_speakers, gin_channels=gin_channels, **kwargs)

    got = constructor(112, 1025, 32, n_speakers=hps.data.n_speakers, **hps.model)
    assert got["gin_channels"] == 16 and got["n_speakers"] == 3
    assert got["resblock_dilation_sizes"] == [[1, 3, 5]] * 3
    assert got["slm"]["sr"] == 16000  # nested section still indexable after the splat


def test_setting_values_and_copies(ref_config: Path) -> None:
    hps = load_hparams(ref_config)
    hps.model_dir = "/tmp/x"  # upstream scripts attach attributes like this
    hps.data.spk2id = {"dora": 0}
    assert hps["model_dir"] == "/tmp/x" and isinstance(hps.data.spk2id, HParams) and hps.data.spk2id.dora == 0
    clone = copy.deepcopy(hps)
    pickled = pickle.loads(pickle.dumps(hps))
    assert clone == hps and pickled == hps
    clone.model.hidden_channels = 7
    assert hps.model.hidden_channels == 32  # deep copy, not shared
    assert hps != clone
    del hps.model_dir
    assert "model_dir" not in hps


def test_round_trip_keeps_everything(ref_config: Path, tmp_path: Path) -> None:
    hps = load_hparams(ref_config)
    out = tmp_path / "sub" / "config.json"
    save_hparams(hps, out)
    again = load_hparams(out)
    assert again == hps
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(ref_config.read_text(encoding="utf-8"))
    # saving the re-loaded config gives the same bytes (stable format)
    out2 = tmp_path / "config2.json"
    save_hparams(again, out2)
    assert out2.read_bytes() == out.read_bytes()


def test_save_writes_speakers_back_atomically(ref_config: Path, tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(ref_config.read_bytes())
    hps = load_hparams(target)
    hps.data.spk2id = {"派蒙_ZH": 0, "alice": 1}
    hps.data.n_speakers = 2
    save_hparams(hps, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no temp file left behind
    text = target.read_text(encoding="utf-8")
    assert "派蒙_ZH" in text  # written as UTF-8, not \u escapes
    again = load_hparams(target)
    assert again.data.spk2id.to_dict() == {"派蒙_ZH": 0, "alice": 1} and again.data.n_speakers == 2
    original = json.loads(ref_config.read_text(encoding="utf-8"))
    assert again.model.to_dict() == original["model"] and again.train.to_dict() == original["train"]
    # a plain dict is accepted too
    save_hparams(original, target)
    assert load_hparams(target).data.n_speakers == 3


def test_save_failure_keeps_old_file(ref_config: Path, tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(ref_config.read_bytes())
    with pytest.raises(TypeError):
        save_hparams({"train": {}, "bad": object()}, target)
    assert target.read_bytes() == ref_config.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigNotFoundError, match="nope.json"):
        load_hparams(missing)
    with pytest.raises(FileNotFoundError):  # also catchable as the builtin
        load_hparams(missing)
    with pytest.raises(ConfigError, match="directory"):
        load_hparams(tmp_path)


def test_invalid_json(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{"train": {},\n  "data": {oops}\n}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config\.json: invalid JSON at line 2") as info:
        load_hparams(bad)
    assert info.value.__suppress_context__  # no JSONDecodeError traceback chained in
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="JSON object"):
        load_hparams(bad)
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_hparams(bad)


def test_missing_sections_and_shape_keys(ref_config: Path, tmp_path: Path) -> None:
    raw = json.loads(ref_config.read_text(encoding="utf-8"))
    path = tmp_path / "c.json"

    def write(cfg):
        path.write_text(json.dumps(cfg), encoding="utf-8")
        return path

    no_model = {k: v for k, v in raw.items() if k != "model"}
    with pytest.raises(ConfigError, match=r"c\.json: missing section\(s\) 'model'"):
        load_hparams(write(no_model))
    no_gin = copy.deepcopy(raw)
    del no_gin["model"]["gin_channels"]
    with pytest.raises(ConfigError, match="'model.gin_channels' is missing"):
        load_hparams(write(no_gin))
    no_spk = copy.deepcopy(raw)
    del no_spk["data"]["n_speakers"]
    with pytest.raises(ConfigError, match="'data.n_speakers' is missing"):
        load_hparams(write(no_spk))
    out_of_range = copy.deepcopy(raw)
    out_of_range["data"]["spk2id"]["dave"] = 3
    with pytest.raises(ConfigError, match="'dave': 3"):
        load_hparams(write(out_of_range))


def test_shipped_v23_config(repo_root: Path) -> None:
    hps = load_hparams(repo_root / "configs" / "config.json")
    assert hps.version == "2.3"
    assert hps.model.gin_channels == 512 and hps.data.n_speakers == 850
    assert (hps.model.hidden_channels, hps.model.inter_channels, hps.model.filter_channels) == (192, 192, 768)
    assert (hps.model.n_heads, hps.model.n_layers, hps.model.kernel_size) == (2, 6, 3)
    assert hps.model.upsample_rates == [8, 8, 2, 2, 2] and hps.model.upsample_initial_channel == 512
    assert hps.model.upsample_kernel_sizes == [16, 16, 8, 2, 2] and hps.model.resblock == "1"
    assert (hps.data.sampling_rate, hps.data.filter_length, hps.data.hop_length, hps.data.win_length) == (44100, 2048, 512, 2048)
    assert (hps.data.n_mel_channels, hps.data.mel_fmin, hps.data.mel_fmax) == (128, 0.0, None)
    assert hps.train.segment_size == 16384 and hps.train.learning_rate == 2e-4 and hps.train.c_mel == 45
    assert hps.train.lr_decay == 0.99995 and hps.train.batch_size == 16 and hps.train.skip_optimizer is True
    assert hps.data.spk2id.to_dict() == {}  # filled by preprocess_text.py from the user's speakers
    assert hps.model.slm.to_dict() == {"model": "./slm/wavlm-base-plus", "sr": 16000, "hidden": 768,
                                       "nlayers": 13, "initial_channel": 64}


@pytest.mark.parametrize("section,key,value,pattern", [
    ("data", "hop_length", 0, r"'data\.hop_length' must be a positive integer, got 0"),
    ("train", "batch_size", "two", r"'train\.batch_size' must be a positive integer, got \"two\""),
    ("train", "learning_rate", "2e-4", r"'train\.learning_rate' must be a positive number, got \"2e-4\""),
    ("data", "sampling_rate", 44100.5, r"'data\.sampling_rate' must be a positive integer, got 44100\.5"),
    ("train", "bf16_run", "no", r"'train\.bf16_run' must be true or false"),
    ("model", "hidden_channels", True, r"'model\.hidden_channels' must be a positive integer, got true"),
    ("train", "betas", [0.8], r"'train\.betas' must be two numbers in \[0, 1\)"),
    ("model", "upsample_rates", [8, "8"], r"'model\.upsample_rates' must be a list of positive integers"),
    ("data", "mel_fmax", "high", r"'data\.mel_fmax' must be a positive number or null"),
])
def test_wrong_types_are_refused_naming_the_key(ref_config: Path, tmp_path: Path, section, key, value, pattern) -> None:
    cfg = json.loads(ref_config.read_text(encoding="utf-8"))
    cfg[section][key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ConfigError, match=pattern) as info:
        load_hparams(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_right_types_and_null_fmax_pass(ref_config: Path, tmp_path: Path) -> None:
    cfg = json.loads(ref_config.read_text(encoding="utf-8"))
    cfg["data"]["mel_fmax"] = 8000
    cfg["train"]["learning_rate"] = 1  # an int where a float is usual is still a number
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    assert load_hparams(path).data.mel_fmax == 8000
