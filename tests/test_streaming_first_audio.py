"""First audio sooner (issue 27): a streamed chunk decoded with its context cropped stage by stage equals the
whole decode; a stream runs no decoder work before its chunks; a bf16 voice runs its BERT in bf16; an int8 BERT on
request."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bert_vits2.inference import FastGenerator, remove_weight_norm_
from bert_vits2.models import Generator
from bert_vits2.streaming import chunk_spans, decode_chunk
from bert_vits2.synthesis import Voice, find_model_files

V23_DEC = dict(initial_channel=192, resblock="1", resblock_kernel_sizes=[3, 7, 11],
               resblock_dilation_sizes=[[1, 3, 5]] * 3, upsample_rates=[8, 8, 2, 2, 2],
               upsample_initial_channel=32, upsample_kernel_sizes=[16, 16, 8, 2, 2], gin_channels=8)


@pytest.fixture(scope="module")
def fast_dec() -> FastGenerator:
    """The v2.3 decoder's shape (kernels, rates, dilations: its receptive field) with narrow channels (fast)."""
    torch.manual_seed(0)
    dec = remove_weight_norm_(Generator(**V23_DEC).eval())
    with torch.no_grad():
        for p in dec.parameters():
            p.mul_(1.8)  # larger weights than the init: context that is cut off would show
    fast = FastGenerator(dec)
    with torch.no_grad():  # the first decode of a fresh process came out 3.9e-5 off the later ones (at one sample,
        fast(torch.randn(1, 192, 70), g=torch.randn(1, 8, 1))  # in 3 of 12 processes): the tests compare later ones
    return fast


@pytest.mark.parametrize("bucketed", [True, False])
def test_decode_span_equals_the_whole_decode(fast_dec, bucketed):
    fast_dec.bucketed = bucketed
    try:
        z, g = torch.randn(1, 192, 70), torch.randn(1, 8, 1)
        with torch.no_grad():
            whole = fast_dec(z, g=g)[0, 0].numpy()
            hop = fast_dec.hop
            for a, b in [(0, 16), (16, 48), (48, 70), (0, 70), (30, 31), (69, 70), (0, 1)]:
                got = fast_dec.decode_span(z, g, a, b)[0].numpy()
                assert got.shape == ((b - a) * hop,)
                np.testing.assert_allclose(got, whole[a * hop:b * hop], atol=2e-5, rtol=0)
    finally:
        fast_dec.bucketed = True


def test_decode_span_crops_the_later_stages(fast_dec):
    """The later stages see the span plus a frame or two, not the whole context window (that is the speed-up)."""
    seen = []
    real = fast_dec._conv

    def spy(x, name, *args, **kwargs):
        seen.append((name, x.shape[-1]))
        return real(x, name, *args, **kwargs)

    fast_dec._conv = spy
    try:
        with torch.no_grad():
            fast_dec.decode_span(torch.randn(1, 192, 52), None, 18, 34)
    finally:
        del fast_dec._conv
    post = [n for name, n in seen if name == "conv_post"][0]
    assert post < 16 * fast_dec.hop * 1.2  # the whole 52-frame window would be 52 * hop samples


def test_decode_chunk_uses_the_span_and_equals_the_window_decode(fast_dec):
    z, g = torch.randn(1, 192, 90), torch.randn(1, 8, 1)
    ctx = fast_dec.context
    with torch.no_grad():
        whole = fast_dec(z, g=g)[0, 0].numpy()
    for a, b in chunk_spans(90, 16, 64):
        got = decode_chunk(fast_dec, z, g, a, b, fast_dec.hop, ctx)
        np.testing.assert_allclose(got, whole[a * fast_dec.hop:b * fast_dec.hop], atol=2e-5, rtol=0)


def test_empty_latent_decodes_to_nothing(fast_dec):
    assert fast_dec(torch.randn(1, 192, 0)).shape == (1, 1, 0)


@pytest.fixture(scope="module")
def tiny_folder(bv2_ref, tmp_path_factory):
    from webui_helpers import make_tiny_voice

    return make_tiny_voice(bv2_ref, tmp_path_factory.mktemp("voice"))


def test_stream_runs_the_decoder_only_for_its_chunks(tiny_folder):
    """The generator call of a streamed piece stops at z (0 decoder frames): every decoder call is a chunk's."""
    voice = Voice.load(find_model_files(tiny_folder))
    assert isinstance(voice.model.dec, FastGenerator)
    frames = []
    handle = voice.model.dec.register_forward_pre_hook(lambda m, args: frames.append(args[0].shape[-1]))
    try:
        chunks = list(voice.stream("你好。", "", "ZH", seed=1))
    finally:
        handle.remove()
    assert 0 in frames  # the piece's generator call: no samples decoded
    assert all(c.timings.get("decode_s", 0) >= 0 for c in chunks)
    res = voice.synthesize("你好。", "", "ZH", seed=1)
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), res.audio, atol=1e-4)


@pytest.fixture
def bert_loads(monkeypatch):
    """``(seen, real)``: the precisions ``load_bert`` is called with, in order (a spy on it), and the real loader."""
    from bert_vits2.text import bert as bert_mod

    seen: list[str] = []
    real = bert_mod.load_bert

    def spy(folder, language, device="cpu", precision="fp32"):
        seen.append(precision)
        return real(folder, language, device, precision)

    monkeypatch.setattr(bert_mod, "load_bert", spy)
    return seen, real


def test_bert_follows_the_generator_precision(tiny_folder, monkeypatch, bert_loads):
    seen, real = bert_loads
    monkeypatch.setattr("bert_vits2.inference.DEFAULT_WARMUP_S", 0.0)  # the bf16 warm-up is tested in test_speed_paths
    fp32 = Voice.load(find_model_files(tiny_folder))
    bf16 = Voice.load(find_model_files(tiny_folder), precision="bf16")
    assert (fp32.bert_precision, bf16.bert_precision) == ("fp32", "bf16")
    fp32.synthesize("你好。", "", "ZH", seed=1)
    bf16.synthesize("你好。", "", "ZH", seed=1)
    assert seen == ["fp32", "bf16"]
    zh = fp32.files.bert_dirs["ZH"]
    assert next(real(zh, "ZH", "cpu", "bf16")[1].parameters()).dtype == torch.bfloat16
    assert next(real(zh, "ZH", "cpu", "fp32")[1].parameters()).dtype == torch.float32


def test_an_int8_bert_is_chosen_by_name_and_stream_and_synthesize_still_agree(tiny_folder, bert_loads):
    """``bert_precision="int8"`` (the first-audio option): the voice loads its BERT quantised and its stream equals
    its own ``synthesize``. (The tiny BERT's feature is its embeddings, hidden layer -3 of 2, so the audio cannot show
    the quantisation here; test_precision measures an int8 BERT's feature error.)"""
    seen, real = bert_loads
    fp32 = Voice.load(find_model_files(tiny_folder))
    int8 = Voice.load(find_model_files(tiny_folder), bert_precision="int8")
    assert int8.bert_precision == "int8" and int8.model.precision == "fp32"
    text = "今天天气很好，我们走。"
    a = fp32.synthesize(text, "", "ZH", seed=1)
    b = int8.synthesize(text, "", "ZH", seed=1)
    assert seen == ["fp32", "int8"]
    zh = int8.files.bert_dirs["ZH"]
    assert any("quantized" in type(m).__module__ for m in real(zh, "ZH", "cpu", "int8")[1].modules())
    assert b.audio.shape == a.audio.shape
    chunks = list(int8.stream(text, "", "ZH", seed=1))
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), b.audio, atol=1e-4)


@pytest.mark.parametrize("asked, generator, device, want", [
    (None, "fp32", "cpu", "fp32"), ("auto", "bf16", "cpu", "bf16"), ("AUTO", "fp32", "cuda", "fp32"),
    ("int8", "fp32", "cpu", "int8"), ("fp32", "bf16", "cpu", "fp32"), ("bf16", "fp32", "cuda", "bf16")])
def test_resolve_bert_precision(asked, generator, device, want):
    from bert_vits2.text.bert import resolve_bert_precision

    assert resolve_bert_precision(asked, generator, device) == want


@pytest.mark.parametrize("asked, device, words", [("int4", "cpu", "auto or one of fp32, bf16, int8"),
                                                  ("int8", "cuda", "CPU only")])
def test_resolve_bert_precision_refuses_with_the_choices(asked, device, words):
    from bert_vits2.text.bert import resolve_bert_precision

    with pytest.raises(ValueError, match=words):
        resolve_bert_precision(asked, "fp32", device)

def test_packed_ffn_equals_the_plain_ffn():
    """The fast path's FFN (flow, text encoder): oneDNN convolutions on the module's own weights (views, no copy)."""
    import copy

    from bert_vits2 import attentions, inference

    torch.manual_seed(0)
    plain = torch.nn.ModuleList([attentions.FFN(16, 16, 48, 5), attentions.FFN(16, 16, 48, 3)]).eval()
    fast = copy.deepcopy(plain)
    if inference._FUSED_CONV is None:
        pytest.skip("this torch has no oneDNN")
    assert inference._pack_ffns(fast) == 2
    x, mask = torch.randn(1, 16, 37), torch.ones(1, 1, 37)
    mask[..., 30:] = 0
    with torch.no_grad():
        for p, f in zip(plain, fast):
            assert f.conv_1.weight.data_ptr() == f._packed[0][0].data_ptr()
            torch.testing.assert_close(f(x, mask), p(x, mask), atol=1e-5, rtol=1e-5)
        fast[0].conv_1.weight.mul_(2)  # weights changed later (a load): both paths see them
        plain[0].conv_1.weight.mul_(2)
        torch.testing.assert_close(fast[0](x, mask), plain[0](x, mask), atol=1e-5, rtol=1e-5)
    assert fast[0].state_dict().keys() == plain[0].state_dict().keys()


@pytest.mark.parametrize("length", [1, 2, 4, 5, 6, 9, 37])
def test_banded_attention_equals_the_plain_attention(length):
    """The fast path's relative attention (flow, text encoder): the band's logits and weights on the score matrix's
    diagonals, q/k/v in one product; lengths shorter than, equal to and longer than the window (4), with padding."""
    import copy

    from bert_vits2 import attentions, inference

    torch.manual_seed(length)
    plain = attentions.Encoder(16, 48, 2, 3, 3, window_size=4, isflow=True, gin_channels=8).eval()
    fast = copy.deepcopy(plain)
    assert inference._band_attentions(fast) == 3
    x, g = torch.randn(1, 16, length), torch.randn(1, 8, 1)
    for mask in (torch.ones(1, 1, length), torch.arange(length).view(1, 1, -1).lt(max(1, length - 2)).float()):
        with torch.no_grad():
            torch.testing.assert_close(fast(x, mask, g=g), plain(x, mask, g=g), atol=1e-6, rtol=1e-5)
    attn = fast.attn_layers[0]
    assert attn.conv_k.weight.data_ptr() == attn._qkv[0][16:].data_ptr()  # a view of the fused q/k/v, no copy
    with torch.no_grad():
        attn.conv_k.weight.mul_(2)  # weights changed later (a load): both paths see them
        plain.attn_layers[0].conv_k.weight.mul_(2)
        torch.testing.assert_close(fast(x, mask, g=g), plain(x, mask, g=g), atol=1e-6, rtol=1e-5)
    assert fast.state_dict().keys() == plain.state_dict().keys()
