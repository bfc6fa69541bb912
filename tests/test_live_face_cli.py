"""``motion/live_face.py``: a wav played as if live -> Live Link packets at 60 fps within the stated latency, a take on
disk, Ctrl-C keeps the take, and every user error (no microphone, an unreachable port, no output) is one line.

The latency of a frame is measured here, not by the tool: the arrival time of its UDP packet at a local socket minus
the time its centre's audio was "captured" (the file source's start ``t0``, same process and clock, + the centre).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import checkout_env

from bert_vits2.audio import load_audio, write_wav_pcm16
from motion.arkit import INDEX, NAMES
from motion.livelink.app_csv import read_csv
from motion.livelink.protocol import decode_packet

FPS = 60
#: the median frame leaves at most SLACK_S after its audio (plus the head's lookahead) arrived: one 10 ms file block,
#: compute and scheduling; 95 % within SLACK95_S (the test shares 2 cores with other work: load averages of 10 seen)
SLACK_S, SLACK95_S = 0.05, 0.12


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> tuple[Path, float]:
    """eSpeak speech with 0.8 s of silence before, between and after (22.05 kHz mono)."""
    from motion.espeak_tts import synthesize

    a, sr, _ = synthesize("Hello there, how are you today?", voice="en-us")
    z = np.zeros(int(0.8 * sr), np.float32)
    path = tmp_path_factory.mktemp("live") / "speech.wav"
    write_wav_pcm16(path, np.concatenate([z, a, z, a, z]), sr)
    return path, (3 * len(z) + 2 * len(a)) / sr


class _Udp:
    """A local UDP receiver that stamps every packet's arrival (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.got: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.got.append((time.perf_counter(), data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _overloaded() -> bool:
    """More runnable work than twice the cores (other test runs on a shared machine): a real-time path then gets less
    than real time, and a latency measured meanwhile says nothing about the code."""
    return os.getloadavg()[0] > 2 * (os.cpu_count() or 1)


def _parse(argv: list[str]):
    from motion.live_face import build_parser

    return build_parser().parse_args(argv)


@pytest.mark.slow
def test_wav_sends_livelink_at_60fps_within_the_stated_latency(speech_wav, tmp_path):
    from motion.face.live_run import run_live

    wav, duration = speech_wav
    n = int(np.ceil(duration * FPS - 1e-9))
    for attempt in range(2):  # measured again once only when the machine is overloaded (see _overloaded)
        out = tmp_path / f"take{attempt}"
        rx = _Udp()
        try:
            report = run_live(_parse(["--wav", str(wav), "--livelink", f"127.0.0.1:{rx.port}", "--out", str(out)]))
            time.sleep(0.1)
        finally:
            rx.close()
        assert report.lookahead_s <= 0.10 and report.t0 is not None
        packets = [(t, decode_packet(d)) for t, d in rx.got if d]  # (the empty datagram is the reachability probe)
        assert all(p.ok for _, p in packets)
        numbers = [p.frame.frame_number for _, p in packets]
        assert numbers == list(range(n)), "every frame of the 60 fps grid, once, in order"
        arrival = np.array([t for t, _ in packets])
        centre = report.t0 + (np.arange(n) + 0.5) / FPS
        # the frames sent while the audio played (the last lookahead's frames follow close(), at the end)
        live = centre + report.lookahead_s <= report.t0 + duration
        latency = arrival[live] - centre[live]
        assert latency.min() > 0, "a frame before the audio at its centre was captured"
        p50, p95 = np.percentile(latency, [50, 95])
        print(f"\nlive_face.py --wav (22.05 kHz, 10 ms blocks in real time) -> UDP: latency p50 {1000 * p50:.0f} ms, "
              f"p95 {1000 * p95:.0f} ms, max {1000 * latency.max():.0f} ms (lookahead {1000 * report.lookahead_s:.0f} "
              f"ms; load average {os.getloadavg()[0]:.1f})")
        ok = p50 <= report.lookahead_s + SLACK_S and p95 <= report.lookahead_s + SLACK95_S
        if ok or not _overloaded():
            break
    assert ok, (p50, p95)
    rate = (live.sum() - 1) / (arrival[live][-1] - arrival[live][0])
    assert 57 <= rate <= 63
    steps = np.diff(arrival[live])
    assert np.percentile(steps, 95) < 0.05, "frames go out steadily, not in bursts"
    # the take: wav + npy + app CSV + JSON, one stem
    stem = report.take
    audio, sr = load_audio(stem.with_suffix(".wav"), sample_rate=None)
    src, _ = load_audio(wav, sample_rate=None)
    assert sr == 22050 and len(audio) == len(src) and np.abs(audio - src).max() < 2e-4
    frames = np.load(stem.with_suffix(".npy"))
    assert frames.shape == (n, len(NAMES))
    sent = np.stack([p.frame.values for _, p in packets])
    assert np.abs(sent - frames).max() < 1e-6, "the take holds what was sent"
    csv_frames, csv_fps = read_csv(stem.with_suffix(".csv"))
    assert csv_fps == FPS and csv_frames.shape == frames.shape
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["num_frames"] == n and meta["interrupted"] is False and meta["latency_ms"]["p95"] > 0
    # the mouth moves with the speech and rests in the silences
    jaw, t = frames[:, INDEX["JawOpen"]], (np.arange(n) + 0.5) / FPS
    silent = (t > 0.25) & (t < 0.6)
    assert jaw[silent].max() < 0.1 and jaw.max() > 0.2


@pytest.mark.slow
def test_no_realtime_runs_faster_than_real_time_with_the_same_frames(speech_wav, tmp_path):
    from motion.face.live_run import run_live

    wav, duration = speech_wav
    t = time.perf_counter()
    report = run_live(_parse(["--wav", str(wav), "--no-realtime", "--out", str(tmp_path)]))
    assert time.perf_counter() - t < duration
    assert report.frames == int(np.ceil(duration * FPS - 1e-9)) and report.latencies == []
    assert np.load(report.take.with_suffix(".npy")).shape == (report.frames, len(NAMES))


def _run(repo_root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(repo_root / "motion" / "live_face.py"), *args], capture_output=True,
                          text=True, timeout=timeout, env=checkout_env())


def _one_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("live_face.py: "), proc.stderr
    assert "Traceback" not in proc.stderr and all(w in lines[0] for w in words), lines[0]


@pytest.mark.slow  # ~10 s on 2 cores
def test_user_errors_are_one_line(repo_root, speech_wav, tmp_path):
    wav, _ = speech_wav
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the kernel refuses at once
    _one_line(_run(repo_root, "--wav", str(wav), "--livelink", f"127.0.0.1:{port}"), "--livelink", "refused")
    _one_line(_run(repo_root, "--wav", str(wav), "--vmc", "no-such-host.invalid:39539"), "--vmc", "unknown host")
    _one_line(_run(repo_root, "--wav", str(wav)), "--livelink", "--out")
    _one_line(_run(repo_root, "--wav", str(tmp_path / "missing.wav"), "--out", str(tmp_path)), "missing.wav")
    _one_line(_run(repo_root, "--device", "no-such-microphone-here", "--out", str(tmp_path)), "--wav")
    assert not list(tmp_path.iterdir()), "nothing written on an error"


def test_listed_as_a_tool_and_answers_help(repo_root):
    proc = subprocess.run([sys.executable, "-m", "motion"], capture_output=True, text=True, timeout=60,
                          env=checkout_env(), cwd=repo_root)
    assert "live_face" in proc.stdout
    h = _run(repo_root, "--help")
    assert h.returncode == 0 and "--livelink" in h.stdout and "--no-realtime" in h.stdout
    text = (repo_root / "pyproject.toml").read_text()
    assert 'bv2-live-face = "motion.live_face:main"' in text


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_the_take(repo_root, speech_wav, tmp_path):
    """SIGINT while the file plays: exit 130, and the take holds the audio captured so far and its whole face."""
    wav, duration = speech_wav
    long = tmp_path / "long.wav"
    audio, sr = load_audio(wav, sample_rate=None)
    write_wav_pcm16(long, np.tile(audio, 4), sr)
    out = tmp_path / "takes"
    proc = subprocess.Popen([sys.executable, str(repo_root / "motion" / "live_face.py"), "--wav", str(long),
                             "--out", str(out)], stderr=subprocess.PIPE, text=True, env=checkout_env())
    lines: list[str] = []
    try:
        for line in proc.stderr:  # the first status line: a second of audio has streamed
            lines.append(line)
            if line.startswith("live:"):
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(lines) + rest
    assert "Traceback" not in rest
    takes = sorted(out.glob("*.npy"))
    assert len(takes) == 1
    stem = takes[0].with_suffix("")
    got, sr2 = load_audio(stem.with_suffix(".wav"), sample_rate=None)
    assert sr2 == sr and 1.0 < len(got) / sr < 4 * duration - 1.0
    frames = np.load(stem.with_suffix(".npy"))
    assert frames.shape == (int(np.ceil(len(got) / sr * FPS - 1e-9)), len(NAMES))
    assert json.loads(stem.with_suffix(".json").read_text())["interrupted"] is True
    assert stem.with_suffix(".csv").is_file()
    assert not [p for p in out.iterdir() if p.suffix not in (".wav", ".npy", ".csv", ".json")], "no temp files left"


@pytest.mark.slow
def test_vmc_gets_one_bundle_per_frame(speech_wav, tmp_path):
    """``--vmc``: every frame goes out as one OSC bundle (Perfect Sync blendshapes + head/eye bones, then Apply)."""
    from motion.face.live_run import run_live

    wav, _ = speech_wav
    audio, sr = load_audio(wav, sample_rate=None)
    short = tmp_path / "short.wav"
    write_wav_pcm16(short, audio[: int(1.5 * sr)], sr)
    rx = _Udp()
    try:
        report = run_live(_parse(["--wav", str(short), "--vmc", f"127.0.0.1:{rx.port}"]))
        time.sleep(0.1)
    finally:
        rx.close()
    bundles = [d for _, d in rx.got if d]
    assert report.frames == int(np.ceil(1.5 * FPS - 1e-9)) and report.take is None
    assert len(bundles) == report.frames and all(b.startswith(b"#bundle\0") for b in bundles)
    assert all(b"/VMC/Ext/Blend/Val" in b and b"/VMC/Ext/Blend/Apply" in b and b"/VMC/Ext/Bone/Pos" in b
               for b in bundles)


@pytest.mark.slow  # two faces of a 6 s file, as fast as possible
def test_emotion_on_the_live_face_and_a_bad_one_is_one_line(speech_wav, tmp_path, capsys):
    """``--emotion joy:0.7`` (wav_to_visemes.py's syntax): the take smiles over the neutral one, the jaw still
    follows the speech and the JSON says which emotion; a bad value is one usage line, exit 2, nothing written."""
    from motion.live_face import main

    wav, _ = speech_wav
    faces = {}
    for name, extra in (("neutral", []), ("joy", ["--emotion", "joy:0.7"])):
        out = tmp_path / name
        assert main(["--wav", str(wav), "--no-realtime", "--out", str(out), *extra]) == 0
        (stem,) = [p.with_suffix("") for p in out.glob("*.npy")]
        faces[name] = np.load(stem.with_suffix(".npy"))
        meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["emotion"] == {"weights": {"joy": 0.7}, "intensity": 1.0}
    n, j = faces["neutral"], faces["joy"]
    for shape in ("MouthSmileLeft", "MouthSmileRight", "CheekSquintLeft"):
        assert j[:, INDEX[shape]].mean() - n[:, INDEX[shape]].mean() > 0.3, shape
    np.testing.assert_allclose(j[:, INDEX["JawOpen"]], n[:, INDEX["JawOpen"]], atol=1e-6)
    np.testing.assert_allclose(j[:, INDEX["MouthClose"]], n[:, INDEX["MouthClose"]], atol=1e-6)
    capsys.readouterr()
    for bad, words in (("glee", ["unknown emotion 'glee'", "joy"]), ("joy:3", ["from 0 to 1"])):
        with pytest.raises(SystemExit) as exc:
            main(["--wav", str(wav), "--out", str(tmp_path / "bad"), "--emotion", bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and "--emotion" in errors[0] and all(w in errors[0] for w in words), err
        assert "Traceback" not in err
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_a_killed_run_keeps_what_it_captured(repo_root, speech_wav, tmp_path):
    """SIGKILL mid-take (no handler runs, nothing is finished): ``<stem>.partial/`` holds the audio and the frames
    sent so far; record.py's recovery leaves it to live_face.py; ``live_face.py --recover DIR`` writes the take
    files (wav + npy + app CSV + JSON) with the captured audio and the very frames a full run gives for it."""
    wav, duration = speech_wav
    long = tmp_path / "long.wav"
    audio, sr = load_audio(wav, sample_rate=None)
    write_wav_pcm16(long, np.tile(audio, 4), sr)
    src, _ = load_audio(long, sample_rate=None)
    out = tmp_path / "takes"
    proc = subprocess.Popen([sys.executable, str(repo_root / "motion" / "live_face.py"), "--wav", str(long),
                             "--out", str(out)], stderr=subprocess.PIPE, text=True, env=checkout_env())
    try:
        for line in proc.stderr:  # the first status line: a second of audio has streamed
            if line.startswith("live:"):
                break
        time.sleep(1.0)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    (partial,) = out.iterdir()
    assert partial.name.endswith(".partial") and partial.is_dir(), "only the partial take: nothing was finished"
    rec = subprocess.run([sys.executable, str(repo_root / "motion" / "record.py"), "--recover", str(out)],
                         capture_output=True, text=True, timeout=120, env=checkout_env())
    assert rec.returncode == 1 and "live_face" in rec.stderr and partial.is_dir(), rec.stderr
    got = _run(repo_root, "--recover", str(out))
    assert got.returncode == 0 and "recovered an interrupted take" in got.stderr, got.stderr
    assert not partial.exists()
    (stem,) = [p.with_suffix("") for p in out.glob("*.json")]
    kept, sr2 = load_audio(stem.with_suffix(".wav"), sample_rate=None)
    seconds = len(kept) / sr2
    assert sr2 == sr and 1.5 < seconds < 4 * duration - 1.0
    assert np.abs(kept - src[: len(kept)]).max() < 2e-4, "the captured audio, from its start"
    frames = np.load(stem.with_suffix(".npy"))
    assert (seconds - 0.3) * FPS <= len(frames) <= np.ceil(seconds * FPS), (len(frames), seconds)
    whole = _run(repo_root, "--wav", str(long), "--no-realtime", "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    (full,) = (tmp_path / "whole").glob("*.npy")
    np.testing.assert_allclose(frames, np.load(full)[: len(frames)], atol=1e-4)  # chunking: rounding only
    csv_frames, csv_fps = read_csv(stem.with_suffix(".csv"))
    assert csv_fps == FPS and csv_frames.shape == frames.shape
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["interrupted"] is True and meta["recovered"] is True and meta["num_frames"] == len(frames)
    assert meta["latency_ms"]["p50"] > 0 and meta["source"] == "file long.wav"
    assert sorted(p.suffix for p in out.iterdir()) == [".csv", ".json", ".npy", ".wav"]
    again = _run(repo_root, "--recover", str(out))
    assert again.returncode == 0 and "no interrupted live takes" in again.stderr


@pytest.mark.slow  # ~6 s on 2 busy cores (the head loads)
def test_a_partial_take_is_finished_by_the_next_run_and_finishing_is_safe_to_repeat(tmp_path):
    """A run into ``--out DIR`` finishes a take an earlier run left there first; a finish killed after some files
    (no JSON yet) is redone from the partial; a take whose JSON exists is complete (only the folder goes)."""
    from motion.face.live_run import LIVE_TAKE_KIND, LiveTakeWriter, finish_live_take, run_live

    rng = np.random.default_rng(0)
    stem = tmp_path / "2026-01-01-00-00-00"
    w = LiveTakeWriter(stem, 16000, "file x.wav", {"source": "file x.wav", "lookahead_s": 0.08})
    w.set_first_sample_time(100.0)
    w.append_audio([rng.uniform(-0.5, 0.5, 8000).astype(np.float32)])
    face = rng.uniform(0, 1, (25, len(NAMES))).astype(np.float32)
    w.append_face(0, face[:20], 100.4)
    w.append_face(20, face[20:], 100.5)
    w.close()
    assert json.loads((w.dir / "info.json").read_text())["kind"] == LIVE_TAKE_KIND
    stem.with_name(stem.name + ".wav").write_bytes(b"torn")  # a finish killed after its wav
    silent = tmp_path / "silence.wav"
    write_wav_pcm16(silent, np.zeros(1600, np.float32), 16000)
    run_live(_parse(["--wav", str(silent), "--no-realtime", "--out", str(tmp_path)]))
    assert not w.dir.exists()
    np.testing.assert_array_equal(np.load(stem.with_name(stem.name + ".npy")), face)
    assert load_audio(stem.with_name(stem.name + ".wav"), sample_rate=None)[0].shape == (8000,)
    meta = json.loads(stem.with_name(stem.name + ".json").read_text())
    assert meta["recovered"] is True and meta["audio_seconds"] == 0.5 and meta["face_seconds"] == pytest.approx(25 / 60)
    assert 0 < meta["latency_ms"]["p50"] < 500
    assert len(list(tmp_path.glob("*.json"))) == 2, "the earlier take and this run's"
    w.dir.mkdir()
    (w.dir / "info.json").write_text(json.dumps(w.info))
    assert finish_live_take(w.dir) == stem and not w.dir.exists(), "complete already: only the folder goes"
