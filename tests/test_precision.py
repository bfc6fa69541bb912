"""Inference precisions / fast paths (issue 16): fp32 fast path == upstream fixtures, bf16 keeps durations + SNR.

Tiny models only (the reference G_ref.pth and small random decoders); full-size speed lives in
benchmarks/bench_synthesis.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from model_helpers import random_decoder

from bert_vits2 import inference
from bert_vits2.inference import (
    FastGenerator,
    load_model_for_inference,
    optimize_for_inference,
    resolve_precision,
)
from bert_vits2.models import Generator

_INFER_INPUTS = ("x", "x_lengths", "sid", "tone", "language", "bert", "ja_bert", "en_bert")
#: acceptance bound of issue 16 for bf16 audio against fp32 (measured values are reported by the benchmark)
BF16_MIN_SNR_DB = 30.0


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def cases(bv2_ref):
    return {k: v for k, v in torch.load(bv2_ref / "cases.pt", weights_only=True).items() if k.startswith("infer_")}


def _snr_db(ref: torch.Tensor, x: torch.Tensor) -> float:
    noise = (ref.double() - x.double()).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(ref.double().pow(2).sum().item() / noise)


def _run(model, case):
    args = [case["inputs"][k] for k in _INFER_INPUTS]
    if "seed" in case:
        torch.manual_seed(case["seed"])
    with torch.inference_mode():
        o, attn, y_mask, (z, *_rest) = model.infer(*args, **case["kwargs"])
    return o, attn, y_mask, z


def _check_exact(case, name, o, attn, y_mask):
    exp = case["outputs"]
    assert torch.equal(attn, exp["attn"]), f"{name}: alignment differs"
    assert torch.equal(y_mask, exp["y_mask"]), f"{name}: frame mask differs"
    assert o.dtype == torch.float32 and o.shape == exp["o"].shape
    torch.testing.assert_close(o, exp["o"], rtol=1e-4, atol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
@pytest.mark.slow
def test_fp32_matches_upstream_fixtures(bv2_ref, cases, fast):
    model, _ = load_model_for_inference(bv2_ref / "config.json", bv2_ref / "G_ref.pth", precision="fp32", fast=fast)
    assert model.precision == "fp32"
    assert isinstance(model.dec, FastGenerator) is fast
    for name, case in cases.items():
        o, attn, y_mask, _ = _run(model, case)
        _check_exact(case, name, o, attn, y_mask)


@pytest.mark.slow
def test_bf16_keeps_durations_and_snr(bv2_ref, cases):
    fp32, _ = load_model_for_inference(bv2_ref / "config.json", bv2_ref / "G_ref.pth", precision="fp32")
    bf16, _ = load_model_for_inference(bv2_ref / "config.json", bv2_ref / "G_ref.pth", precision="bf16")
    assert bf16.precision == "bf16" and bf16.dec.dtype == torch.bfloat16
    assert bf16.flow.autocast_dtype == torch.bfloat16
    for name, case in cases.items():
        o32, attn32, ymask32, z32 = _run(fp32, case)
        o16, attn16, ymask16, z16 = _run(bf16, case)
        assert torch.equal(attn16, attn32) and torch.equal(attn16, case["outputs"]["attn"]), f"{name}: durations moved"
        assert torch.equal(ymask16, ymask32)
        assert o16.dtype == torch.float32 and z16.dtype == torch.float32
        assert not torch.equal(o16, o32), f"{name}: bf16 path produced the fp32 audio bit for bit (not running bf16?)"
        snr = _snr_db(o32, o16)
        assert snr >= BF16_MIN_SNR_DB, f"{name}: bf16 audio SNR {snr:.1f} dB < {BF16_MIN_SNR_DB} dB"
        assert _snr_db(z32, z16) >= BF16_MIN_SNR_DB


def test_bf16_plain_debug_path(bv2_ref, cases):
    model, _ = load_model_for_inference(bv2_ref / "config.json", bv2_ref / "G_ref.pth", precision="bf16", fast=False)
    case = cases["infer_b"]
    o, attn, _, _ = _run(model, case)
    assert torch.equal(attn, case["outputs"]["attn"])
    assert _snr_db(case["outputs"]["o"], o) >= BF16_MIN_SNR_DB


@pytest.mark.parametrize("resblock,ups,kernels", [("1", [4, 2, 2], [8, 4, 2]), ("2", [3, 2], [3, 2])])
def test_fast_generator_equals_plain(resblock, ups, kernels):
    """Both resblock kinds, overlapping and kernel == stride (matmul) upsampling, with and without g."""
    dec = random_decoder(resblock, ups, kernels)
    fast = FastGenerator(dec)
    x, g = torch.randn(2, 8, 13), torch.randn(2, 6, 1)
    with torch.inference_mode():
        for gg in (g, None):
            ref = dec(x, g=gg)
            got = fast(x, g=gg)
            assert got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        # the comparison can fail: a perturbed fast decoder must not pass
        fast.conv_post_w.mul_(1.01)
        assert not torch.allclose(fast(x, g=g), dec(x, g=g), rtol=1e-5, atol=1e-5)


def test_fast_generator_refuses_weight_norm():
    torch.manual_seed(0)
    dec = Generator(8, "1", [3], [[1, 3, 5]], [2], 16, [4]).eval()
    with pytest.raises(ValueError, match="weight norm"):
        FastGenerator(dec)


def test_resolve_precision(monkeypatch):
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("BF16") == "bf16"
    monkeypatch.setattr(inference, "_cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(inference, "_cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


def test_auto_measures_both_decoders_and_keeps_the_faster(bv2_ref, monkeypatch):
    """``auto`` on a CPU with native bf16 times both decoders (real runs) and keeps bf16 only when it is clearly
    faster; without native bf16 it measures nothing and is fp32 (fp32 outputs exact to upstream)."""
    measured = inference.measure_decoder_precisions(random_decoder("1", [4, 2], [8, 4]), "cpu")
    assert set(measured) == {"fp32", "bf16"} and all(0 < t < 30 for t in measured.values())

    monkeypatch.setattr(inference, "_cpu_has_native_bf16", lambda: False)
    model, _ = load_model_for_inference(bv2_ref / "config.json", bv2_ref / "G_ref.pth", precision="auto")
    assert model.precision == "fp32" and model.precision_timing is None

    monkeypatch.setattr(inference, "_cpu_has_native_bf16", lambda: True)
    for fp32_s, bf16_s, chosen in ((1.0, 0.5, "bf16"), (1.0, 0.95, "fp32"), (1.0, 2.0, "fp32")):
        monkeypatch.setattr(inference, "measure_decoder_precisions",
                            lambda dec, device, a=fp32_s, b=bf16_s: {"fp32": a, "bf16": b})
        model, _ = load_model_for_inference(bv2_ref / "config.json", bv2_ref / "G_ref.pth", precision="auto")
        assert model.precision == chosen and model.precision_timing == {"fp32": fp32_s, "bf16": bf16_s}
        assert isinstance(model.dec, FastGenerator)
        assert model.dec.dtype == (torch.bfloat16 if chosen == "bf16" else torch.float32)
        assert model.bucketed == (chosen == "bf16")
    # asked for by name, nothing is measured
    model, _ = load_model_for_inference(bv2_ref / "config.json", bv2_ref / "G_ref.pth", precision="fp32")
    assert model.precision == "fp32" and model.precision_timing is None


def test_the_apps_default_to_auto_and_the_library_to_fp32():
    """Issue 27: webui.py and server_fastapi.py serve at ``auto``; load_model_for_inference and Voice.load stay exact."""
    import inspect

    import server_fastapi
    import webui
    from bert_vits2.synthesis import Voice
    from motion.server.config import ServerConfig
    from motion.webui.app import WebUIConfig

    assert webui.build_parser().parse_args(["-m", "x"]).precision == "auto"
    server_args = server_fastapi.build_parser().parse_args([])
    assert server_args.precision == "auto" and server_fastapi.config_from_args(server_args).precision == "auto"
    assert ServerConfig().precision == "auto" and WebUIConfig().precision == "auto"
    for fn in (load_model_for_inference, Voice.load):
        assert inspect.signature(fn).parameters["precision"].default == "fp32"


def test_the_apps_pass_the_bert_precision_on():
    """``--bert-precision int8`` (the first-audio option) reaches the server's and the web UI's configs; by default the
    BERT follows the generator."""
    import server_fastapi
    import webui

    server_args = server_fastapi.build_parser().parse_args(["--bert-precision", "int8"])
    assert server_fastapi.config_from_args(server_args).bert_precision == "int8"
    assert server_fastapi.config_from_args(server_fastapi.build_parser().parse_args([])).bert_precision == "auto"
    assert webui.build_parser().parse_args(["-m", "x", "--bert-precision", "int8"]).bert_precision == "int8"
    with pytest.raises(SystemExit):
        server_fastapi.build_parser().parse_args(["--bert-precision", "int4"])


def test_bad_precision_fails_before_loading(bv2_ref, tmp_path):
    with pytest.raises(ValueError, match="precision"):
        load_model_for_inference(bv2_ref / "config.json", tmp_path / "missing.pth", precision="int4")


def test_optimize_twice_is_refused(bv2_ref):
    model, _ = load_model_for_inference(bv2_ref / "config.json", bv2_ref / "G_ref.pth")
    with pytest.raises(ValueError, match="already"):
        optimize_for_inference(model)


@pytest.mark.slow
def test_voice_load_passes_precision(bv2_ref, tmp_path, monkeypatch):
    from webui_helpers import make_tiny_voice

    monkeypatch.setattr(inference, "DEFAULT_WARMUP_S", 0.0)  # the bf16 warm-up is tested in test_speed_paths

    from bert_vits2.synthesis import Voice, find_model_files

    folder = make_tiny_voice(bv2_ref, tmp_path / "voice")
    voice = Voice.load(find_model_files(folder), precision="bf16")
    assert voice.model.precision == "bf16"
    plain = Voice.load(find_model_files(folder))
    assert plain.model.precision == "fp32"
    a = voice.synthesize("你好。", language="ZH", seed=3, noise_scale=0.0, noise_scale_w=0.0)
    b = plain.synthesize("你好。", language="ZH", seed=3, noise_scale=0.0, noise_scale_w=0.0)
    assert a.phones == b.phones and (a.durations == b.durations).all()
    assert _snr_db(torch.from_numpy(b.audio), torch.from_numpy(a.audio)) >= BF16_MIN_SNR_DB


# ---------------------------------------------------------------------------------------------- BERT options


@pytest.fixture()
def tiny_zh_bert(bv2_ref):
    from bert_vits2.text.bert import clear_bert_cache

    clear_bert_cache()
    yield bv2_ref / "bert_tiny_zh"
    clear_bert_cache()


def _w2p(text: str) -> list[int]:
    return [1] + [2] * len(text) + [1]  # one token per character (char-level tiny tokenizer) + [CLS]/[SEP]


@pytest.mark.parametrize("precision,min_snr", [("bf16", 35.0), ("int8", 25.0)])
def test_bert_precisions_feature_error(tiny_zh_bert, precision, min_snr):
    """bf16/int8 features are close to fp32 but not identical (the option is really applied)."""
    from bert_vits2.text.bert import get_bert_feature, load_bert

    text = "你好我们"
    ref = get_bert_feature(text, _w2p(text), "ZH", tiny_zh_bert)
    got = get_bert_feature(text, _w2p(text), "ZH", tiny_zh_bert, precision=precision)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    assert not torch.equal(got, ref)
    assert _snr_db(ref, got) >= min_snr
    _, model = load_bert(tiny_zh_bert, "ZH", precision=precision)
    assert load_bert(tiny_zh_bert, "ZH", precision=precision)[1] is model  # resident, loaded once
    assert load_bert(tiny_zh_bert, "ZH")[1] is not model


def test_bert_bad_precision(tiny_zh_bert):
    from bert_vits2.text.bert import get_bert_feature

    with pytest.raises(ValueError, match="precision"):
        get_bert_feature("你好", _w2p("你好"), "ZH", tiny_zh_bert, precision="fp8")


def test_bert_batch_equals_single(tiny_zh_bert):
    from bert_vits2.text.bert import BertFeatureError, get_bert_feature, get_bert_features

    texts = ["你好", "我们是朋友", "好"]
    batch = get_bert_features([(t, _w2p(t)) for t in texts], "ZH", tiny_zh_bert)
    assert len(batch) == 3
    for t, feat in zip(texts, batch):
        single = get_bert_feature(t, _w2p(t), "ZH", tiny_zh_bert)
        assert feat.shape == single.shape
        torch.testing.assert_close(feat, single, rtol=1e-4, atol=1e-4)
    with pytest.raises(BertFeatureError, match="word2ph"):
        get_bert_features([("你好", [1, 2, 1])], "ZH", tiny_zh_bert)
    assert get_bert_features([], "ZH", tiny_zh_bert) == []


@pytest.mark.parametrize("resblock,ups,kernels", [("1", [4, 2, 2], [8, 4, 2]), ("2", [3, 2], [3, 2])])
def test_fast_generator_reports_plain_state_dict(resblock, ups, kernels):
    dec = random_decoder(resblock, ups, kernels)
    expected = dec.state_dict()
    got = FastGenerator(dec).state_dict()
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    bf16 = FastGenerator(dec, torch.bfloat16).state_dict()
    assert sorted(bf16) == sorted(expected) and all(v.dtype == torch.float32 for v in bf16.values())
    assert not torch.equal(bf16["conv_pre.weight"], expected["conv_pre.weight"])  # really bf16-rounded
    torch.testing.assert_close(bf16["conv_pre.weight"], expected["conv_pre.weight"], rtol=1e-2, atol=1e-3)
