"""Take format: save atomically / never overwrite / load; grid placement; app-take import."""

import json
import subprocess

import numpy as np
import pytest

from motion.livelink.take import Take, TakeError, import_app_take, load_take, new_take_stem, save_take


def _take(n=50, gap_at=20, gap=5):
    rng = np.random.default_rng(1)
    numbers = np.arange(n + gap)
    numbers = np.delete(numbers, range(gap_at + 1, gap_at + 1 + gap))
    frames = rng.uniform(0, 1, (len(numbers), 61)).astype(np.float32)
    times = 0.25 + numbers / 60 + rng.uniform(0, 0.004, len(numbers))  # arrival jitter
    audio = np.sin(np.arange(44100) / 20).astype(np.float32) * 0.5
    return Take(frames, 60.0, times, numbers + 1000, np.zeros(len(numbers), np.float32), audio, 44100,
                meta={"device_id": "D", "subject": "S", "packets": {"received": len(numbers), "header_only": 0, "invalid": 0}})


def test_save_load_round_trip(tmp_path):
    t = _take()
    stem = save_take(t, tmp_path)
    for s in (".wav", ".npy", ".json"):
        assert stem.with_name(stem.name + s).exists()
    assert not list(tmp_path.glob("*.part"))
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["gaps"] == [[20, 5]] and meta["dropped_frames"] == 5 and meta["names"][0] == "EyeBlinkLeft"
    u = load_take(stem)
    np.testing.assert_array_equal(u.frames, t.frames)
    np.testing.assert_array_equal(u.frame_numbers, t.frame_numbers)
    assert u.fps == 60 and u.sample_rate == 44100 and len(u.audio) == 44100
    assert u.gaps() == [(20, 5)]
    for other in ("npy", "wav", "json"):
        assert load_take(f"{stem}.{other}").num_frames == t.num_frames
    # never overwritten
    stem2 = save_take(t, tmp_path, stem=new_take_stem(tmp_path, base=stem.name))
    assert stem2 != stem and stem2.name.startswith(stem.name)
    with pytest.raises(FileExistsError):
        save_take(t, tmp_path, stem=stem)


def test_on_grid_uses_frame_numbers(tmp_path):
    t = _take()
    grid, measured = t.on_grid(60.0)
    assert grid.shape == (60, 61)  # the audio's second
    times = t.times()
    assert np.diff(times).min() == pytest.approx(1 / 60, abs=1e-9)  # jitter removed
    assert times[0] == pytest.approx(0.25 + 0.002, abs=0.003)
    # first frame at ~0.252 s: grid centres before it are held, not measured
    assert not measured[:14].any() and measured[16:35].all()
    assert not measured[35:40].any() and measured[41:].all()  # frames 21-25 were lost
    k = 30  # a measured grid frame equals the source frame at the same time
    src = np.argmin(abs(times - (k + 0.5) / 60))
    assert abs(times[src] - (k + 0.5) / 60) < 1 / 60


def test_bare_npy_needs_fps(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 61), np.float32))
    with pytest.raises(TakeError, match="--fps"):
        load_take(tmp_path / "x.npy")
    t = load_take(tmp_path / "x.npy", fps=86.1328125)
    assert t.fps == 86.1328125 and t.audio is None
    with pytest.raises(TakeError):
        load_take(tmp_path / "missing")


def test_import_app_take_with_mov(livelink_ref, tmp_path):
    csv = livelink_ref / "llf_take_excerpt.csv"
    mov = tmp_path / "take.mov"
    # a video whose timecode starts 0.5 s before the CSV's first row (13:13:04:31.652 at 60 fps)
    r = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=32x32:r=60:d=2", "-f", "lavfi",
                        "-i", "sine=f=440:d=2:sample_rate=48000", "-shortest", "-timecode", "13:13:04:01",
                        "-c:v", "mpeg4", "-c:a", "aac", str(mov)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"ffmpeg could not make a test video: {r.stderr[-200:]}")
    t = import_app_take(csv, mov)
    assert t.num_frames == 600 and t.fps == 30 and t.sample_rate == 44100
    assert len(t.audio) == pytest.approx(2 * 44100, abs=2000)
    assert t.meta["audio_offset_source"] == "video timecode"
    assert t.frame_times[0] == pytest.approx(30.652 / 60, abs=1e-3)
    stem = save_take(t, tmp_path)
    u = load_take(stem)
    assert u.gaps() == [(595, 1)] and u.frame_number_step == 2
    t2 = import_app_take(csv, mov, offset_s=0.1)
    assert t2.frame_times[0] == pytest.approx(0.1)
