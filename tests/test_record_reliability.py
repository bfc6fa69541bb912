"""record.py reliability (issue 13): takes streamed to disk while recording, signals during the save, kills,
--recover, the output folder checked first, and packets validated on receipt (ranges, --accept-device/subject)."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import free_port

from motion import record
from motion.livelink import (
    LiveLinkFrame,
    LiveLinkReceiver,
    PacketTally,
    decode_packet,
    encode_packet,
    read_capture,
    recorder,
)
from motion.livelink import take as take_mod
from motion.livelink.partial import FRAME_RECORD, PartialTakeWriter, find_partials, finish_partial, read_partial
from motion.livelink.take import load_take


@pytest.fixture(scope="module")
def packets(livelink_ref):
    return read_capture(livelink_ref / "dao.gesichter")


@pytest.fixture()
def wav(tmp_path):
    p = tmp_path / "speech.wav"
    sf.write(p, (0.3 * np.sin(np.arange(44100 * 4) * 0.05)).astype(np.float32), 44100, subtype="PCM_16")
    return p


def _env(repo_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo_root) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _send(packets, address, n=None):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in packets[:n]:
            s.sendto(p, address)
            time.sleep(0.002)


def _take_files(out: Path) -> list[Path]:
    return sorted(out.glob("*.json"))


class _SignalAfter(recorder.FileAudioSource):
    """Sends SIGINT to this process once ``after_s`` of audio was captured: the first signal at an exact moment."""

    after_s = 0.5

    def _push(self, block, t):
        super()._push(block, t)
        if self.samples >= self.after_s * self.sample_rate and not getattr(self, "_sent", False):
            self._sent = True
            os.kill(os.getpid(), signal.SIGINT)


def test_signals_during_the_save_are_harmless(packets, wav, tmp_path, monkeypatch):
    """SIGINT ends the take; SIGINT, SIGINT, SIGTERM at the start of the save and again between the .npy and the
    .json write (the old 1-in-10 race) change nothing: the whole take is written and loads."""
    out = tmp_path / "rec"
    sent_at: list[str] = []

    def hook(stage):
        if stage == "recording":  # the take is listening: these frames must end up in it
            _send(packets, rx.address, 20)
        if stage == "saving":
            sent_at.append(stage)
            for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
                os.kill(os.getpid(), sig)

    real_write = take_mod._atomic_write_bytes

    def slowed_write(path, data):
        if str(path).endswith(".json"):  # the moment between the frames and the take's JSON
            sent_at.append("before-json")
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
                os.kill(os.getpid(), sig)
            time.sleep(0.05)
        return real_write(path, data)

    monkeypatch.setattr(recorder, "STAGE_HOOK", hook)
    monkeypatch.setattr(take_mod, "_atomic_write_bytes", slowed_write)
    old_int, old_term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with LiveLinkReceiver("127.0.0.1", 0) as rx:
        r = recorder.record_take(_SignalAfter(wav), rx, 30.0, out, say=lambda m: None)
    assert sent_at == ["saving", "before-json"]
    assert r.interrupted and r.error is None and r.stem is not None
    assert signal.getsignal(signal.SIGINT) is old_int and signal.getsignal(signal.SIGTERM) is old_term
    t = load_take(r.stem)
    assert t.meta["interrupted"] is True and 0.4 < t.audio_duration_s < 1.5 and t.num_frames == 20
    assert not find_partials(out) and len(_take_files(out)) == 1


@pytest.mark.parametrize("signals", [(signal.SIGINT, signal.SIGINT, signal.SIGTERM),
                                     (signal.SIGTERM, signal.SIGTERM, signal.SIGINT)], ids=["int-int-term", "term-term-int"])
def test_quick_signals_to_the_recorder_process_keep_the_take(signals, packets, wav, tmp_path, repo_root):
    """Three signals back to back (no pause): the handlers never raise, so there is no window to lose the take in."""
    port = free_port("udp")
    out = tmp_path / "rec"
    proc = subprocess.Popen(
        [sys.executable, str(repo_root / "motion" / "record.py"), "--host", "127.0.0.1", "--port", str(port),
         "--audio-file", str(wav), "--seconds", "30", "--out-dir", str(out)],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=_env(repo_root),
    )
    try:
        _wait_partial_frames(out, proc, 0, packets, port, n_send=30)
        for sig in signals:
            proc.send_signal(sig)
        err = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: saved what was captured" in err
    jsons = _take_files(out)
    assert len(jsons) == 1 and not find_partials(out)
    assert load_take(jsons[0]).num_frames == 30


def _wait_partial_frames(out: Path, proc, _unused, packets, port, n_send: int, timeout: float = 60.0) -> Path:
    """Wait for the recorder to listen, send ``n_send`` packets, and wait until all reached the partial take on disk."""
    deadline = time.time() + timeout

    def audio_arrived() -> bool:  # then the take is recording: packets queued before it (drained) are not sent
        found = find_partials(out)
        return bool(found) and (found[0] / "audio.f32").exists() and (found[0] / "audio.f32").stat().st_size > 0

    while not audio_arrived() and time.time() < deadline:
        assert proc.poll() is None, "record.py exited early"
        time.sleep(0.05)
    _send(packets, ("127.0.0.1", port), n_send)
    partial = find_partials(out)[0]
    while time.time() < deadline:
        f = partial / "frames.bin"
        if f.exists() and f.stat().st_size >= n_send * FRAME_RECORD.itemsize and (partial / "audio.f32").stat().st_size:
            return partial
        time.sleep(0.05)
    raise AssertionError("frames never reached the partial take")


def test_sigkill_mid_take_is_recovered(packets, wav, tmp_path, repo_root, capsys):
    port = free_port("udp")
    out = tmp_path / "rec"
    proc = subprocess.Popen(
        [sys.executable, str(repo_root / "motion" / "record.py"), "--host", "127.0.0.1", "--port", str(port),
         "--audio-file", str(wav), "--seconds", "30", "--out-dir", str(out)],
        cwd=tmp_path, stderr=subprocess.DEVNULL, env=_env(repo_root),
    )
    try:
        partial = _wait_partial_frames(out, proc, 0, packets, port, n_send=40)
        proc.kill()  # SIGKILL: nothing of the recorder runs any more
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not _take_files(out) and partial.is_dir()
    assert record.main(["--recover", str(out)]) == 0
    assert "recovered an interrupted take" in capsys.readouterr().err
    jsons = _take_files(out)
    assert len(jsons) == 1 and not find_partials(out)
    t = load_take(jsons[0])
    expected = [decode_packet(p).frame for p in packets[:40]]
    assert t.num_frames == 40 and t.meta["recovered"] is True and t.meta["interrupted"] is True
    np.testing.assert_array_equal(t.frames, np.stack([f.values for f in expected]))
    assert t.meta["device_id"] == expected[0].device_id and t.audio_duration_s > 0


def _abandoned_partial(out: Path, packets, n: int = 10, torn: bool = False) -> Path:
    """A partial take as a killed recorder leaves it (never closed or finished)."""
    out.mkdir(parents=True, exist_ok=True)
    w = PartialTakeWriter(out / "2020-01-01-00-00-00", 44100, "file:x.wav", "127.0.0.1:1", 5.0)
    w.set_first_sample_time(100.0)
    w.append_audio([np.full(4410, 0.25, np.float32)])
    tally = PacketTally()
    for i, p in enumerate(packets[:n]):
        tally.add(p, 100.1 + i / 60)
    w.append_frames(tally.frames)
    w.write_tally(tally)
    w.flush(force_sync=True)
    if torn:
        with open(w.dir / "frames.bin", "ab") as f:
            f.write(b"\0" * 100)  # half a record: the kill came mid-write
        with open(w.dir / "audio.f32", "ab") as f:
            f.write(b"\0\0")
    return w.dir


def test_next_run_finishes_partial_takes_with_a_message(packets, wav, tmp_path, capsys):
    out = tmp_path / "rec"
    partial = _abandoned_partial(out, packets, torn=True)
    rc = record.main(["--audio-file", str(wav), "--seconds", "0.2", "--host", "127.0.0.1", "--port",
                      str(free_port("udp")), "--out-dir", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "could not finish" in err and "recovered an interrupted take" in err
    assert not partial.exists() and len(_take_files(out)) == 2
    t = load_take(out / "2020-01-01-00-00-00")
    assert t.num_frames == 10 and t.audio_duration_s == pytest.approx(0.1)
    assert t.frame_times[0] == pytest.approx(0.1) and t.meta["packets"]["valid"] == 10


def test_finish_is_repeatable_after_a_kill_during_the_save(packets, tmp_path):
    out = tmp_path / "rec"
    partial = _abandoned_partial(out, packets)
    stem = out / "2020-01-01-00-00-00"
    (out / (stem.name + ".wav")).write_bytes(b"RIFF half a wav")  # a finish killed before its .npy and .json
    got, take = finish_partial(partial)
    assert got == stem and not partial.exists()
    assert load_take(stem).num_frames == 10
    # a finish killed after the JSON but before the folder was removed: only the folder goes
    partial2 = _abandoned_partial(tmp_path / "b", packets, n=3)
    (tmp_path / "b" / "2020-01-01-00-00-00.json").write_text("{}")
    finish_partial(partial2)
    assert not partial2.exists() and (tmp_path / "b" / "2020-01-01-00-00-00.json").read_text() == "{}"


def test_recover_leaves_a_live_recorder_alone(packets, tmp_path, capsys):
    out = tmp_path / "rec"
    partial = _abandoned_partial(out, packets)
    info = json.loads((partial / "info.json").read_text())
    info["pid"] = os.getppid()  # a running process on this host
    (partial / "info.json").write_text(json.dumps(info))
    assert record.main(["--recover", str(out)]) == 1
    assert "still being recorded" in capsys.readouterr().err and partial.is_dir()
    assert read_partial(partial).frames.shape == (10,)


def test_out_dir_problems_are_found_before_recording(wav, tmp_path, capsys):
    a_file = tmp_path / "records"
    a_file.write_text("not a folder")
    t0 = time.monotonic()
    rc = record.main(["--audio-file", str(wav), "--seconds", "3", "--host", "127.0.0.1", "--port", str(free_port("udp")),
                      "--out-dir", str(a_file)])
    assert rc == 1 and time.monotonic() - t0 < 2.5  # said at once, not after a 3 s take
    assert "is a file, not a folder" in capsys.readouterr().err and a_file.read_text() == "not a folder"
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="not writable"):
            recorder.check_out_dir(ro)


def _frame(values, device="PHONE-1", subject="Face", number=1, sub=0.0, num=60, den=1):
    return encode_packet(LiveLinkFrame(device, subject, number, sub, num, den, np.asarray(values, np.float32)))


def test_frames_validated_on_receipt():
    good = np.full(61, 0.5, np.float32)
    spoof = good.copy()
    spoof[17] = 3.4e38
    head = good.copy()
    head[53] = 5.0
    tally = PacketTally()
    for p in (_frame(good), _frame(spoof), _frame(head), _frame(good, sub=7.0), _frame(good, num=0),
              _frame(good, num=10**6)):
        tally.add(p, 0.0)
    assert len(tally.frames) == 1 and tally.invalid == 5
    assert tally.invalid_reasons == {"out of range": 3, "bad rate": 2}
    only = PacketTally(accept_device="PHONE-1", accept_subject="Face")
    for p in (_frame(good), _frame(good, device="EVIL"), _frame(good, subject="Other")):
        only.add(p, 0.0)
    assert len(only.frames) == 1 and only.invalid == 0
    assert only.ignored == 2 and only.ignored_reasons == {"other device": 1, "other subject": 1}
    nan = bytearray(_frame(good))
    struct.pack_into(">f", nan, len(nan) - 4, float("nan"))
    assert tally.add(bytes(nan), 0.0).reason.startswith("bad values")


def test_record_accepts_only_the_configured_subject(packets, wav, tmp_path, monkeypatch):
    out = tmp_path / "rec"
    rx = LiveLinkReceiver("127.0.0.1", 0)
    result = {}
    src = recorder.FileAudioSource(wav)
    recording = threading.Event()  # set once the take records (packets queued before it are drained)
    monkeypatch.setattr(recorder, "STAGE_HOOK", lambda stage: stage == "recording" and recording.set())
    th = threading.Thread(target=lambda: result.update(r=recorder.record_take(
        src, rx, 1.0, out, say=lambda m: None, accept_subject="LLV Default Device")))
    th.start()
    assert recording.wait(30), "the take never started recording"
    bad = np.full(61, 0.5, np.float32)
    bad[0] = 3.4e38
    _send([_frame(np.full(61, 0.9), subject="Intruder"), _frame(bad, subject="LLV Default Device")] + packets[:10],
          rx.address)
    th.join(15)
    rx.close()
    t = load_take(result["r"].stem)
    assert t.num_frames == 10 and np.isfinite(t.frames).all() and t.frames.max() <= 1.0
    p = t.meta["packets"]
    assert p["ignored"] == 1 and p["ignored_reasons"] == {"other subject": 1}
    assert p["invalid"] == 1 and p["invalid_reasons"] == {"out of range": 1}
    assert "1 from other devices/subjects ignored" in recorder.describe(result["r"])


@pytest.mark.parametrize("argv,expected", [
    (["--seconds", "nan"], "--seconds"),
    (["--seconds", "inf"], "--seconds"),
    (["--seconds", "-1"], "--seconds"),
    (["--port", "99999"], "--port"),
    (["--port", "0"], "--port"),
    (["--offset-ms", "nan"], "--offset-ms"),
    (["--takes", "0"], "--takes"),
    (["--sample-rate", "0"], "--sample-rate"),
    (["--countdown", "nan"], "--countdown"),
])
def test_bad_arguments_are_refused_at_the_door(argv, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        record.build_parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_real_packets_pass_the_receipt_checks(packets):
    """No false alarms: every packet of the real iPhone capture is kept (only its header-only ones are not frames)."""
    tally = PacketTally()
    for p in packets:
        tally.add(p, 0.0)
    assert tally.invalid == 0 and tally.ignored == 0
    assert len(tally.frames) + tally.header_only == len(packets) and len(tally.frames) == 180


def test_full_disk_mid_take_keeps_what_reached_it(wav, tmp_path, monkeypatch, capsys):
    """ENOSPC while streaming: recording stops, what reached the disk becomes the take, the error is reported."""
    import errno

    from motion.livelink import partial as partial_mod

    real = partial_mod.PartialTakeWriter.append_audio

    def append_audio(self, blocks):
        if self.samples >= 0.3 * 44100:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, blocks)

    monkeypatch.setattr(partial_mod.PartialTakeWriter, "append_audio", append_audio)
    out = tmp_path / "rec"
    with LiveLinkReceiver("127.0.0.1", 0) as rx:
        r = recorder.record_take(recorder.FileAudioSource(wav), rx, 5.0, out, say=lambda m: None)
    assert isinstance(r.error, OSError) and r.error.errno == errno.ENOSPC
    t = load_take(r.stem)
    assert t.meta["interrupted"] is True and 0.3 <= t.audio_duration_s < 1.0
    assert not find_partials(out)


def test_frames_out_of_range_names_frame_channel_and_value():
    from motion.livelink.protocol import frames_out_of_range

    frames = np.full((4, 61), 0.5, np.float32)
    frames[:, 52:] = -0.5
    assert frames_out_of_range(frames) is None
    frames[2, 17] = 3.4e38
    assert frames_out_of_range(frames) == "out of range: frame 2, weight 17 is 3.4e+38 (expected 0..1); 1 such value(s)"
    frames[2, 17] = 0.5
    frames[1, 55] = -2.0
    assert "frame 1, rotation 55 is -2" in frames_out_of_range(frames)
