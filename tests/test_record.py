"""record.py: loopback recording of real packets with a file-backed audio source, Ctrl-C, import, clear errors."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import checkout_env, free_port

from motion import record
from motion.livelink import LiveLinkReceiver, decode_packet, read_capture, recorder
from motion.livelink.take import load_take


@pytest.fixture(scope="module")
def packets(livelink_ref):
    return read_capture(livelink_ref / "dao.gesichter")


@pytest.fixture()
def wav(tmp_path):
    p = tmp_path / "speech.wav"
    sf.write(p, (0.3 * np.sin(np.arange(44100 * 4) * 0.05)).astype(np.float32), 44100, subtype="PCM_16")
    return p


def replay(packets, address, stop_after=None):
    """Send captured packets at their own 60 fps timing (the real gap stays a gap in time too)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    f0 = decode_packet(packets[0]).frame.frame_number
    t0 = time.perf_counter()
    sent = 0
    for p in packets[:stop_after]:
        due = t0 + (decode_packet(p).frame.frame_number - f0) / 60
        while (w := due - time.perf_counter()) > 0:
            time.sleep(min(w, 0.005))
        s.sendto(p, address)
        sent += 1
    s.close()
    return sent


def test_loopback_take_keeps_every_frame(packets, wav, tmp_path, monkeypatch):
    out = tmp_path / "records"
    rx = LiveLinkReceiver("127.0.0.1", 0)
    src = recorder.FileAudioSource(wav)
    result = {}
    recording = threading.Event()
    monkeypatch.setattr(recorder, "STAGE_HOOK", lambda stage: stage == "recording" and recording.set())
    th = threading.Thread(target=lambda: result.update(r=recorder.record_take(src, rx, 3.6, out, say=lambda m: None)))
    th.start()
    assert recording.wait(30), "the take never started recording"
    time.sleep(0.2)  # not a wait for anything: the first frames then arrive 0.2 s into the audio (checked below)
    # a few packets the recorder must count, not keep: header-only and garbage
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(packets[0][: len(packets[0]) - 245], rx.address)  # header-only
    s.sendto(b"\x05junk", rx.address)
    replay(packets, rx.address)
    th.join(10)
    rx.close()
    r = result["r"]
    assert not r.interrupted and r.error is None
    files = {p.suffix for p in out.iterdir()}
    assert files == {".wav", ".npy", ".json"}
    take = load_take(r.stem)
    expected = [decode_packet(p).frame for p in packets]
    assert take.num_frames == 180
    assert take.frame_numbers.tolist() == [f.frame_number for f in expected]
    np.testing.assert_array_equal(take.frames, np.stack([f.values for f in expected]))
    assert take.gaps() == [(5, 7)]
    meta = json.loads(r.stem.with_suffix(".json").read_text())
    assert meta["dropped_frames"] == 7 and meta["gaps"] == [[5, 7]]
    assert meta["packets"]["header_only"] == 1 and meta["packets"]["invalid"] == 1
    assert meta["packets"]["invalid_reasons"] == {"bad version": 1}
    assert meta["device_id"] == "DEADC0DE-1337-1337-1337-CAFEBABE" and meta["subject"] == "LLV Default Device"
    assert meta["rate"] == [60, 1] and meta["audio"]["sample_rate"] == 44100
    audio, sr = sf.read(r.stem.with_suffix(".wav"))
    assert sr == 44100 and len(audio) == int(3.6 * 44100)
    # arrival times are on the audio's axis: increasing, within the take, ~1/60 s apart (the gap ~8/60)
    t = np.asarray(meta["frame_times"])
    assert 0.1 < t[0] < 1.0 and np.all(np.diff(t) > 0) and t[-1] < 3.6
    assert np.median(np.diff(t)) == pytest.approx(1 / 60, abs=0.004)


def test_sigint_mid_take_leaves_valid_files(packets, wav, tmp_path, repo_root):
    port = free_port("udp")
    out = tmp_path / "rec"
    proc = subprocess.Popen(
        [sys.executable, str(repo_root / "motion" / "record.py"), "--host", "127.0.0.1", "--port", str(port),
         "--audio-file", str(wav), "--seconds", "30", "--out-dir", str(out)],
        cwd=tmp_path, env=checkout_env(), stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 60
        line = ""
        while "listening" not in line and time.time() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "record.py exited early"
        time.sleep(0.3)
        sent = replay(packets, ("127.0.0.1", port), stop_after=60)
        time.sleep(0.4)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    assert "interrupted: saved what was captured" in rest
    jsons = list(out.glob("*.json"))
    assert len(jsons) == 1 and not list(out.glob("*.part"))
    take = load_take(jsons[0])
    assert take.num_frames == sent and take.meta["interrupted"] is True
    assert take.audio is not None and 0.5 < take.audio_duration_s < 10


def test_import_app_take_cli(livelink_ref, wav, tmp_path):
    out = tmp_path / "rec"
    assert record.main(["--import", str(livelink_ref / "llf_take_excerpt.csv"), "--audio", str(wav), "--out-dir", str(out)]) == 0
    t = load_take(out / "llf_take_excerpt")
    assert t.num_frames == 600 and t.audio is not None and t.meta["source"] == "Live Link Face app"
    # importing again never overwrites
    assert record.main(["--import", str(livelink_ref / "llf_take_excerpt.csv"), "--out-dir", str(out)]) == 0
    assert (out / "llf_take_excerpt-2.npy").exists()


def test_no_input_device_is_a_clear_error(monkeypatch, tmp_path, capsys):
    class FakeSD:
        class PortAudioError(Exception):
            pass

        @staticmethod
        def query_devices(device=None, kind=None):
            raise ValueError("No input device matching")

    monkeypatch.setattr(recorder, "_sounddevice", lambda: FakeSD)
    with LiveLinkReceiver("127.0.0.1", 0) as rx:
        port = rx.address[1]
    rc = record.main(["--host", "127.0.0.1", "--port", str(port), "--seconds", "1", "--out-dir", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "no audio input device" in err and "--audio-file" in err
    assert not list(tmp_path.iterdir())


def test_port_in_use_and_no_packet_hint(tmp_path, wav):
    with LiveLinkReceiver("127.0.0.1", 0) as rx:
        with pytest.raises(recorder.PortInUseError, match="--port"):
            LiveLinkReceiver("127.0.0.1", rx.address[1])
    hint = recorder.no_packet_hint(("0.0.0.0", 11111))
    assert "Targets" in hint and "firewall" in hint and "11111" in hint


def test_several_takes_never_overwrite(wav, tmp_path):
    out = tmp_path / "rec"
    port = free_port("udp")
    rc = record.main(["--audio-file", str(wav), "--seconds", "0.4", "--takes", "2", "--countdown", "0.1",
                      "--host", "127.0.0.1", "--port", str(port), "--out-dir", str(out)])
    assert rc == 0
    stems = sorted(p.stem for p in out.glob("*.json"))
    assert len(stems) == 2 and len(list(out.glob("*.wav"))) == 2
    for s in stems:
        t = load_take(out / s)
        assert t.num_frames == 0 and t.audio_duration_s == pytest.approx(0.4, abs=0.01)


def test_error_mid_take_saves_what_was_captured(wav, tmp_path, packets):
    class FailingSource(recorder.FileAudioSource):
        def _push(self, block, t):
            super()._push(block, t)
            if self.seconds() > 0.5:
                self.error = OSError("input overflow: device unplugged")

    with LiveLinkReceiver("127.0.0.1", 0) as rx:
        th = threading.Thread(target=replay, args=(packets, rx.address, 20))
        th.start()
        r = recorder.record_take(FailingSource(wav), rx, 5.0, tmp_path, say=lambda m: None)
        th.join()
    assert isinstance(r.error, OSError) and r.stem is not None
    t = load_take(r.stem)
    assert t.meta["interrupted"] is True and 0.5 < t.audio_duration_s < 1.5 and t.num_frames > 0
    assert "interrupted: saved" in recorder.describe(r)
