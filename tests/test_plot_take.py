"""plot_take.py: PNG + summary for a recorded take, an app CSV and a bare npy."""

import numpy as np
import pytest

from motion import plot_take
from motion.livelink import plot as take_plot
from motion.livelink.take import Take, save_take


@pytest.mark.slow
def test_plot_recorded_take(tmp_path, capsys):
    n = 100
    numbers = np.delete(np.arange(n + 3), [40, 41, 42])
    frames = np.zeros((n, 61), np.float32)
    frames[:, 17] = np.sin(np.arange(n) / 5) ** 2  # JawOpen moves
    t = Take(frames, 60.0, 0.05 + numbers / 60, numbers, np.zeros(n, np.float32),
             np.random.default_rng(0).uniform(-0.1, 0.1, 44100 * 2).astype(np.float32), 44100,
             meta={"packets": {"header_only": 4, "invalid": 1}})
    stem = save_take(t, tmp_path)
    assert plot_take.main([str(stem)]) == 0
    png = stem.with_name(stem.name + ".png")
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "100 frames at 60 fps" in out and "gaps: 1 (3 frames dropped)" in out and "4 header-only" in out
    assert "never move (60)" in out and "JawOpen" not in out.split("never move")[1]


@pytest.mark.slow
def test_plot_csv_and_bare_npy(tmp_path, livelink_ref, capsys):
    assert plot_take.main([str(livelink_ref / "llf_take_excerpt.csv"), "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").exists()
    assert "600 frames at 30 fps" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", np.random.default_rng(1).uniform(0, 1, (86, 61)).astype(np.float32))
    assert plot_take.main([str(tmp_path / "x.npy")]) == 1  # needs --fps
    assert "--fps" in capsys.readouterr().err
    assert plot_take.main([str(tmp_path / "x.npy"), "--fps", "86.1328125"]) == 0
    assert (tmp_path / "x.png").exists()
    s = take_plot.summarize(__import__("motion.livelink.take", fromlist=["load_take"]).load_take(tmp_path / "x.npy", fps=86.1328125))
    assert s["frames"] == 86 and s["still"] == []
