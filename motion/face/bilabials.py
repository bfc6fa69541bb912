"""Bilabials heard in the audio: a phone recogniser finds /p b m/, and the default head's lips are sealed there.

Why: the default mel head learned lip closures from eSpeak NG and Kokoro voices; on an engine it never heard (Piper's
joe) it closes the lips on only about half of the bilabials, while its jaw still follows the speech. A phone
recogniser trained on real English speech transfers better: PocketSphinx (``pocketsphinx`` on PyPI, its en-us
acoustic model and phone language model ship inside the wheel; what Rhubarb Lip Sync uses) in phone-loop mode finds
about three quarters of joe's /p b m/, but half of what it calls P/B/M is something else. So its finds only *confirm*
a closure the head already nearly makes: where the head's lip gap (JawOpen - MouthClose) somewhere in a found
segment (or within 30 ms of it) is at most :data:`MAX_GAP` and the lips do not already touch there, they are sealed (MouthClose = JawOpen) over the segment's middle
(:data:`SEAL_HALF_S` each side). The jaw is never moved, so JawOpen's correlation with the speech is unchanged.

Measured (motion/assets/README.md, ``benchmarks/bench_face_quality.py``): Piper joe's closures rise from about half
to over three quarters with closures on open vowels no more frequent than the rule lip-sync's own; Kokoro's unseen
speaker and eSpeak NG voices do not lose closures. Cost: about 0.06-0.09 CPU seconds per second of audio (2-core
Xeon). The model is English: on Japanese it added false closures and found no bilabial the head had missed, so a
synthesis result whose phones are all Chinese/Japanese does without it (``FaceMaker.for_result``); audio of unknown
language (``for_audio``) always gets it. Nothing here runs at import; the decoder is made on first use.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["MAX_GAP", "SEAL_HALF_S", "BilabialFinder", "available", "find_bilabials", "seal_bilabials", "borrowed_finder"]

#: a found segment seals the lips only where the head's lip gap inside it is already at most this (the finder's
#: false finds, about half of them, mostly fall where the head's lips are well apart)
MAX_GAP = 0.2
#: the sealed frames: this many seconds each side of the found segment's centre (or the whole segment if shorter)
SEAL_HALF_S = 0.025
#: the head's gap is read this far (s) around a found span too (the recogniser's times are 10 ms frames, and its
#: segments start and end a few tens of ms off the true ones)
_LOOK_S = 0.03
#: where the head's lips already touch near a find (the closure measure's own limit), its closure is left as it is:
#: sealing 50 ms around the find's centre then only lengthens it into the neighbouring vowels
_ALREADY_CLOSED = 0.02
#: the recogniser's sample rate and its language-model weight (phone loop; 2 found the most of joe's /p b m/ with
#: the same precision as 1-10)
_RATE = 16000
_LW = 2.0
_BLOCK = 4096  # samples per decoder call (256 ms)
_BILABIALS = frozenset({"P", "B", "M"})


def available() -> bool:
    """Whether the recogniser's package is installed (an optional dependency: without it faces are head-only)."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


class BilabialFinder:
    """A PocketSphinx phone-loop decoder fed 16 kHz audio, whole or block by block; :meth:`finish` returns the
    ``(start_s, end_s)`` of every P, B or M it recognised. One utterance at a time (not thread-safe)."""

    def __init__(self) -> None:
        import pocketsphinx

        models = pocketsphinx.get_model_path()
        self._decoder = pocketsphinx.Decoder(hmm=os.path.join(models, "en-us", "en-us"), lm=None,
                                             allphone=os.path.join(models, "en-us", "en-us-phone.lm.bin"),
                                             lw=_LW, loglevel="FATAL")
        self._started = False
        self._pending = np.zeros(0, np.int16)

    def push(self, audio16k: np.ndarray) -> None:
        """Feed mono float audio at 16 kHz (any block size: the decoder always gets the same fixed blocks, so the
        result does not depend on how the audio was cut)."""
        if not self._started:
            self._decoder.reinit_feat()  # fresh feature state (live CMN): a result never depends on the last one
            self._decoder.start_utt()
            self._started = True
        pcm = (np.clip(np.asarray(audio16k, np.float32).reshape(-1), -1.0, 1.0) * 32767).astype(np.int16)
        self._pending = np.concatenate([self._pending, pcm])
        usable = len(self._pending) - len(self._pending) % _BLOCK
        for i in range(0, usable, _BLOCK):
            self._decoder.process_raw(self._pending[i:i + _BLOCK].tobytes(), False, False)
        self._pending = self._pending[usable:]

    def reset(self) -> None:
        """Drop an unfinished utterance (after an error): the next :meth:`push` starts a new one."""
        if self._started:
            self._decoder.end_utt()
            self._started = False
        self._pending = np.zeros(0, np.int16)

    def finish(self) -> list[tuple[float, float]]:
        """End the utterance: the recognised bilabials' spans in seconds from the first sample pushed."""
        if not self._started:
            return []
        if self._pending.size:
            self._decoder.process_raw(self._pending.tobytes(), False, False)
            self._pending = np.zeros(0, np.int16)
        self._decoder.end_utt()
        self._started = False
        return [(s.start_frame / 100.0, (s.end_frame + 1) / 100.0) for s in (self._decoder.seg() or [])
                if s.word in _BILABIALS]


_idle: list[BilabialFinder] = []
_idle_lock = threading.Lock()


@contextmanager
def borrowed_finder() -> Iterator[BilabialFinder]:
    """A finder for one utterance, from a small pool (loading the model takes about 0.13 s, and the server runs each
    request in a thread of its own: a per-thread finder would be made again for every request)."""
    with _idle_lock:
        finder = _idle.pop() if _idle else None
    if finder is None:
        finder = BilabialFinder()
    try:
        yield finder
    finally:
        finder.reset()  # an utterance left open by an error never runs into the next one
        with _idle_lock:
            _idle.append(finder)


def find_bilabials(audio: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` of the /p b m/ that the recogniser hears in mono ``audio``."""
    import soxr

    audio = np.asarray(audio, np.float32).reshape(-1)
    if sample_rate != _RATE:  # the stream resampler, as FaceMaker.for_audio_blocks uses: the same samples
        audio = soxr.ResampleStream(sample_rate, _RATE, 1, dtype="float32").resample_chunk(audio, last=True)
    with borrowed_finder() as finder:
        finder.push(audio)
        return finder.finish()


def seal_bilabials(frames: np.ndarray, fps: float, spans: Iterable[Sequence[float]], max_gap: float = MAX_GAP,
                   half_s: float = SEAL_HALF_S) -> np.ndarray:
    """A copy of ``frames`` [T, 61] with the lips sealed (MouthClose = JawOpen) over ``half_s`` each side of each
    found span's centre, where the lip gap in or within 30 ms of the span is at most ``max_gap`` and above the closure
    limit (the head has not closed them itself); every other value and frame unchanged."""
    from motion.arkit import INDEX

    jaw, close = INDEX["JawOpen"], INDEX["MouthClose"]
    out = np.array(frames, dtype=np.float32, copy=True)
    t = np.arange(len(out)) / float(fps)
    for start, end in spans:
        near = np.nonzero((t >= start - _LOOK_S) & (t <= end + _LOOK_S))[0]
        if not near.size:
            continue
        gap = (out[near, jaw] - out[near, close]).min()
        if gap > max_gap or gap <= _ALREADY_CLOSED:  # lips well apart (a false find), or the head closed them itself
            continue
        mid, half = 0.5 * (start + end), min(0.5 * (end - start), half_s)
        core = np.nonzero((t >= mid - half) & (t <= mid + half))[0]
        if not core.size:  # a span shorter than a frame: its nearest frame
            core = np.array([min(len(out) - 1, int(round(mid * fps)))])
        out[core, close] = out[core, jaw]
    return out
