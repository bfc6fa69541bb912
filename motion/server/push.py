"""Server-side push of a streamed face to Unreal Live Link, a VMC app and/or VTube Studio, timed to the client's
playback.

The face frames arrive as they are synthesised (:meth:`FacePusher.add`); nothing is sent before the client says its
audio started playing (:meth:`FacePusher.playing`, the WebSocket ``{"type": "playing", "offset_ms": ...}`` message).
From then on frame ``k`` is sent at ``t0 + k / fps`` on the server's monotonic clock, where
``t0 = arrival of the message - offset_ms / 1000`` (``offset_ms``: how much audio the client had already played when
it sent the message; add your network latency to it if you know it). A frame that is not synthesised yet when due
is sent as soon as it is; a frame more than ``max_late_s`` late is skipped (counted in ``stats``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from motion.body.vmc import VmcSender, make_clip
from motion.livelink import LiveLinkSender

log = logging.getLogger(__name__)


@dataclass
class PushStats:
    sent: int = 0
    skipped: int = 0
    error: str = ""


def parse_target(text: str, default_port: int) -> tuple[str, int]:
    """``host:port`` / ``host`` / ``port`` -> ``(host, port)`` (host default 127.0.0.1)."""
    text = str(text).strip()
    if not text:
        raise ValueError("empty push target")
    if text.isdigit():
        host, port = "127.0.0.1", int(text)
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = int(p) if p else default_port
    else:
        host, port = text, default_port
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (1-65535)")
    return host or "127.0.0.1", port


class FacePusher(threading.Thread):
    """Sends frames to Live Link (``livelink``), VMC (``vmc``) and/or VTube Studio (``vts``) targets at ``fps`` once
    playback started. VTube Studio is connected and authenticated in the thread (it may wait for the user to allow
    the plugin), so the caller's event loop never blocks; a failure ends up in ``stats.error``."""

    def __init__(self, fps: float, livelink: tuple[str, int] | None = None, vmc: tuple[str, int] | None = None,
                 max_late_s: float = 0.1, vts: tuple[str, int] | None = None) -> None:
        super().__init__(daemon=True, name="bv2-face-push")
        self.fps, self.max_late_s = float(fps), float(max_late_s)
        self._frames: list[np.ndarray] = []
        self._cond = threading.Condition()
        self._t0: float | None = None
        self._done = False
        self._halt = threading.Event()
        self.stats = PushStats()
        self._ll = self._vmc = None
        if livelink:
            self._ll = LiveLinkSender(host=livelink[0], port=int(livelink[1]))
        if vmc:
            self._vmc = VmcSender(vmc[0], int(vmc[1]))
        self._vts_target = vts
        self._vts = None

    def add(self, start: int, frames: np.ndarray) -> None:
        with self._cond:
            if start != len(self._frames):  # frames come in order from one stream
                log.debug("push: frames from %d while %d are buffered", start, len(self._frames))
            self._frames.extend(np.asarray(frames, dtype=np.float32))
            self._cond.notify_all()

    def playing(self, offset_s: float = 0.0) -> None:
        with self._cond:
            self._t0 = time.monotonic() - max(0.0, float(offset_s))
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def stop(self) -> None:
        self._halt.set()
        self.finish()

    def _send(self, k: int, values: np.ndarray) -> None:
        if self._ll is not None:
            self._ll.send(values, k)
        if self._vmc is not None:
            self._vmc.send(make_clip(face=values[None], face_fps=self.fps, fps=self.fps).bundle(0, k / self.fps))
        if self._vts is not None:
            self._vts.send(values)

    def _open_vts(self) -> None:
        from motion.vtube_studio import VtsClient, VtsSender  # optional: needs the websockets package

        host, port = self._vts_target
        self._vts = VtsSender(max_fps=self.fps, client=VtsClient(host, int(port))).open()

    def run(self) -> None:
        k = 0
        try:
            if self._vts_target:
                self._open_vts()
            while not self._halt.is_set():
                with self._cond:
                    while not self._halt.is_set() and (self._t0 is None or k >= len(self._frames)) \
                            and not (self._done and k >= len(self._frames)):
                        self._cond.wait(0.05)
                    if self._halt.is_set() or (self._done and k >= len(self._frames)):
                        return
                    t0, values = self._t0, self._frames[k]
                due = t0 + k / self.fps
                now = time.monotonic()
                if due > now:
                    if self._halt.wait(due - now):
                        return
                elif now - due > self.max_late_s:
                    self.stats.skipped += 1
                    k += 1
                    continue
                self._send(k, values)
                self.stats.sent += 1
                k += 1
        except Exception as err:  # noqa: BLE001 - reported to the client in the end message
            self.stats.error = str(err)
            log.warning("face push failed: %s", err)
        finally:
            if self._ll is not None:
                self._ll.close()
            if self._vmc is not None:
                self._vmc.close()
            if self._vts is not None:
                self._vts.close()


__all__ = ["FacePusher", "PushStats", "parse_target"]
