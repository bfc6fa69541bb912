"""Speed that holds on varied lengths (issue 26): the bucketed / windowed fast path equals the plain path.

The fast path pads batch-1 inputs to a few lengths (bert_vits2.inference.bucket_length, the padding masked) and
decodes long latents in windows with context, so oneDNN reuses its primitives. These tests check, on odd lengths
that are not buckets, that this changes nothing beyond float rounding: fp32 within 1e-4 of the plain (upstream)
path with identical durations, bf16 with the fp32 durations and >= 30 dB SNR. Tiny models only (fast).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from model_helpers import random_decoder

from bert_vits2.inference import (
    MAX_DECODE_FRAMES,
    FastGenerator,
    bucket_length,
    decode_windows,
    load_model_for_inference,
    warm_up,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FP32_TOL = 1e-4  # issue 26: fp32 exact to the plain path within 1e-4 max abs
BF16_MIN_SNR_DB = 30.0
ODD_PHONES = (5, 11, 29, 47, 61)  # none is a bucket length


def _snr_db(ref: torch.Tensor, x: torch.Tensor) -> float:
    noise = (ref.double() - x.double()).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(ref.double().pow(2).sum().item() / noise)


def test_bucket_lengths_are_few_and_tight():
    lengths = range(1, MAX_DECODE_FRAMES + 1)
    buckets = {bucket_length(n) for n in lengths}
    for n in lengths:
        b = bucket_length(n)
        assert n <= b <= max(8, math.ceil(n * 1.125)) + 7, (n, b)  # at most 1/8 padding (steps of 8 below 64)
        assert bucket_length(b) == b
    assert len(buckets) <= 40 and max(buckets) == MAX_DECODE_FRAMES
    assert [bucket_length(n) for n in (1, 9, 64, 65, 129, 300)] == [8, 16, 64, 72, 144, 320]


@pytest.mark.parametrize("n", [1, 100, 512, 513, 1000, 1777])
def test_decode_windows_cover_with_context(n):
    ctx = 18
    windows = decode_windows(n, ctx)
    assert windows[0][2] == 0 and windows[-1][3] == n
    for (lo, hi, a, b), nxt in zip(windows, windows[1:] + [None]):
        assert hi - lo <= MAX_DECODE_FRAMES and lo <= a < b <= hi
        assert a - lo >= ctx or lo == 0  # every kept frame has full context or is at the true edge
        assert hi - b >= ctx or hi == n
        if nxt is not None:
            assert nxt[2] == b  # kept spans tile [0, n) without gaps or overlaps
    with pytest.raises(ValueError, match="context"):
        decode_windows(1000, 300)


@pytest.mark.parametrize("resblock,ups,kernels", [("1", [4, 2, 2], [8, 4, 2]), ("2", [3, 2], [3, 2])])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_bucketed_decoder_equals_plain_on_odd_lengths(resblock, ups, kernels, dtype):
    """Padded to a bucket (masked) and cut into windows of 50 frames: the plain decoder's samples."""
    dec = random_decoder(resblock, ups, kernels)
    fast = FastGenerator(dec, dtype, max_frames=50)
    assert fast.bucketed and 2 * fast.context < 50
    g = torch.randn(1, 6, 1)
    with torch.inference_mode():
        for t in (1, 7, 13, 37, 101, 203):
            x = torch.randn(1, 8, t)
            ref = dec(x, g=g)
            got = fast(x, g=g)
            assert got.shape == ref.shape and got.dtype == torch.float32
            if dtype == torch.float32:
                assert (got - ref).abs().max().item() <= FP32_TOL, t
            else:
                assert _snr_db(ref, got) >= BF16_MIN_SNR_DB, t


def test_bucketed_decoder_test_can_fail(monkeypatch):
    """Without the mask the padded frames leak into the real samples: the bound above would catch it."""
    dec = random_decoder("1", [4, 2, 2], [8, 4, 2])
    fast = FastGenerator(dec)
    monkeypatch.setattr(FastGenerator, "_mask", staticmethod(lambda x, valid: x))
    x, g = torch.randn(1, 8, 13), torch.randn(1, 6, 1)
    with torch.inference_mode():
        assert (fast(x, g=g) - dec(x, g=g)).abs().max().item() > 100 * FP32_TOL


@pytest.fixture(scope="module")
def odd_inputs(bv2_ref):
    case = torch.load(bv2_ref / "cases.pt", weights_only=True)["infer_c"]["inputs"]  # 63 phones
    out = []
    for n in ODD_PHONES:
        x, tone, language = (case[k][:, :n] for k in ("x", "tone", "language"))
        berts = [case[k][:, :, :n] for k in ("bert", "ja_bert", "en_bert")]
        out.append((x, torch.LongTensor([n]), case["sid"], tone, language, *berts))
    return out


def _infer(model, inputs, max_frames=None):
    if max_frames is not None:
        model.dec.max_frames = max_frames
    with torch.inference_mode():
        o, attn, _y_mask, (z, *_rest) = model.infer(*inputs, noise_scale=0.667, noise_scale_w=0.8, sdp_ratio=0.5,
                                                     generator=torch.Generator().manual_seed(7))
    return o, attn, z


@pytest.mark.slow
def test_bucketed_synthesizer_equals_plain_on_odd_lengths(bv2_ref, odd_inputs):
    """Whole generator (text encoder, both duration predictors with seeded noise, flow, decoder in windows of 60
    frames with the v2.3 decoder's layout): fp32 equals the plain path; bf16 keeps the durations."""
    cfg, ckpt = bv2_ref / "config.json", bv2_ref / "G_ref.pth"
    plain, _ = load_model_for_inference(cfg, ckpt, precision="fp32", fast=False)
    fast, _ = load_model_for_inference(cfg, ckpt, precision="fp32", bucketed=True)
    bf16, _ = load_model_for_inference(cfg, ckpt, precision="bf16")
    assert fast.bucketed and bf16.bucketed and not plain.bucketed
    for inputs in odd_inputs:
        o_ref, attn_ref, z_ref = _infer(plain, inputs)
        assert bucket_length(inputs[0].shape[1]) != inputs[0].shape[1]
        for max_frames in (MAX_DECODE_FRAMES, 60):
            o, attn, z = _infer(fast, inputs, max_frames)
            assert torch.equal(attn, attn_ref), "durations moved"
            assert o.shape == o_ref.shape and (o - o_ref).abs().max().item() <= FP32_TOL
            assert (z - z_ref).abs().max().item() <= FP32_TOL
            o16, attn16, z16 = _infer(bf16, inputs, max_frames)
            assert torch.equal(attn16, attn_ref), "bf16 durations moved"
            assert _snr_db(o_ref, o16) >= BF16_MIN_SNR_DB and _snr_db(z_ref, z16) >= BF16_MIN_SNR_DB


def test_unbucketed_fast_path_is_still_available(bv2_ref, odd_inputs):
    cfg, ckpt = bv2_ref / "config.json", bv2_ref / "G_ref.pth"
    assert not load_model_for_inference(cfg, ckpt, precision="fp32")[0].bucketed  # the fp32 default
    exact, _ = load_model_for_inference(cfg, ckpt, precision="fp32", bucketed=False)
    assert not exact.bucketed and not exact.dec.bucketed and type(exact.flow).__name__ == "TransformerCouplingBlock"
    plain, _ = load_model_for_inference(cfg, ckpt, precision="fp32", fast=False)
    o, attn, _z = _infer(exact, odd_inputs[1])
    o_ref, attn_ref, _ = _infer(plain, odd_inputs[1])
    assert torch.equal(attn, attn_ref) and (o - o_ref).abs().max().item() <= FP32_TOL


def test_warm_up_is_bounded_and_logged(bv2_ref, caplog):
    cfg, ckpt = bv2_ref / "config.json", bv2_ref / "G_ref.pth"
    model, _ = load_model_for_inference(cfg, ckpt, precision="fp32", bucketed=True)
    assert warm_up(model, budget_s=0)["shapes"] == 0
    with caplog.at_level(logging.INFO, logger="bert_vits2.inference"):
        done = warm_up(model, budget_s=0.5, max_frames=64)
    assert 1 <= done["shapes"] <= 8 and done["up_to_frames"] <= 64
    assert any("warm-up" in r.getMessage() for r in caplog.records)
    plain, _ = load_model_for_inference(cfg, ckpt, precision="fp32", fast=False)
    assert warm_up(plain, budget_s=10)["shapes"] == 0  # nothing to warm on the plain path


@pytest.mark.slow
def test_voice_uses_the_bucketed_path(bv2_ref, tmp_path):
    from webui_helpers import make_tiny_voice

    from bert_vits2.synthesis import Voice, find_model_files

    files = find_model_files(make_tiny_voice(bv2_ref, tmp_path))
    assert not Voice.load(files).model.bucketed  # fp32: bucketing only pays in bf16 (bucketing_default)
    voice = Voice(*load_model_for_inference(files.config, files.checkpoint, precision="fp32", bucketed=True), files)
    assert voice.model.bucketed and voice.model.dec.bucketed
    result = voice.synthesize("你好，今天天气很好。", seed=3)
    streamed = list(voice.stream("你好，今天天气很好。", seed=3))
    joined = np.concatenate([c.audio for c in streamed])
    assert joined.shape == result.audio.shape and float(np.abs(joined - result.audio).max()) <= FP32_TOL
