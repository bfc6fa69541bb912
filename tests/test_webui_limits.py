"""Web UI reliability (issue 13): limits refused at the door, bounded queue, old request folders cleaned up, the Send
tab's port check and status refresh, streaming without a sound device, and the `_working` step before each request."""

from __future__ import annotations

import os
import socket
import sys
import time
import types

import numpy as np
import pytest
import soundfile as sf

from motion.webui.limits import Janitor, LimitError, RequestLimits, check_text, check_upload


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from motion.webui.app import WebUIConfig, build_app

    root = tmp_path_factory.mktemp("ui")
    cfg = WebUIConfig(model_dir=str(root / "none"), bert_dir=str(root / "none"), outputs_dir=str(root / "out"),
                      max_chars=50, max_upload_mb=0.5, max_audio_s=2.0, queue_size=3, concurrency=1,
                      keep_outputs_s=600.0)
    return build_app(cfg)


def _gr_error():
    import gradio as gr

    return gr.Error


def _tts(h, text, style=""):
    from motion.webui.app import DEMO_LABEL

    return h.tts(DEMO_LABEL, text, None, "EN", 0.2, 0.6, 0.8, 1.0, style, 0.7, False, False, 0.5, 0.2)


def test_text_limit_is_refused_before_any_work(app):
    h, state = app.webui_handlers, app.webui_state
    before = set(state.outputs.iterdir())
    with pytest.raises(_gr_error(), match=r"2000\d? characters|20000 characters") as exc:
        _tts(h, "字" * 20000)
    assert "--max-chars" in str(exc.value) and "limit is 50" in str(exc.value)
    with pytest.raises(_gr_error(), match="the style text"):
        _tts(h, "hello", style="x" * 51)
    assert set(state.outputs.iterdir()) == before  # nothing was synthesised or written


def test_upload_size_and_audio_length_limits(app, tmp_path):
    h = app.webui_handlers
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(44100 * 3, np.float32), 44100)  # 3 s > 2 s
    with pytest.raises(_gr_error(), match="--max-audio-s"):
        h.audio_to_face(str(long), None)
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(44100 * 1, np.float32), 44100, subtype="FLOAT")  # 176 kB
    big.write_bytes(big.read_bytes() + b"\0" * 600_000)  # > 0.5 MB
    with pytest.raises(_gr_error(), match="--max-upload-mb"):
        h.audio_to_face(str(big), None)
    with pytest.raises(_gr_error(), match="--max-upload-mb"):
        h.take(str(big), str(big), 60)


def test_limit_helpers_say_which_option():
    lim = RequestLimits(max_chars=3, max_upload_mb=1, max_audio_s=1)
    check_text("abc", lim)
    with pytest.raises(LimitError, match="4 characters; the limit is 3"):
        check_text("abcd", lim)
    with pytest.raises(LimitError, match="cannot be read"):
        check_upload("/nonexistent/x.wav", lim)


def test_queue_is_bounded(app):
    assert app._queue.max_size == 3
    assert app._queue.default_concurrency_limit == 1
    assert app.delete_cache == (150, 600)  # gradio's own cached copies go too


def test_janitor_removes_only_old_request_folders(tmp_path):
    from motion.face.outputs import new_request_dir

    now = [1_000_000.0]
    old, fresh = new_request_dir(tmp_path), new_request_dir(tmp_path)
    (old / "x.wav").write_bytes(b"x")
    keep = tmp_path / "my-notes"
    keep.mkdir()
    os.utime(old, (now[0] - 700, now[0] - 700))
    os.utime(fresh, (now[0] - 10, now[0] - 10))
    os.utime(keep, (now[0] - 10**6, now[0] - 10**6))
    j = Janitor(tmp_path, keep_s=600, every_s=60, clock=lambda: now[0])
    assert j.maybe_sweep() == [old]
    assert not old.exists() and fresh.exists() and keep.exists()
    now[0] += 30
    os.utime(fresh, (now[0] - 601, now[0] - 601))
    assert j.maybe_sweep() == []  # at most every 60 s
    now[0] += 31
    assert j.maybe_sweep() == [fresh]
    assert Janitor(tmp_path, keep_s=0).sweep() == []  # 0 keeps everything


def test_requests_run_the_janitor(app):
    from motion.face.outputs import new_request_dir

    state, h = app.webui_state, app.webui_handlers
    stale = new_request_dir(state.outputs)
    os.utime(stale, (time.time() - 10_000, time.time() - 10_000))
    state.janitor._last = -float("inf")
    with pytest.raises(_gr_error()):
        h.audio_to_face("", None)  # refused before the sweep: nothing happens
    assert stale.exists()
    with pytest.raises(_gr_error()):
        _tts(h, "x" * 51)
    assert not stale.exists()


def test_send_refuses_bad_ports_and_gone_results(app, tmp_path):
    h = app.webui_handlers
    last = {"npy": str(tmp_path / "gone.npy"), "wav": str(tmp_path / "gone.wav"), "fps": 60.0, "sr": 44100}
    for port, msg in ((70000, "out of range"), (0, "out of range"), ("abc", "not a number"), (None, "not a number")):
        with pytest.raises(_gr_error(), match=msg):
            h.send("livelink", last, "127.0.0.1", port, False)
    with pytest.raises(_gr_error(), match="files are gone"):
        h.send("livelink", last, "127.0.0.1", 11111, False)
    with pytest.raises(_gr_error(), match="nothing to send"):
        h.send("livelink", None, "127.0.0.1", 11111, False)


class _NoDevice(Exception):
    pass


def _no_sound_device() -> types.ModuleType:
    """A stand-in for sounddevice on a machine without an output device (what PortAudio says there)."""
    sd = types.ModuleType("sounddevice")
    sd.PortAudioError = _NoDevice

    def output_stream(*a, **k):
        raise _NoDevice("Error querying device -1")

    sd.OutputStream = output_stream
    return sd


@pytest.mark.parametrize("target", ["livelink", "vmc"])
def test_send_with_audio_and_no_sound_device_still_sends(target, monkeypatch):
    from motion.send import Streamer

    monkeypatch.setitem(sys.modules, "sounddevice", _no_sound_device())
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5.0)
    frames = np.full((12, 61), 0.3, np.float32)
    s = Streamer()
    msg = s.start(target, frames, 120.0, np.zeros(4410, np.float32), 44100, "127.0.0.1", rx.getsockname()[1],
                  with_audio=True)
    assert msg.startswith("streaming 12 frames")
    got = 0
    try:
        while got < 12:
            rx.recv(65535)
            got += 1
    finally:
        s.wait(5)
        rx.close()
    assert got == 12
    assert s.last_message.startswith("done: sent 12 frames") and "without sound" in s.last_message


def test_streaming_errors_reach_the_send_status(app):
    h, state = app.webui_handlers, app.webui_state
    state.streamer.start("livelink", np.zeros((5, 3), np.float32), 60.0, None, 44100, "127.0.0.1", 9, with_audio=False)
    state.streamer.wait(5)
    assert h.send_status().startswith("streaming failed:")
    # the Send tab polls it (a timer) and offers a refresh button
    ticks = [f for f in app.fns.values() if getattr(f.fn, "__name__", "") == "send_status"]
    assert {ev for f in ticks for _, ev in f.targets} == {"tick", "click"}
    assert all(f.outputs[0].elem_id == "send-status" for f in ticks)


def test_each_request_first_clears_the_previous_result(app):
    """A failing request must not leave the previous result's status on screen as current: the click first runs
    `_working` on the same outputs, then the handler (`.then`), so a failure leaves '*working…*', not old text."""
    from motion.webui.app import _working

    fns = app.fns
    for handler, status_id in (("tts", "tts-status"), ("audio_to_face", "a2f-status")):
        dep = next(f for f in fns.values() if getattr(f.fn, "__name__", "") == handler)
        before = fns[dep.trigger_after]
        assert before.fn is _working and [t[1] for t in dep.targets] == ["then"]
        assert [c._id for c in before.outputs] == [c._id for c in dep.outputs[:4]]
        assert before.outputs[3].elem_id == status_id
        assert not dep.trigger_only_on_success  # runs (and can fail) after the clearing step
    assert _working() == (None, None, None, "*working…*")


def test_a_failing_take_preview_first_clears_the_previous_take(app, tmp_path):
    """Preview a take tab: like the other tabs, the click first clears the face (`_clear_preview`), then runs the
    handler (`.then`), so a second, failing take (bad npy here) shows its error with no stale face of the first."""
    from motion.arkit import NUM_VALUES
    from motion.webui.app import _clear_preview

    h, fns = app.webui_handlers, app.fns
    sf.write(tmp_path / "take.wav", np.zeros(44100, np.float32), 44100)
    np.save(tmp_path / "good.npy", np.zeros((60, NUM_VALUES), np.float32))
    np.save(tmp_path / "bad.npy", np.zeros((60, 7), np.float32))  # not [T, 61]
    shown, _ = h.take(str(tmp_path / "take.wav"), str(tmp_path / "good.npy"), 60)
    assert "bvf-preview" in shown
    with pytest.raises(_gr_error(), match="could not read this take"):  # shown as the other tabs show errors
        h.take(str(tmp_path / "take.wav"), str(tmp_path / "bad.npy"), 60)

    dep = next(f for f in fns.values() if getattr(f.fn, "__name__", "") == "take")
    assert dep.trigger_after is not None, "the take runs without clearing the previous take's face first"
    before = fns[dep.trigger_after]
    assert before.fn is _clear_preview and [t[1] for t in dep.targets] == ["then"]
    assert [c._id for c in before.outputs] == [dep.outputs[0]._id] and before.outputs[0].elem_id == "take-preview"
    assert not dep.trigger_only_on_success and not before.queue  # cleared at once; the take runs (and can fail) after
    assert "bvf-preview" not in _clear_preview() and "working…" in _clear_preview()


def test_webui_options_reach_the_config(monkeypatch, tmp_path):
    import webui
    from motion.webui import app as app_mod

    seen = {}

    class Stop(Exception):
        pass

    def fake_build_app(cfg):
        seen["cfg"] = cfg
        raise Stop

    monkeypatch.setattr(app_mod, "build_app", fake_build_app)
    with pytest.raises(Stop):
        webui.main(["--max-chars", "100", "--max-upload-mb", "5", "--max-audio-s", "30", "--queue-size", "4",
                    "--concurrency", "2", "--keep-outputs", "120", "--outputs", str(tmp_path)])
    cfg = seen["cfg"]
    assert (cfg.max_chars, cfg.max_upload_mb, cfg.max_audio_s, cfg.queue_size, cfg.concurrency, cfg.keep_outputs_s) == (
        100, 5.0, 30.0, 4, 2, 120.0)
    for bad in (["--max-chars", "0"], ["--max-upload-mb", "nan"], ["--queue-size", "-1"], ["--port", "70000"]):
        with pytest.raises(SystemExit) as exc:
            webui.build_parser().parse_args(bad)
        assert exc.value.code == 2
