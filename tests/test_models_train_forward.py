"""Training forward of SynthesizerTrn: shapes, finiteness, a valid MAS path, losses and backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_synthesizer, load_bv2_config

from bert_vits2 import commons, losses, monotonic_align
from bert_vits2.models import SynthesizerTrn

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # 1 torch thread: see conftest


@pytest.fixture(scope="module")
def cfg(bv2_ref):
    return load_bv2_config(bv2_ref)


def _batch(cfg, x_lengths, y_lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    b, t_x, t_y = len(x_lengths), max(x_lengths), max(y_lengths)
    x_lengths_t, y_lengths_t = torch.tensor(x_lengths), torch.tensor(y_lengths)
    x_mask = commons.sequence_mask(x_lengths_t, t_x)
    y_mask = commons.sequence_mask(y_lengths_t, t_y)
    n_spec = cfg["data"]["filter_length"] // 2 + 1
    return dict(
        x=torch.randint(1, 112, (b, t_x), generator=gen) * x_mask,
        x_lengths=x_lengths_t,
        y=torch.rand(b, n_spec, t_y, generator=gen) * y_mask.unsqueeze(1),
        y_lengths=y_lengths_t,
        sid=torch.randint(0, cfg["data"]["n_speakers"], (b,), generator=gen),
        tone=torch.randint(0, 12, (b, t_x), generator=gen) * x_mask,
        language=torch.randint(0, 3, (b, t_x), generator=gen) * x_mask,
        bert=torch.randn(b, 1024, t_x, generator=gen) * x_mask.unsqueeze(1),
        ja_bert=torch.randn(b, 1024, t_x, generator=gen) * x_mask.unsqueeze(1),
        en_bert=torch.randn(b, 1024, t_x, generator=gen) * x_mask.unsqueeze(1),
    )


def _model(cfg):
    torch.manual_seed(0)
    return build_synthesizer(cfg)


def _assert_valid_path(path, t_y, t_x):
    """Every frame maps to exactly one phone, phone index never decreases and advances by at most one,
    first frame -> first phone, last frame -> last phone, every phone gets >= 1 frame, zero outside."""
    p = path[:t_y, :t_x]
    assert torch.all(path[t_y:] == 0) and torch.all(path[:, t_x:] == 0)
    assert torch.all(p.sum(1) == 1)
    idx = p.argmax(1)
    steps = idx[1:] - idx[:-1]
    assert torch.all((steps == 0) | (steps == 1))
    assert idx[0] == 0 and idx[-1] == t_x - 1
    assert torch.all(p.sum(0) >= 1)


def test_training_forward_and_backward(cfg):
    model = _model(cfg).train()
    segment = model.segment_size
    hop = int(np.prod(cfg["model"]["upsample_rates"]))
    x_lengths, y_lengths = [11, 8], [segment + 9, segment + 2]
    batch = _batch(cfg, x_lengths, y_lengths)
    assert model.use_noise_scaled_mas
    model.current_mas_noise_scale = model.mas_noise_scale_initial

    out = model(**batch)
    o, l_length, attn, ids_slice, x_mask, y_mask, (z, z_p, m_p, logs_p, m_q, logs_q), (x, logw, logw_, logw_sdp), g = out
    b, t_x, t_y = len(x_lengths), max(x_lengths), max(y_lengths)
    c, h = cfg["model"]["inter_channels"], cfg["model"]["hidden_channels"]
    assert o.shape == (b, 1, segment * hop)
    assert l_length.shape == (b,)
    assert attn.shape == (b, 1, t_y, t_x)
    assert ids_slice.shape == (b,)
    assert x_mask.shape == (b, 1, t_x) and y_mask.shape == (b, 1, t_y)
    for t in (z, z_p, m_p, logs_p, m_q, logs_q):
        assert t.shape == (b, c, t_y)
    assert x.shape == (b, h, t_x)
    for t in (logw, logw_, logw_sdp):
        assert t.shape == (b, 1, t_x)
    assert g.shape == (b, cfg["model"]["gin_channels"], 1)
    for t in (o, l_length, z, z_p, m_p, logs_p, m_q, logs_q, x, logw, logw_, logw_sdp):
        assert torch.isfinite(t).all()
    for i in range(b):
        _assert_valid_path(attn[i, 0], y_lengths[i], x_lengths[i])
        assert 0 <= int(ids_slice[i]) <= y_lengths[i] - segment
    # durations from MAS sum to the frame count
    assert torch.equal(attn.sum(2).sum(-1).squeeze(1), torch.tensor(y_lengths, dtype=attn.dtype))

    loss_kl = losses.kl_loss(z_p, logs_q, m_p, logs_p, y_mask)
    loss = loss_kl + l_length.sum() + o.abs().mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ("enc_p.emb.weight", "enc_q.pre.weight", "dec.conv_pre.weight", "flow.flows.0.post.weight",
                 "sdp.flows.1.proj.weight", "sdp.post_flows.1.proj.weight", "dp.conv_1.weight", "emb_g.weight", "dec.ups.0.weight_g", "enc_q.enc.in_layers.0.weight_v"):
        assert grads[name] is not None and torch.isfinite(grads[name]).all(), name
        assert grads[name].abs().sum() > 0, name


def test_noise_scaled_mas_uses_current_scale(cfg):
    """Same seed: scale 0 reproduces the alignment, a large scale changes it (the noise is drawn after z)."""
    model = _model(cfg).eval()
    batch = _batch(cfg, [9], [model.segment_size + 8], seed=1)

    def attn_at(scale):
        model.current_mas_noise_scale = scale
        torch.manual_seed(1)
        with torch.no_grad():
            return model(**batch)[2]

    base = attn_at(0.0)
    assert torch.equal(base, attn_at(0.0))
    assert not torch.equal(base, attn_at(1e3))


def test_too_short_spectrogram_is_rejected(cfg):
    model = _model(cfg)
    batch = _batch(cfg, [5], [model.segment_size - 1])
    with pytest.raises(ValueError, match="segment"):
        model(**batch)


def _best_score(value, t_y, t_x):
    """Independent float64 DP: best total of a monotonic path that starts at (0, 0) and ends at (t_y-1, t_x-1)."""
    neg = -np.inf
    q = np.full((t_y, t_x), neg)
    q[0, 0] = value[0, 0]
    for y in range(1, t_y):
        for x in range(t_x):
            prev = max(q[y - 1, x], q[y - 1, x - 1] if x > 0 else neg)
            q[y, x] = prev + value[y, x]
    return q[t_y - 1, t_x - 1]


@pytest.mark.parametrize("seed", range(5))
def test_maximum_path_is_optimal_and_valid(seed):
    rng = np.random.default_rng(seed)
    b, t_y, t_x = 3, 17, 6
    lengths = [(17, 6), (12, 5), (6, 6)]
    neg_cent = torch.from_numpy(rng.normal(size=(b, t_y, t_x)).astype(np.float32))
    mask = torch.zeros(b, t_y, t_x)
    for i, (ly, lx) in enumerate(lengths):
        mask[i, :ly, :lx] = 1
    path = monotonic_align.maximum_path(neg_cent, mask)
    assert path.dtype == neg_cent.dtype and path.shape == neg_cent.shape
    for i, (ly, lx) in enumerate(lengths):
        _assert_valid_path(path[i], ly, lx)
        score = float((path[i] * neg_cent[i].double()).sum())
        assert score == pytest.approx(_best_score(neg_cent[i].double().numpy(), ly, lx), abs=1e-4)


def test_generate_path_matches_durations():
    duration = torch.tensor([[[2.0, 0.0, 3.0, 1.0]]])
    x_mask = torch.ones(1, 1, 4)
    y_mask = torch.ones(1, 1, 6)
    path = commons.generate_path(duration, x_mask.unsqueeze(2) * y_mask.unsqueeze(-1))
    assert torch.equal(path[0, 0].sum(0), duration[0, 0])
    assert torch.equal(path[0, 0].argmax(1), torch.tensor([0, 0, 2, 2, 2, 3]))


def test_slice_segments():
    x = torch.arange(2 * 3 * 10, dtype=torch.float32).view(2, 3, 10)
    out = commons.slice_segments(x, torch.tensor([0, 6]), 4)
    assert torch.equal(out[0], x[0, :, 0:4]) and torch.equal(out[1], x[1, :, 6:10])
    seg, ids = commons.rand_slice_segments(x, torch.tensor([10, 5]), 4)
    assert 0 <= ids[0] <= 6 and 0 <= ids[1] <= 1
    assert torch.equal(seg[1], x[1, :, ids[1] : ids[1] + 4])


@pytest.mark.parametrize("length", [1, 3, 5, 6, 13])
def test_windowed_relative_attention_matches_full_tables(length):
    """The banded relative-position computation equals the padded full-table formulation."""
    from bert_vits2.attentions import MultiHeadAttention

    torch.manual_seed(length)
    attn = MultiHeadAttention(8, 8, 2, window_size=4).eval()
    q = torch.randn(2, attn.n_heads, length, attn.k_channels)
    p = torch.softmax(torch.randn(2, attn.n_heads, length, length), -1)
    full_k = attn._get_relative_embeddings(attn.emb_rel_k, length)
    full_v = attn._get_relative_embeddings(attn.emb_rel_v, length)
    win_k, pad = attn._window_embeddings(attn.emb_rel_k, length)
    win_v, _ = attn._window_embeddings(attn.emb_rel_v, length)
    assert full_k.shape[1] == 2 * length - 1
    torch.testing.assert_close(torch.nn.functional.pad(win_k, [0, 0, pad, pad]), full_k, rtol=0, atol=0)
    logits_full = attn._relative_position_to_absolute_position(q @ full_k.unsqueeze(0).transpose(-2, -1))
    logits_win = attn._relative_position_to_absolute_position(
        torch.nn.functional.pad(q @ win_k.unsqueeze(0).transpose(-2, -1), [pad, pad])
    )
    torch.testing.assert_close(logits_win, logits_full, rtol=1e-6, atol=1e-6)
    rel_w = attn._absolute_position_to_relative_position(p)
    out_full = rel_w @ full_v.unsqueeze(0)
    out_win = rel_w[..., pad : rel_w.size(-1) - pad] @ win_v.unsqueeze(0)
    torch.testing.assert_close(out_win, out_full, rtol=1e-6, atol=1e-6)


def test_wavenet_flow_variant_roundtrip(cfg):
    """use_transformer_flow=False builds the VITS WaveNet coupling flow; reverse inverts forward."""
    model_cfg = dict(cfg["model"], use_transformer_flow=False)
    model = SynthesizerTrn(112, 1025, 32, n_speakers=cfg["data"]["n_speakers"], **model_cfg).eval()
    assert "flow.flows.0.enc.in_layers.0.weight_v" in model.state_dict()
    for p in model.flow.parameters():  # the zero-initialised post layers would make this trivially pass
        torch.nn.init.normal_(p, std=0.05)
    c = cfg["model"]["inter_channels"]
    z = torch.randn(1, c, 12)
    mask = torch.ones(1, 1, 12)
    g = torch.randn(1, cfg["model"]["gin_channels"], 1)
    with torch.no_grad():
        fwd = model.flow(z, mask, g=g)
        back = model.flow(fwd, mask, g=g, reverse=True)
    assert not torch.allclose(fwd, z)
    torch.testing.assert_close(back, z, rtol=1e-4, atol=1e-4)
