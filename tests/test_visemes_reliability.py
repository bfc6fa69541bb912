"""Issue 13, expression-head data: prepare skips a bad take (NaN/inf, out-of-range values, unreadable files) naming
it and the reason, and finishes the others; training stops on a non-finite loss naming the epoch, step and clip,
without saving NaN weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from motion.livelink.take import Take, save_take


def _good_take(records, name: str, rng: np.random.Generator, seconds: float = 1.5) -> None:
    sr, fps = 44100, 60
    n = int(seconds * fps)
    t = np.arange(int(seconds * sr)) / sr
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    frames = np.clip(rng.random((n, 61), dtype=np.float32) * 0.3, 0, 1)
    frames[:, 52:] -= 0.15
    take = Take(frames, fps, frame_times=np.arange(n) / fps, frame_numbers=np.arange(n), sub_frames=np.zeros(n, np.float32),
                audio=audio, sample_rate=sr, meta={"source": "test"})
    save_take(take, records, stem=name)


@pytest.fixture()
def records(tmp_path):
    rng = np.random.default_rng(3)
    rec = tmp_path / "records"
    for i in range(4):
        _good_take(rec, f"good{i}", rng)
    _good_take(rec, "nan_take", rng)
    bad = np.load(rec / "nan_take.npy")
    bad[10, 17] = np.nan
    bad[11, 3] = np.inf
    np.save(rec / "nan_take.npy", bad)
    _good_take(rec, "spoofed", rng)
    bad = np.load(rec / "spoofed.npy")
    bad[20, 17] = 3.4e38  # finite, absurd: a spoofed packet
    np.save(rec / "spoofed.npy", bad)
    _good_take(rec, "unreadable", rng)
    (rec / "unreadable.npy").write_bytes(b"\x93NUMPY garbage")
    _good_take(rec, "no_audio", rng)
    (rec / "no_audio.wav").write_bytes(b"RIFF....WAVEjunk")
    return rec


def test_prepare_skips_bad_takes_and_finishes_the_others(records, tmp_path, caplog):
    from motion.face.prepare import prepare

    out = tmp_path / "filelists"
    with caplog.at_level("WARNING"):
        report = prepare(records, out, n_mels=16, val_size=1, progress=False)
    done = sorted(p.stem.name for p in report.takes)
    assert done == ["good0", "good1", "good2", "good3"]
    skipped = dict(report.skipped)
    assert set(skipped) == {"nan_take", "spoofed", "unreadable", "no_audio"}
    assert "NaN or infinite" in skipped["nan_take"]
    assert "out of range" in skipped["spoofed"] and "3.4e+38" in skipped["spoofed"]
    assert "unreadable.npy" in skipped["unreadable"] and "no_audio.wav" in skipped["no_audio"]
    for name in skipped:
        assert any(name in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records), name
    lists = (out / "train_visemes.list").read_text() + (out / "val_visemes.list").read_text()
    assert lists.count("\n") == 4 and "nan_take" not in lists and "spoofed" not in lists
    info = json.loads((out / "visemes_prepare.json").read_text())
    assert set(info["skipped"]) == set(skipped)


def test_prepare_visemes_cli_reports_skips_and_exit_0(records, tmp_path, capsys):
    from motion import prepare_visemes

    rc = prepare_visemes.main(["--records", str(records), "-o", str(tmp_path / "fl"), "-m", str(tmp_path / "none"),
                               "--n-mels", "16", "--val-size", "1", "-q"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nan_take" in err and "spoofed" in err


def _clips(n: int, bad: str | None = None):
    from motion.face.train import Clip

    rng = np.random.default_rng(0)
    clips = []
    for i in range(n):
        feats = rng.normal(size=(16, 200)).astype(np.float32)
        frames = rng.random((140, 61), dtype=np.float32) * 0.5
        name = f"clip{i}"
        if name == bad:
            feats[3, :] = np.nan  # every crop of it holds a NaN
        clips.append(Clip(name, feats, frames, np.ones(140, bool)))
    return clips


def test_training_stops_on_a_non_finite_loss_naming_epoch_step_and_clip(tmp_path):
    from motion.face.heads import head_config
    from motion.face.train import TrainError, TrainOptions, train_head

    cfg = head_config("mel", n_mels=16)
    cfg.update({"channels": [8, 8], "rnn_hidden": 8, "rnn_layers": 1, "fc_hidden": 8})
    opts = TrainOptions(epochs=3, batch_size=1, crop_s=1.0, eval_interval=1, tensorboard=False, seed=1)
    with pytest.raises(TrainError) as exc:
        train_head(_clips(3, bad="clip2"), _clips(1), cfg, tmp_path / "m", opts, progress=False)
    msg = str(exc.value)
    assert "non-finite" in msg and "epoch 1" in msg and "step" in msg and "clip2" in msg
    assert not list((tmp_path / "m").glob("V_*.pth")), "no checkpoint with NaN weights"


def test_a_diverging_run_stops_too(tmp_path):
    from motion.face.heads import head_config
    from motion.face.train import TrainError, TrainOptions, train_head

    cfg = head_config("mel", n_mels=16)
    cfg.update({"channels": [8, 8], "rnn_hidden": 8, "rnn_layers": 1, "fc_hidden": 8})
    opts = TrainOptions(epochs=2, batch_size=2, crop_s=1.0, eval_interval=1, tensorboard=False, learning_rate=1e30,
                        grad_clip=0.0)
    try:
        train_head(_clips(2), _clips(1), cfg, tmp_path / "m", opts, progress=False)
    except TrainError as err:
        assert "non-finite" in str(err)
    for p in (tmp_path / "m").glob("V_*.pth"):  # whatever was saved holds finite weights only
        state = torch.load(p, weights_only=True)["model"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
