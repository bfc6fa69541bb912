"""tts2ue.py: every frame once, in order, at the requested rate; the schedule ends with the audio."""

import threading

import numpy as np
import pytest
import soundfile as sf

from motion import tts2ue
from motion.livelink import LiveLinkReceiver, decode_packet, read_packet_log, replay
from motion.livelink.take import Take, save_take


def _clip(tmp_path, seconds, fps=60.0, name="clip"):
    n = int(round(seconds * fps))
    rng = np.random.default_rng(0)
    frames = np.clip(rng.normal(0.3, 0.2, (n, 61)), 0, 1).astype(np.float32)
    frames[:, 52:] = 0.0
    npy, wav = tmp_path / f"{name}.npy", tmp_path / f"{name}.wav"
    np.save(npy, frames)
    sf.write(wav, np.zeros(int(seconds * 16000), np.float32), 16000, subtype="PCM_16")
    return npy, wav, frames


def test_sixty_second_clip_ends_with_the_audio(tmp_path):
    """Virtual clock: the scheduler's arithmetic over 60 s (real-time figures are in benchmarks/bench_livelink.py)."""
    npy, wav, frames = _clip(tmp_path, 60.0)
    out = tmp_path / "packets.jsonl"
    rc = tts2ue.main(["--bs_npy_file", str(npy), "--wav_file", str(wav), "--fps", "60", "--dry-run", str(out),
                      "--virtual-clock", "--no-blink"])
    assert rc == 0
    log = read_packet_log(out)
    assert len(log) == 3600
    assert [r["packet"].frame.frame_number for r in log] == list(range(3600))
    t = np.array([r["t"] for r in log])
    due = np.array([r["due"] for r in log])
    np.testing.assert_allclose(due, np.arange(3600) / 60, atol=1e-6)  # no drift: deadlines from the clock
    assert (t - due).max() < 1e-3 and (t >= due - 1e-9).all()
    assert 60.0 - 1 / 60 - 1e-3 <= t[-1] <= 60.0  # last frame within one frame of the audio's end
    f = log[100]["packet"].frame
    assert f.fps_numerator == 60 and f.fps_denominator == 1 and len(f.device_id) == 36
    np.testing.assert_allclose(f.values, frames[100], atol=1e-7)


def test_loopback_real_time_every_frame_once_in_order(tmp_path):
    """Over the real network on the wall clock: every frame arrives once, in order, resampled. No timing
    assertions here (they would depend on the machine's load): the schedule is checked on the virtual clock in
    test_sixty_second_clip_ends_with_the_audio."""
    npy, wav, frames = _clip(tmp_path, 1.5, fps=30.0)  # 30 fps source, sent at 60
    got = []
    with LiveLinkReceiver("127.0.0.1", 0) as rx:
        host, port = rx.address
        done = threading.Event()

        def listen():
            while True:
                d = rx.receive(0.5)
                if d is None:
                    if done.is_set():
                        return
                    continue
                got.append(d)

        th = threading.Thread(target=listen)
        th.start()
        rc = tts2ue.main(["--bs_npy_file", str(npy), "--wav_file", str(wav), "--fps", "30", "--no-audio", "--host", host,
                          "--port", str(port), "--subject", "T", "--no-blink"])
        done.set()
        th.join(5)
    assert rc == 0
    frames_rx = [decode_packet(d).frame for d in got]
    assert [f.frame_number for f in frames_rx] == list(range(90))
    assert all(f.subject == "T" and f.fps == 60 for f in frames_rx)
    # resampled 30 -> 60 on frame centres: frame 1 of the 30 fps clip is near packets 2-3
    np.testing.assert_allclose(frames_rx[3].values[:52], np.clip(frames[1], 0, 1)[:52] * 0.75 + frames[2][:52] * 0.25, atol=1e-5)


def test_take_shortcut_and_fps_from_json(tmp_path):
    n = 120
    numbers = np.arange(n) + 500
    frames = np.full((n, 61), 0.2, np.float32)
    frames[:, 0] = np.linspace(0, 1, n)
    take = Take(frames, 60.0, 0.1 + np.arange(n) / 60, numbers, np.zeros(n, np.float32),
                np.zeros(44100 * 2 + 441, np.float32), 44100, meta={})
    stem = save_take(take, tmp_path)
    out = tmp_path / "p.jsonl"
    assert tts2ue.main([str(stem), "--dry-run", str(out), "--virtual-clock", "--no-blink"]) == 0
    log = read_packet_log(out)
    assert len(log) == 121  # on the audio's time axis: 2.01 s of audio at 60 fps (face starts 0.1 s in)
    v = np.array([r["packet"].frame.values[0] for r in log])
    assert v[0] == v[5] == 0.0 and np.all(np.diff(v[6:]) > 0)  # face starts 0.1 s into the audio
    # same take through --bs_npy_file / --wav_file without --fps: the rate comes from the JSON
    out2 = tmp_path / "q.jsonl"
    assert tts2ue.main(["--bs_npy_file", f"{stem}.npy", "--wav_file", f"{stem}.wav", "--dry-run", str(out2),
                        "--virtual-clock", "--no-blink"]) == 0
    assert len(read_packet_log(out2)) == 121


def test_fps_inferred_from_audio_length_and_csv(tmp_path, livelink_ref):
    assert replay.infer_fps(int(86.1328125 * 3), 3.0) == 86.1328125
    assert replay.infer_fps(180, 3.0) == 60.0
    assert replay.infer_fps(100, 3.0) is None
    out = tmp_path / "c.jsonl"
    assert tts2ue.main(["--csv", str(livelink_ref / "llf_take_excerpt.csv"), "--dry-run", str(out), "--virtual-clock",
                        "--mirror", "--blink"]) == 0
    log = read_packet_log(out)
    assert len(log) == pytest.approx(20.03 * 60, abs=2)  # 30 fps rows, resampled to 60 fps
    v = np.stack([r["packet"].frame.values for r in log])
    assert v.min() >= -1 and v[:, :52].min() >= 0 and v[:, :52].max() <= 1  # clamped
    from motion.arkit import INDEX

    assert np.array_equal(v[:, INDEX["JawLeft"]], v[:, INDEX["JawRight"]])  # mirrored


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert tts2ue.main(["--bs_npy_file", str(tmp_path / "none.npy")]) == 1
    assert "no such file" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((5, 52)))
    assert tts2ue.main(["--bs_npy_file", str(tmp_path / "bad.npy"), "--fps", "60"]) == 1
    assert "[T, 61]" in capsys.readouterr().err


def test_original_webui_output_and_delay(tmp_path):
    """The founding contract: `tts2ue.py --bs_npy_file tmp.npy --wav_file tmp.wav --delay_ms 700` (86.13 fps, no JSON)."""
    n = int(round(2.0 * 86.1328125))
    np.save(tmp_path / "tmp.npy", np.full((n, 61), 0.1, np.float32))
    sf.write(tmp_path / "tmp.wav", np.zeros(44100 * 2, np.float32), 44100, subtype="PCM_16")
    out = tmp_path / "p.jsonl"
    assert tts2ue.main(["--bs_npy_file", str(tmp_path / "tmp.npy"), "--wav_file", str(tmp_path / "tmp.wav"),
                        "--delay_ms", "700", "--dry-run", str(out), "--virtual-clock"]) == 0
    log = read_packet_log(out)
    assert len(log) == 120  # 2 s resampled from 86.13 fps (inferred from the audio's length) to 60 fps
    assert log[0]["due"] == pytest.approx(0.7) and log[-1]["due"] == pytest.approx(0.7 + 119 / 60)


@pytest.mark.parametrize("device_id, warned", [("my-phone", True), (None, False),
                                               ("2F7E1A44-8C1B-4C7A-9E3D-0123456789AB", False)])
def test_device_id_not_a_uuid_is_warned_about_once(tmp_path, caplog, device_id, warned):
    """Unreal takes any id, but decoders built on the app's 36-character UUID (pylivelinkface) do not: say so once."""
    npy, wav, _ = _clip(tmp_path, 0.2)
    out = tmp_path / "sent.jsonl"
    argv = ["--bs_npy_file", str(npy), "--wav_file", str(wav), "--fps", "60", "--dry-run", str(out), "--virtual-clock"]
    with caplog.at_level("WARNING"):
        assert tts2ue.main(argv + (["--device-id", device_id] if device_id else [])) == 0
    lines = [r.getMessage() for r in caplog.records if "device id" in r.getMessage()]
    assert len(lines) == (1 if warned else 0)
    if warned:
        assert "'my-phone' is not a 36-character UUID" in lines[0] and "\n" not in lines[0]
    frames = [rec["packet"].frame for rec in read_packet_log(out)]
    assert frames and {f.device_id for f in frames} == {device_id or replay.default_device_id()}
