"""BERT features (bert_vits2.text.bert) and inference inputs (bert_vits2.text.inputs) against upstream v2.3 outputs."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

import pytest
import torch

from bert_vits2.text import bert as bert_mod
from bert_vits2.text.bert import (
    BertFeatureError,
    BertModelMissingError,
    clear_bert_cache,
    default_bert_dir,
    get_bert_feature,
    load_bert,
)

FOLDERS = {"ZH": "bert_tiny_zh", "JP": "tokenizer_ja_char", "EN": "tokenizer_en_spm"}


@pytest.fixture(scope="module")
def cases(bv2_ref):
    return torch.load(bv2_ref / "cases.pt", weights_only=True)


@pytest.fixture(scope="module")
def tiny_dirs(bv2_ref):
    return {lang: bv2_ref / name for lang, name in FOLDERS.items()}


def _has(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


needs_frontend = pytest.mark.skipif(
    not _has("bert_vits2.text", "clean_text"), reason="bert_vits2.text.clean_text (frontend) not available yet"
)
needs_kata = pytest.mark.skipif(
    not _has("bert_vits2.text.japanese", "text2sep_kata"), reason="bert_vits2.text.japanese.text2sep_kata not available yet"
)


def _check_case(case, tiny_dirs):
    inputs = case["inputs"]
    language = inputs.get("language", "ZH")
    got = get_bert_feature(inputs["norm_text"], inputs["word2ph"], language, tiny_dirs[language], **case["kwargs"])
    want = case["outputs"]["phone_level_feature"]
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


@pytest.mark.parametrize("name", ["bert_zh_0", "bert_zh_1", "bert_zh_2", "bert_zh_3", "bert_zh_4", "bert_zh_style",
                                  "bert_en_0", "bert_en_1", "bert_en_2", "bert_en_3", "bert_en_style"])
def test_matches_upstream_zh_en(name, cases, tiny_dirs):
    _check_case(cases[name], tiny_dirs)


@needs_kata
@pytest.mark.parametrize("name", ["bert_ja_0", "bert_ja_1", "bert_ja_2", "bert_ja_3", "bert_ja_style"])
def test_matches_upstream_ja(name, cases, tiny_dirs):
    _check_case(cases[name], tiny_dirs)


def test_style_changes_feature_and_weight_zero_is_plain(cases, tiny_dirs):
    inputs = cases["bert_zh_0"]["inputs"]
    plain = get_bert_feature(inputs["norm_text"], inputs["word2ph"], "ZH", tiny_dirs["ZH"])
    mixed = get_bert_feature(inputs["norm_text"], inputs["word2ph"], "zh", tiny_dirs["ZH"], style_text="我很好.")
    zero = get_bert_feature(inputs["norm_text"], inputs["word2ph"], "ZH", tiny_dirs["ZH"], style_text="我很好.",
                            style_weight=0.0)
    assert not torch.allclose(plain, mixed, atol=1e-3)
    torch.testing.assert_close(zero, plain)


def test_word2ph_mismatch_is_a_clear_error(tiny_dirs):
    with pytest.raises(BertFeatureError, match=r"gives 4 BERT tokens .* word2ph has 3 entries"):
        get_bert_feature("你好", [3, 4, 2], "ZH", tiny_dirs["ZH"])


def test_missing_folder_names_folder_model_and_purpose(tmp_path):
    missing = tmp_path / "nowhere"
    for lang, model in (("ZH", "chinese-roberta-wwm-ext-large"), ("JP", "deberta-v2-large-japanese-char-wwm"),
                        ("EN", "deberta-v3-large")):
        with pytest.raises(BertModelMissingError) as err:
            get_bert_feature("x", [1, 1, 1], lang, missing)
        msg = str(err.value)
        assert str(missing) in msg and model in msg and "features" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_folder_without_weights(tmp_path, tiny_dirs):
    folder = tmp_path / "chinese-roberta-wwm-ext-large"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_dirs["ZH"] / "config.json").read_text())
    with pytest.raises(BertModelMissingError, match="No model weights"):
        load_bert(folder, "ZH")


def test_default_folders(monkeypatch):
    monkeypatch.delenv("BV2_BERT_ROOT", raising=False)
    assert default_bert_dir("ZH") == Path("bert/chinese-roberta-wwm-ext-large")
    assert default_bert_dir("ja") == Path("bert/deberta-v2-large-japanese-char-wwm")
    monkeypatch.setenv("BV2_BERT_ROOT", "/models")
    assert default_bert_dir("EN") == Path("/models/deberta-v3-large")
    with pytest.raises(ValueError, match="ZH, JP and EN"):
        default_bert_dir("KR")


def test_models_cached_eval_and_loaded_once_across_threads(tiny_dirs, monkeypatch):
    clear_bert_cache()
    calls = []
    real_load = bert_mod._load

    def counting_load(*args):
        calls.append(args)
        return real_load(*args)

    monkeypatch.setattr(bert_mod, "_load", counting_load)
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_bert(tiny_dirs["ZH"], "ZH"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r[1] is results[0][1] for r in results)
    assert not results[0][1].training
    assert load_bert(str(tiny_dirs["ZH"]) + "/", "ZH")[1] is results[0][1]  # same folder, other spelling


def test_random_tiny_bert_built_here(tmp_path):
    """A BERT made in the test (not a fixture): feature = hidden_states[-3] repeated per word2ph."""
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "你", "好", "!"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizer(str(tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)
    model = transformers.BertForMaskedLM(config).eval()
    tokenizer.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    word2ph = [3, 4, 2, 2, 2]
    got = get_bert_feature("你好!", word2ph, "ZH", tmp_path)
    with torch.no_grad():
        hidden = model(**tokenizer("你好!", return_tensors="pt"), output_hidden_states=True).hidden_states[-3][0]
    assert got.shape == (16, sum(word2ph))
    torch.testing.assert_close(got[:, :3], hidden[0:1].T.expand(16, 3))
    torch.testing.assert_close(got[:, 3:7], hidden[1:2].T.expand(16, 4))
    torch.testing.assert_close(got[:, -2:], hidden[4:5].T.expand(16, 2))


# --- inference inputs -------------------------------------------------------------------------------------------------


@needs_frontend
@pytest.mark.slow
def test_get_text_zh_matches_upstream_sequence_and_bert(cases, tiny_dirs):
    from bert_vits2.text.inputs import get_text

    seq = cases["seq_zh_0"]
    hps = {"data": {"add_blank": True}}
    out = get_text(seq["inputs"]["text"], "ZH", hps, bert_dirs=tiny_dirs)
    assert torch.equal(out.phone_ids, seq["outputs"]["x"])
    assert torch.equal(out.tone_ids, seq["outputs"]["tone"])
    assert torch.equal(out.language_ids, seq["outputs"]["language"])
    assert out.word2ph == seq["outputs"]["word2ph_blank"]
    assert len(out.phones) == len(out.phone_ids) and out.phones[1::2] == seq["outputs"]["phones"]
    assert out.bert.shape == (64, len(out.phone_ids))
    want = get_bert_feature(seq["outputs"]["norm_text"], seq["outputs"]["word2ph_blank"], "ZH", tiny_dirs["ZH"])
    torch.testing.assert_close(out.bert, want)

    bert_case = cases["bert_zh_0"]
    out = get_text(bert_case["inputs"]["text"], "ZH", hps, bert_dirs=tiny_dirs)
    torch.testing.assert_close(out.bert, bert_case["outputs"]["phone_level_feature"], rtol=1e-4, atol=1e-4)


@needs_frontend
def test_get_text_fillers_randn_in_upstream_order_or_zeros(tiny_dirs):
    from bert_vits2.text.inputs import get_text

    hps = {"data": {"add_blank": True}}
    torch.manual_seed(123)
    out = get_text("Hello world, this is a test.", "EN", hps, bert_dirs=tiny_dirs)
    n = len(out.phone_ids)
    torch.manual_seed(123)
    first, second = torch.randn(64, n), torch.randn(64, n)
    torch.testing.assert_close(out.bert, first)
    torch.testing.assert_close(out.ja_bert, second)
    assert out.en_bert.shape == (64, n) and not torch.allclose(out.en_bert, first)
    assert set(out.language_ids[1::2].tolist()) == {2} and set(out.language_ids[0::2].tolist()) == {0}

    zeros = get_text("Hello world, this is a test.", "EN", hps, bert_dirs=tiny_dirs, filler="zeros", filler_dim=1024)
    assert zeros.bert.shape == (1024, n) and not zeros.bert.any() and not zeros.ja_bert.any()
    torch.testing.assert_close(zeros.en_bert, out.en_bert)


@needs_frontend
def test_get_text_without_blanks(tiny_dirs):
    from bert_vits2.text.inputs import get_text

    out = get_text("我很好。", "ZH", {"data": {"add_blank": False}}, bert_dirs=tiny_dirs)
    assert len(out.phone_ids) == len(out.phones) == sum(out.word2ph) == out.bert.shape[1]
    assert "_" not in out.phones[1:-1]


@needs_frontend
@pytest.mark.parametrize("name,channel", [("bert_ja_0", "ja_bert"), ("bert_en_0", "en_bert"), ("bert_zh_3", "bert")])
def test_get_text_end_to_end_matches_upstream_bert(name, channel, cases, tiny_dirs):
    """Raw text -> frontend (fixture tokenizers) -> BERT gives upstream's phone-level feature."""
    from bert_vits2.text.inputs import get_text

    case = cases[name]
    language = case["inputs"].get("language", "ZH")
    out = get_text(case["inputs"]["text"], language, {"data": {"add_blank": True}}, bert_dirs=tiny_dirs)
    assert out.word2ph == case["inputs"]["word2ph"]
    torch.testing.assert_close(getattr(out, channel), case["outputs"]["phone_level_feature"], rtol=1e-4, atol=1e-4)
