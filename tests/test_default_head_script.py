"""scripts/train_default_head.py end to end on a few eSpeak NG clips: it writes a loadable head that records how it
was trained, and ``--clips-cache`` reuses each part of the data whose settings did not change."""

from __future__ import annotations

import logging
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt install espeak-ng)")
def test_default_head_script_trains_and_reuses_cached_parts(tmp_path, caplog):
    main = runpy.run_path(str(REPO / "scripts" / "train_default_head.py"))["main"]
    cache, out = tmp_path / "clips.pt", tmp_path / "head.pth"
    common = ["--val-clips", "2", "--neural-clips", "0", "--epochs", "1", "--batch-size", "2", "--threads", "1",
              "--clips-cache", str(cache), "--out", str(out)]
    caplog.set_level(logging.INFO)
    assert main(["--clips", "3", "--lip-gap-weight", "0.1", *common]) == 0
    asset = torch.load(out, map_location="cpu", weights_only=True)
    assert asset["head_config"]["type"] == "mel" and asset["training"]["clips"] == 3
    assert asset["training"]["lip_gap_weight"] == 0.1
    assert not any(v.startswith(("kokoro/jf_tebukuro", "piper/")) for v in asset["training"]["voices"])
    assert "reusing" not in caplog.text

    from motion.face.api import FaceMaker

    frames = FaceMaker(head_path=out, alive=False).for_audio(np.zeros(44100, np.float32), 44100).frames
    assert frames.shape == (60, 61)

    caplog.clear()
    assert main(["--clips", "4", *common]) == 0  # more training clips: that part is made again, validation reused
    assert "espeak_val: reusing 2 clips" in caplog.text and "espeak_train: reusing" not in caplog.text
    assert torch.load(out, map_location="cpu", weights_only=True)["training"]["clips"] == 4
    caplog.clear()
    assert main(["--clips", "4", *common]) == 0
    assert "espeak_train: reusing 4 clips" in caplog.text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt install espeak-ng)")
def test_causal_head_script_averages_the_last_epochs(tmp_path):
    """``--causal --average-last N`` ships the mean weights of the run's last N epochs (how the shipped live head
    was made) and says which epochs; the result runs live."""
    main = runpy.run_path(str(REPO / "scripts" / "train_default_head.py"))["main"]
    out = tmp_path / "causal.pth"
    assert main(["--causal", "--clips", "3", "--val-clips", "2", "--epochs", "3", "--batch-size", "2", "--threads", "1",
                 "--average-last", "2", "--out", str(out)]) == 0
    asset = torch.load(out, map_location="cpu", weights_only=True)
    assert asset["training"]["averaged_epochs"] == [2, 3] and asset["epoch"] == 3
    assert asset["head_config"]["causal"] is True
    assert all(v.dtype == torch.float16 for v in asset["model"].values() if v.is_floating_point())

    from motion.face.live import LiveFace

    live = LiveFace(44100, head=out, alive=False)
    frames = np.concatenate([live.feed(np.zeros(4410, np.float32)) for _ in range(10)] + [live.close()])
    assert frames.shape == (60, 61)


def test_causal_init_at_or_past_the_last_epoch_is_refused_before_making_clips(tmp_path, capsys):
    """A resumed run whose --init is already at --epochs would make its clips for half an hour and train nothing."""
    main = runpy.run_path(str(REPO / "scripts" / "train_default_head.py"))["main"]
    init = tmp_path / "V_75.pth"
    torch.save({"epoch": 75, "model": {}}, init)
    assert main(["--causal", "--init", str(init), "--epochs", "25", "--out", str(tmp_path / "h.pth")]) == 2
    err = capsys.readouterr().err
    assert "epoch 75" in err and "--epochs above 75" in err
    assert not (tmp_path / "h.pth").exists()
