"""Expression heads: architecture (spec §3/§4), padding masks, output ranges, time resampling, the masked loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from motion.face.heads import MelHead, ZHead, build_head, count_parameters, head_config, predict
from motion.face.train import channel_weights, masked_loss, sample_predictions
from motion.frames import resample_curves

torch.set_num_threads(1)


def test_z_head_matches_the_original_size_and_options():
    assert 2.2e6 < count_parameters(ZHead()) < 2.45e6  # "about 2.3 M"
    assert 1.2e6 < count_parameters(ZHead(use_transformer=False)) < 1.35e6  # "1.3 M without the transformer"
    gru = ZHead(in_channels=32, rnn="gru", use_transformer=False)
    assert isinstance(gru.rnn, torch.nn.GRU)
    with pytest.raises(ValueError, match="lstm"):
        ZHead(rnn="rnn")
    assert isinstance(build_head({"type": "z", "in_channels": 16}), ZHead)
    assert isinstance(build_head(head_config("mel", n_mels=40)), MelHead)
    with pytest.raises(ValueError, match="divisible"):
        MelHead(n_mels=42)


@pytest.mark.parametrize("make,channels", [
    (lambda: ZHead(in_channels=32, transformer_heads=4), 32),
    (lambda: ZHead(in_channels=32, use_transformer=False, rnn="gru"), 32),
    (lambda: MelHead(n_mels=40, channels=[8, 16], rnn_hidden=32), 40),
])
def test_padding_never_changes_the_valid_frames(make, channels):
    torch.manual_seed(0)
    head = make().eval()
    x = torch.randn(3, channels, 57)
    lengths = torch.tensor([57, 31, 12])
    with torch.no_grad():
        out = head(x, lengths)
        assert out.shape == (3, 61, 57)
        for b, n in enumerate(lengths.tolist()):
            alone = head(x[b:b + 1, :, :n])
            assert torch.allclose(out[b, :, :n], alone[0], atol=2e-5), f"item {b}"
            assert torch.all(out[b, :, n:] == 0)


def test_mel_head_output_ranges():
    torch.manual_seed(0)  # the weights and the input are random: seeded, so the sign check below cannot flake
    head = MelHead(n_mels=40, channels=[8, 16], rnn_hidden=32).eval()
    with torch.no_grad():
        y = head(10 * torch.randn(2, 40, 30))
    assert y[:, :52].min() >= 0 and y[:, :52].max() <= 1
    assert y[:, 52:].min() >= -1 and y[:, 52:].max() <= 1
    assert y[:, 52:].min() < 0, "rotations must be able to go negative"


def test_resample_curves_interpolates_on_frame_centres():
    # a ramp sampled at frame centres must stay the same ramp at any other rate (edges held)
    src_fps = 44100 / 512
    t_src = (np.arange(173) + 0.5) / src_fps
    a = np.stack([t_src, 2 * t_src + 1], axis=1).astype(np.float32)
    for dst, n in ((60.0, 121), (30.0, 61), (100.0, 201)):
        got = resample_curves(a, src_fps, dst, n)
        t_dst = np.clip((np.arange(n) + 0.5) / dst, t_src[0], t_src[-1])
        assert np.abs(got[:, 0] - t_dst).max() < 1e-5
        assert np.abs(got[:, 1] - (2 * t_dst + 1)).max() < 2e-5


def test_predict_covers_the_clip_at_the_requested_rate():
    head = MelHead(n_mels=40, channels=[8, 16], rnn_hidden=16)
    feats = np.random.default_rng(1).standard_normal((40, 200)).astype(np.float32)
    out = predict(head, feats, fps=60)
    assert out.shape == (math.ceil(200 / (44100 / 512) * 60 - 1e-6), 61)
    assert predict(head, feats, fps=25, num_frames=50).shape == (50, 61)


def test_masked_loss_ignores_invalid_frames_and_weights_channels():
    torch.manual_seed(0)
    pred = torch.rand(2, 10, 61, requires_grad=True)
    y = torch.rand(2, 10, 61)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 5:] = False
    w = channel_weights(head_weight=0.0, eye_weight=1.0)
    assert w[52:55].sum() == 0 and w[55:].sum() == 6 and w[17] == 1
    base = masked_loss(pred, y, mask, w)
    y2 = y.clone()
    y2[1, 5:] += 100.0  # garbage on masked frames
    y2[:, :, 52:55] -= 50.0  # and on the switched-off head channels
    assert torch.allclose(masked_loss(pred, y2, mask, w), base)
    assert masked_loss(pred, y, mask, w, velocity_weight=1.0) > base
    base.backward()
    assert pred.grad[1, 5:].abs().sum() == 0 and pred.grad[0].abs().sum() > 0


def test_lip_gap_term_pulls_jaw_minus_close_to_the_target_gap():
    from motion.arkit import INDEX

    jaw, close = INDEX["JawOpen"], INDEX["MouthClose"]
    y = torch.zeros(1, 4, 61)
    y[..., jaw] = y[..., close] = 0.06  # lips sealed
    mask = torch.ones(1, 4, dtype=torch.bool)
    w = channel_weights(1.0, 1.0)
    off = y.clone()
    off[..., close] -= 0.04  # gap 0.04: lips apart
    both = y + 0.04  # both shapes off by the same amount: gap still 0
    assert masked_loss(off, y, mask, w, lip_gap_weight=1.0) == pytest.approx(
        float(masked_loss(off, y, mask, w)) + 0.04, abs=1e-6)
    assert masked_loss(both, y, mask, w, lip_gap_weight=1.0) == pytest.approx(float(masked_loss(both, y, mask, w)))
    masked = mask.clone()
    masked[0, :] = False
    masked[0, 0] = True
    assert masked_loss(off, y, masked, w, lip_gap_weight=1.0) == pytest.approx(
        float(masked_loss(off, y, masked, w)) + 0.04, abs=1e-6)


def test_closure_term_asks_only_for_the_closures_the_target_makes():
    from motion.arkit import INDEX

    jaw, close = INDEX["JawOpen"], INDEX["MouthClose"]
    y = torch.zeros(1, 4, 61)
    y[0, :2, jaw] = y[0, :2, close] = 0.06  # frames 0-1 sealed (gap 0); frames 2-3 open (gap 0.3)
    y[0, 2:, jaw] = 0.3
    mask = torch.ones(1, 4, dtype=torch.bool)
    w = channel_weights(1.0, 1.0)
    base = lambda p: float(masked_loss(p, y, mask, w))  # noqa: E731
    apart = y.clone()
    apart[0, :2, close] = 0.0  # the sealed frames open by 0.06
    assert masked_loss(apart, y, mask, w, closure_weight=2.0) == pytest.approx(base(apart) + 2.0 * 0.06, abs=1e-6)
    tighter = y.clone()
    tighter[0, :, close] += 0.1  # closes more than asked, also on the open frames: no closure loss
    assert masked_loss(tighter, y, mask, w, closure_weight=2.0) == pytest.approx(base(tighter), abs=1e-6)
    wider_open = y.clone()
    wider_open[0, 2:, jaw] = 0.5  # open frames opened wider: none of this term's business
    assert masked_loss(wider_open, y, mask, w, closure_weight=2.0) == pytest.approx(base(wider_open), abs=1e-6)


def test_sample_predictions_interpolates_at_label_positions():
    pred = torch.arange(10, dtype=torch.float32).repeat(1, 61, 1)  # value = frame index
    pos = torch.tensor([[0.0, 2.5, 8.25, 20.0]], dtype=torch.float64)
    out = sample_predictions(pred, pos, torch.tensor([10]))
    assert torch.allclose(out[0, :, 0], torch.tensor([0.0, 2.5, 8.25, 9.0]))


@pytest.mark.slow
def test_a_head_can_fit_a_small_batch():
    torch.manual_seed(0)
    head = ZHead(in_channels=8, use_transformer=False, rnn_hidden=16, rnn_layers=1, mlp_hidden=16, dropout=0.0)
    x = torch.randn(2, 8, 40)
    target = torch.zeros(2, 40, 61)
    target[..., 17] = torch.sigmoid(x[:, 0]).detach()  # JawOpen follows feature 0
    pos = torch.arange(40, dtype=torch.float64).repeat(2, 1)
    lengths = torch.tensor([40, 40])
    mask = torch.ones(2, 40, dtype=torch.bool)
    opt = torch.optim.Adam(head.parameters(), 1e-2)
    w = torch.ones(61)
    first = None
    for _ in range(60):
        loss = masked_loss(sample_predictions(head(x, lengths), pos, lengths), target, mask, w)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first


def test_training_loop_stops_early_and_writes_loadable_checkpoints(tmp_path):
    from motion.face.model import load_head_checkpoint
    from motion.face.train import Clip, TrainOptions, train_head

    rng = np.random.default_rng(0)
    clips = [Clip(f"c{i}", rng.standard_normal((8, 90)).astype(np.float32), rng.random((63, 61)).astype(np.float32),
                  np.ones(63, bool)) for i in range(4)]
    cfg = head_config("z", use_transformer=False, rnn_hidden=8, rnn_layers=1, mlp_hidden=8)
    opts = TrainOptions(epochs=50, batch_size=2, crop_s=0.5, learning_rate=1e-12, eval_interval=1, patience=2,
                        tensorboard=False, num_threads=1)
    res = train_head(clips[:3], clips[3:], cfg, tmp_path, opts, progress=False)
    assert res.stopped.startswith("early stop") and res.last_epoch == 3
    assert sorted(p.name for p in tmp_path.glob("V_*.pth")) == ["V_1.pth", "V_2.pth", "V_3.pth", "V_best.pth"]
    model, ckpt = load_head_checkpoint(tmp_path / "V_best.pth")
    assert ckpt["epoch"] == 1 and ckpt["head_config"]["in_channels"] == 8 and not model.training
    assert set(ckpt["val_metrics"]["r"]) >= {"JawOpen", "MouthClose"} and "MouthFunnel" in ckpt["val_metrics"]["mae"]
