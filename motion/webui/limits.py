"""Bounded work for the web UI: per-request limits and the janitor that removes old request folders.

One 20,000-character request once took 2.1 GB of memory, 1.2 GB of disk and blocked every other user for 36 s.
The limits refuse such requests at the door with a message saying which limit and which ``webui.py`` option raises
it; gradio's queue bounds how many wait (``max_size``) and run at once (``default_concurrency_limit``); the
:class:`Janitor` removes per-request output folders older than ``keep_s`` at each request (gradio's own cached
copies of uploads and results are removed by ``gr.Blocks(delete_cache=...)``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

# new_request_dir's names: YYYYmmdd-HHMMSS-<8 hex>; nothing else in the outputs folder is ever removed
REQUEST_DIR = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")


class LimitError(ValueError):
    """A request exceeds a configured limit; the message names the limit and the option that raises it."""


@dataclass(frozen=True)
class RequestLimits:
    max_chars: int = 2000  # characters of text (plus style text) per request
    max_upload_mb: float = 50.0  # size of one uploaded file
    max_audio_s: float = 600.0  # length of uploaded audio / of synthesised speech


def check_text(text: str | None, limits: RequestLimits, what: str = "the text") -> None:
    n = len(text or "")
    if n > limits.max_chars:
        raise LimitError(f"{what} is {n} characters; the limit is {limits.max_chars} per request: split it into "
                         f"several requests (the server's webui.py --max-chars sets the limit)")


def check_upload(path: str | os.PathLike, limits: RequestLimits) -> None:
    """Refuse an uploaded file that is too big, or audio that is too long (read from its header, not decoded)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as err:
        raise LimitError(f"{p.name}: the upload cannot be read ({err.strerror or err}); upload it again") from None
    if size > limits.max_upload_mb * 1e6:
        raise LimitError(f"{p.name} is {size / 1e6:.1f} MB; uploads are limited to {limits.max_upload_mb:g} MB "
                         f"(webui.py --max-upload-mb)")
    try:
        import soundfile as sf

        info = sf.info(str(p))
        seconds = info.frames / info.samplerate if info.samplerate else 0.0
    except Exception:  # noqa: BLE001 - not a soundfile format (mp3 via ffmpeg, video): checked after decoding
        return
    check_audio_seconds(seconds, limits, p.name)


def check_audio_seconds(seconds: float, limits: RequestLimits, what: str = "the audio") -> None:
    if seconds > limits.max_audio_s:
        raise LimitError(f"{what} lasts {seconds:.0f} s; the limit is {limits.max_audio_s:g} s per request "
                         f"(webui.py --max-audio-s)")


class Janitor:
    """Removes request folders under ``root`` that are older than ``keep_s`` (by modification time).

    :meth:`sweep` runs at the start of each request, at most every ``every_s`` seconds; ``clock`` is injectable
    so that tests can age folders without waiting.
    """

    def __init__(self, root: str | os.PathLike, keep_s: float, every_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.keep_s = float(keep_s)
        self.every_s = float(every_s)
        self.clock = clock
        self._last = -float("inf")
        self._lock = threading.Lock()

    def maybe_sweep(self) -> list[Path]:
        now = self.clock()
        with self._lock:
            if now - self._last < self.every_s:
                return []
            self._last = now
        return self.sweep(now)

    def sweep(self, now: float | None = None) -> list[Path]:
        """Remove the request folders older than ``keep_s``; returns them."""
        if self.keep_s <= 0 or not self.root.is_dir():
            return []
        now = self.clock() if now is None else now
        removed = []
        for p in self.root.iterdir():
            if not (p.is_dir() and REQUEST_DIR.match(p.name)):
                continue
            try:
                age = now - p.stat().st_mtime
            except FileNotFoundError:
                continue
            if age > self.keep_s:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        if removed:
            log.info("removed %d request folder(s) older than %g s from %s", len(removed), self.keep_s, self.root)
        return removed


__all__ = ["Janitor", "LimitError", "RequestLimits", "check_audio_seconds", "check_text", "check_upload"]
