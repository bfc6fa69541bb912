"""Issue 24 item 1: a second Ctrl-C arriving inside the first one's handler (or inside ``Event.set``) never deadlocks
the recorder; the take stops and is kept."""

from __future__ import annotations

import signal
import threading

import numpy as np
import soundfile as sf

from motion.livelink import LiveLinkReceiver, recorder
from motion.livelink.take import load_take

REENTRIES = 1000


def _reentrant(stop_signals: recorder.StopSignals, calls: list[int]) -> None:
    """Make every place the handler (or the loop's ``event.set``) could be interrupted call the handler again.

    ``Event.set`` holds the event's lock while it notifies; the handler's message write is the handler itself. A
    signal can land at either moment, so both re-enter ``_handle`` (nesting up to 20 deep, 1000 calls in all).
    """
    depth = [0]

    def again() -> None:
        if calls[0] >= REENTRIES or depth[0] >= 20:
            return
        calls[0] += 1
        depth[0] += 1
        try:
            stop_signals._handle(signal.SIGINT, None)
        finally:
            depth[0] -= 1

    cond = stop_signals.event._cond
    real_notify = cond.notify_all

    def notify_all() -> None:  # runs while Event.set holds the lock
        again()
        real_notify()

    cond.notify_all = notify_all
    real_say = stop_signals._say if hasattr(stop_signals, "_say") else None
    if real_say is not None:
        def say(msg: bytes) -> None:
            again()

        stop_signals._say = say


def test_handler_reentered_1000_times_does_not_deadlock():
    ev = threading.Event()
    s = recorder.StopSignals(ev)
    calls = [0]
    _reentrant(s, calls)

    def storm() -> None:
        while calls[0] < REENTRIES:
            calls[0] += 1
            s._handle(signal.SIGINT, None)
            if hasattr(s, "poll"):
                s.poll()

    t = threading.Thread(target=storm, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "deadlock: the signal handler blocked on a lock it re-entered"
    assert calls[0] >= REENTRIES and s.count >= REENTRIES and ev.is_set()


def test_reentrant_signals_stop_the_take_and_keep_it(tmp_path, monkeypatch):
    wav = tmp_path / "speech.wav"
    sf.write(wav, (0.3 * np.sin(np.arange(44100 * 4) * 0.05)).astype(np.float32), 44100, subtype="PCM_16")
    made: list[recorder.StopSignals] = []
    calls = [0]

    class Recorded(recorder.StopSignals):
        def __init__(self, event):
            super().__init__(event)
            made.append(self)
            _reentrant(self, calls)

    def hook(stage: str) -> None:
        if stage == "recording":  # a burst of nested "signals" while the take records
            while calls[0] < REENTRIES:
                calls[0] += 1
                made[0]._handle(signal.SIGINT, None)

    monkeypatch.setattr(recorder, "StopSignals", Recorded)
    monkeypatch.setattr(recorder, "STAGE_HOOK", hook)
    out = tmp_path / "rec"
    result: list = []

    def record() -> None:  # in a thread, so that a deadlock fails the test instead of hanging it
        with LiveLinkReceiver("127.0.0.1", 0) as rx:
            result.append(recorder.record_take(recorder.FileAudioSource(wav), rx, 30.0, out, say=lambda m: None))

    t = threading.Thread(target=record, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "deadlock: the take never stopped after re-entrant signals"
    r = result[0]
    assert calls[0] >= REENTRIES
    assert r.interrupted and r.error is None and r.stem is not None
    assert load_take(r.stem).meta["interrupted"] is True
