"""Send a finished clip (face curves + optional audio) to Unreal Live Link or a VMC app in the background.

The web UI's Send tab and the server use :class:`Streamer`; the pacing itself (audio clock, drift-free schedule) is in
:mod:`motion.playback`, the protocols in :mod:`motion.livelink` and :mod:`motion.body.vmc`.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from motion.body.vmc import stream_face
from motion.livelink import LiveLinkSender

log = logging.getLogger(__name__)


class Streamer:
    """Streams one clip at a time in a background thread (a new request stops the previous one)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_message = ""  # the current state: streaming..., done: sent N frames, streaming failed: why

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._thread = None

    def start(self, target: str, frames: np.ndarray, fps: float, audio: np.ndarray | None, sample_rate: int,
              host: str, port: int, with_audio: bool = True) -> str:
        """Start sending to ``target`` ('livelink' or 'vmc'); returns a status line at once."""
        self.stop()
        self._stop = threading.Event()
        stop = self._stop
        if target == "livelink":
            LiveLinkSender(host=host, port=int(port)).close()  # a bad host or port fails here, before the thread

            def run_one(a):
                with LiveLinkSender(host=host, port=int(port)) as sender:  # a fresh socket for each attempt
                    return sender.stream(frames, fps, a, sample_rate if a is not None else None, stop=stop)
        elif target == "vmc":
            def run_one(a):
                return stream_face(frames, fps, host, int(port), audio=a, sample_rate=sample_rate if a is not None else None,
                                   stop=stop)
        else:
            raise ValueError(f"unknown target {target!r}")

        what = "Live Link (Unreal)" if target == "livelink" else "VMC"
        started = f"streaming {len(frames)} frames at {fps:g} fps to {what} {host}:{port}" + (
            " with audio" if with_audio else "")

        def run() -> None:
            note = ""
            try:
                try:
                    stats = run_one(audio if with_audio else None)
                except RuntimeError as err:  # no sound device on this machine: send the face alone
                    if not with_audio or "audio output" not in str(err):
                        raise
                    log.warning("%s; streaming the face without sound", err)
                    note = f" without sound (no audio device: {err})"
                    self.last_message = f"{started}: no audio device ({err}); sending the face without sound"
                    stats = run_one(None)
                sent = getattr(stats, "sent", None)
                done = "stopped" if stop.is_set() else "done"
                self.last_message = f"{done}: sent {sent if sent is not None else len(frames)} frames to {what} " \
                                    f"{host}:{port}{note}"
            except Exception as err:  # noqa: BLE001 - reported in the UI (Send tab status)
                log.error("streaming to %s:%s failed: %s", host, port, err)
                self.last_message = f"streaming failed: {err}"

        self.last_message = started
        self._thread = threading.Thread(target=run, name=f"stream-{target}", daemon=True)
        self._thread.start()
        return started

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = ["Streamer"]
