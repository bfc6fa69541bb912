"""The BERT feature stops at the layer it needs (issue 27): ``hidden_states[-3]`` exactly, the last two layers and the
masked-LM head never run; and a voice's BERT follows the generator's precision."""

from __future__ import annotations

import pytest
import torch

from bert_vits2.text import bert as bert_mod
from bert_vits2.text.bert import clear_bert_cache, get_bert_feature, get_bert_features

transformers = pytest.importorskip("transformers")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "你", "好", "!", "我", "很"]


def _save_model(folder, kind: str, layers: int):
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizer(str(folder / "vocab.txt"))
    torch.manual_seed(0)
    if kind == "bert":
        config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=layers,
                                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
        model = transformers.BertForMaskedLM(config).eval()
    else:
        config = transformers.DebertaV2Config(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=layers,
                                              num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                                              relative_attention=True, position_buckets=8, pos_att_type=["p2c", "c2p"])
        model = transformers.DebertaV2ForMaskedLM(config).eval()
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return tokenizer, model


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_bert_cache()
    yield
    clear_bert_cache()


@pytest.mark.parametrize("kind", ["bert", "deberta"])
def test_feature_equals_hidden_states_minus_3_without_the_last_layers(tmp_path, kind, monkeypatch):
    monkeypatch.setenv("BV2_BERT_PACKED", "0")  # torch's own Linear: bit-exact
    tokenizer, model = _save_model(tmp_path, kind, layers=5)
    text, word2ph = "你好!", [1, 1, 1, 1, 1]
    with torch.no_grad():
        want = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True).hidden_states[-3][0]
    loaded = bert_mod.load_bert(tmp_path, "ZH")[1]
    ran = []
    hooks = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
             for i, layer in enumerate(bert_mod._encoder_layers(loaded))]
    try:
        got = get_bert_feature(text, word2ph, "ZH", tmp_path)
    finally:
        for h in hooks:
            h.remove()
    assert ran == [0, 1, 2]  # layers 3 and 4 (and the MLM head after them) never ran
    assert torch.equal(got, want.T)  # the same ops: bit-exact
    # the model is left as it was: a later full forward still runs every layer and returns all hidden states
    with torch.no_grad():
        again = loaded(**tokenizer(text, return_tensors="pt"), output_hidden_states=True).hidden_states
    assert len(again) == 6 and torch.equal(again[-3][0], want)


def test_batched_features_use_the_same_cut(tmp_path):
    tokenizer, model = _save_model(tmp_path, "bert", layers=4)
    texts = ["你好!", "我很好!"]
    feats = get_bert_features([(t, [1] * (len(t) + 2)) for t in texts], "ZH", tmp_path)
    for t, f in zip(texts, feats):
        with torch.no_grad():
            want = model(**tokenizer(t, return_tensors="pt"), output_hidden_states=True).hidden_states[-3][0]
        torch.testing.assert_close(f, want.T, atol=1e-5, rtol=1e-4)


def test_two_layer_bert_still_uses_the_embeddings(tmp_path):
    """Under 3 layers hidden_states[-3] is the embeddings: the whole model runs as before."""
    tokenizer, model = _save_model(tmp_path, "bert", layers=2)
    with torch.no_grad():
        want = model(**tokenizer("你好", return_tensors="pt"), output_hidden_states=True).hidden_states[-3][0]
    assert torch.equal(get_bert_feature("你好", [1, 1, 1, 1], "ZH", tmp_path), want.T)


@pytest.mark.parametrize("kind", ["bert", "deberta"])
def test_packed_linears_agree_with_torch_linear(tmp_path, kind, monkeypatch):
    """fp32 on the CPU: the encoder's Linears are oneDNN-packed once at load (same values within float rounding);
    BV2_BERT_PACKED=0 keeps torch's Linear."""
    if bert_mod._PACK is None:
        pytest.skip("this torch has no oneDNN")
    tokenizer, model = _save_model(tmp_path, kind, layers=4)
    texts = ["你好!", "我很好!"]
    packed = [get_bert_feature(t, [1] * (len(t) + 2), "ZH", tmp_path) for t in texts]
    loaded = bert_mod.load_bert(tmp_path, "ZH")[1]
    kinds = {type(m).__name__ for m in bert_mod._encoder_layers(loaded).modules()}
    assert "_PackedLinear" in kinds and "Linear" not in kinds
    batched = get_bert_features([(t, [1] * (len(t) + 2)) for t in texts], "ZH", tmp_path)
    clear_bert_cache()
    monkeypatch.setenv("BV2_BERT_PACKED", "0")
    plain = [get_bert_feature(t, [1] * (len(t) + 2), "ZH", tmp_path) for t in texts]
    kinds = {type(m).__name__ for m in bert_mod._encoder_layers(bert_mod.load_bert(tmp_path, "ZH")[1]).modules()}
    assert "_PackedLinear" not in kinds
    for p, b, q in zip(packed, batched, plain):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b, q, atol=1e-5, rtol=1e-4)


def test_bf16_bert_is_not_packed(tmp_path):
    _save_model(tmp_path, "bert", layers=4)
    model = bert_mod.load_bert(tmp_path, "ZH", precision="bf16")[1]
    assert not any(type(m).__name__ == "_PackedLinear" for m in model.modules())
    assert get_bert_feature("你好", [1, 1, 1, 1], "ZH", tmp_path, precision="bf16").dtype == torch.float32
