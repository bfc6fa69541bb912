"""Speech → face: the one API every caller uses (web UI, ``wav_to_visemes.py``, the server).

:class:`FaceMaker` picks the best source it has, in this order:

1. a trained **z head** (``V_*.pth``) on the synthesiser's z (or, for plain audio, on z from the voice's posterior
   encoder);
2. a trained **mel head** on the audio;
3. the **shipped default mel head** (``motion/face/assets/default_mel_head.pth``) on the audio;
4. **rule-based lip-sync** from the phone timings of a synthesis result (``use_default_head=False``, or when the
   default head is missing).

Every result covers the audio exactly (``ceil(duration * fps)`` frames at frame centres) and goes through the same
post-processing (:mod:`motion.face.postprocess`), so the same audio and head always give the same curves. With
``alive`` (default on) the face also blinks, raises its brows, nods and moves its head and eyes
(:mod:`motion.face.alive`, deterministic given ``seed``) in the channels the source leaves flat.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from motion.constants import FACE_FPS, FEATURE_FPS, TTS_SAMPLE_RATE
from motion.frames import num_frames_for, resample_curves

log = logging.getLogger(__name__)

__all__ = ["FaceError", "FaceMaker", "FaceResult", "PostOptions", "release_memory", "rule_based_face"]


#: clips longer than this give their freed memory back after the head ran (shorter ones free too little to matter)
_RELEASE_AFTER_S = 20.0


def release_memory() -> None:
    """Give the memory a finished request freed back to the system.

    torch frees a long clip's feature and activation blocks to glibc's malloc, which keeps the pages in its arenas
    (the web UI stayed at ~1.15 GB after 150 requests); a garbage collection and ``malloc_trim(0)`` return them.
    Nothing is cached here; elsewhere than glibc only the collection runs."""
    import gc

    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """``malloc_trim(0)``: glibc gives the free pages of its heap back to the system (cheap; no garbage collection)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        pass


class FaceError(ValueError):
    """A face cannot be made from what was given; the message says what is missing."""


@dataclass
class FaceResult:
    frames: np.ndarray  # [T, 61] at fps, Live Link wire order, post-processed
    fps: float
    source: str  # which method made it, in words


@dataclass(frozen=True)
class PostOptions:
    """Post-processing applied to every face (see :func:`motion.face.postprocess.postprocess`)."""

    blink: bool = True
    mirror: bool = False
    zero_rotations: bool = False
    delay_s: float = 0.0  # shift the curves later (positive) or earlier (negative) than the audio
    alive: bool = False  # the alive layer (motion.face.alive) was applied
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"blink": self.blink, "mirror": self.mirror, "zero_rotations": self.zero_rotations,
                "delay_s": self.delay_s, "alive": self.alive, "seed": self.seed}


def rule_based_face(result: Any, fps: float = FACE_FPS) -> np.ndarray:
    """Lip-sync from a synthesis result's phones and durations (per language run, so each uses its phone table)."""
    from motion.face.lipsync import render, segments_from_phones

    d = np.asarray(result.durations, dtype=np.float64)
    ends = np.cumsum(d)
    starts = ends - d
    segs = []
    i = 0
    while i < len(result.phones):  # runs of one phone language
        j = i
        while j < len(result.phones) and result.phone_langs[j] == result.phone_langs[i]:
            j += 1
        segs += segments_from_phones(result.phones[i:j], starts[i:j], ends[i:j], result.phone_langs[i])
        i = j
    return render(segs, num_frames_for(result.duration_s, fps), fps, seal_pauses=True)


def _to_tts_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1)
    if int(sample_rate) != TTS_SAMPLE_RATE and a.size:
        import soxr

        a = soxr.resample(a, int(sample_rate), TTS_SAMPLE_RATE, quality="HQ").astype(np.float32)
    return a


@dataclass
class FaceMaker:
    """Makes faces for synthesis results and for any audio (see the module docstring for the order of sources).

    ``head_path``: a trained ``V_*.pth``; a z head reads audio only through a posterior encoder (``g_checkpoint`` +
    ``config``, an exported ``posterior`` ``post_enc.pth``, or one passed to :meth:`for_audio`).
    """

    head_path: str | os.PathLike | None = None
    fps: float = FACE_FPS
    blink: bool = True
    use_default_head: bool = True
    mirror: bool = False
    zero_rotations: bool = False
    delay_s: float = 0.0
    g_checkpoint: str | os.PathLike | None = None
    config: str | os.PathLike | None = None
    posterior: str | os.PathLike | None = None
    speaker: str | int | None = None
    alive: bool = True  # blinks at pauses, brows/nods on accents, idle head/eye motion (motion.face.alive)
    seed: int = 0  # makes the alive layer's motion reproducible
    # the face of a synthesis result: "auto" (a trained z head reads z; a trained mel head reads the audio; else the
    # phones), "phones" (lip-sync rules from the phones and their times: every /p b m/ sealed, ready before the audio
    # is decoded) or "audio" (the default mel head on the audio, as for any recording)
    result_source: str = "auto"
    # an emotion on every face (motion.face.emotion): None, a name ("joy", "joy:0.7") or {name: weight 0..1}, scaled
    # by emotion_intensity (0..2); lips still close on /p b m/ and JawOpen still follows the speech
    emotion: Any = None
    emotion_intensity: float = 1.0
    # faces the shipped default head reads from audio get their lips sealed where a phone recogniser (PocketSphinx,
    # when installed) hears /p b m/ and the head's lips are nearly closed already (motion.face.bilabials): the head
    # alone misses about half the closures of engines it never heard
    bilabial_finder: bool = True
    model: Any = field(default=None, repr=False)  # motion.face.model.ExpressionModel of head_path
    _default: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        import math

        if not (math.isfinite(float(self.fps)) and 0 < float(self.fps) <= 1000):
            raise FaceError(f"fps must be a number in (0, 1000], got {self.fps!r}")
        if not math.isfinite(float(self.delay_s)) or abs(float(self.delay_s)) > 10:
            raise FaceError(f"the delay must be within ±10 s, got {self.delay_s!r} s")
        self.fps = float(self.fps)
        from motion.face.emotion import EmotionError, emotion_vector

        try:
            emotion_vector(self.emotion, self.emotion_intensity)  # a bad emotion is refused here, in one line
        except EmotionError as e:
            raise FaceError(str(e)) from None
        self.head_path = Path(self.head_path) if self.head_path else None
        if self.head_path is not None and self.model is None:
            from motion.face.model import ExpressionModel

            self.model = ExpressionModel.load(self.head_path, g_checkpoint=self.g_checkpoint, config=self.config,
                                              posterior=self.posterior, speaker=self.speaker)

    # --- what is used -------------------------------------------------------------------------------------------

    @property
    def head_kind(self) -> str | None:
        return self.model.kind if self.model is not None else None

    @property
    def post(self) -> PostOptions:
        return PostOptions(self.blink, self.mirror, self.zero_rotations, self.delay_s, self.alive, int(self.seed))

    def default_model(self) -> Any:
        """The shipped default mel head (loaded once), or None when disabled or missing."""
        if not self.use_default_head:
            return None
        if self._default is None:
            from motion.face.model import DEFAULT_HEAD, ExpressionModel

            if not DEFAULT_HEAD.is_file():
                log.warning("%s is missing: faces fall back to rule-based lip-sync", DEFAULT_HEAD)
                self.use_default_head = False
                return None
            self._default = ExpressionModel.load(DEFAULT_HEAD)
        return self._default

    def describe(self) -> str:
        if self.model is not None:
            return f"trained {self.head_kind} head {self.head_path}"
        if self.use_default_head:
            return ("the shipped default mel head (a lip-sync bootstrap; pass --head V_*.pth for a head trained on "
                    "your takes)")
        return "rule-based lip-sync from phone timings (no head; pass --head V_*.pth)"

    # --- faces --------------------------------------------------------------------------------------------------

    def _finish(self, frames: np.ndarray, src_fps: float, duration_s: float, source: str,
                audio: np.ndarray | None = None, sample_rate: int = TTS_SAMPLE_RATE, trained: bool = False,
                start_s: float = 0.0, result: Any = None, bilabials: list | None = None) -> FaceResult:
        """Resample to the output grid, add the alive layer (a trained head keeps the groups it predicts; the default
        head and the rules predict none), delay, post-process, add the emotion (last, so it is the same on every
        source and a timeline applied later to emotion-free frames gives the same face)."""
        from motion.face.postprocess import postprocess, shift_frames

        n = num_frames_for(duration_s, self.fps)
        if src_fps != self.fps or len(frames) != n:
            frames = resample_curves(frames, src_fps, self.fps, n)
        if bilabials:
            from motion.face.bilabials import seal_bilabials

            frames = seal_bilabials(frames, self.fps, bilabials)
        if self.alive:
            from motion.face.alive import AliveOptions, make_alive

            track = None
            if audio is None and result is not None:  # a face made before the audio: pauses from the phones
                from motion.face.alive import phone_track

                track = phone_track(result.phones, result.durations, n, self.fps)
            frames = make_alive(frames, self.fps, audio, sample_rate, AliveOptions(seed=int(self.seed), blinks=self.blink),
                                keep=None if trained else set(), start_s=start_s, track=track)
        frames = shift_frames(frames, self.delay_s, self.fps)
        frames = postprocess(frames, self.fps, blink=self.blink and not self.alive, do_mirror=self.mirror,
                             zero_rotations=self.zero_rotations)
        if self.emotion:  # read here, so an emotion set on a shared maker later applies too
            from motion.face.emotion import EmotionError, apply_emotion, emotion_vector

            try:
                weights = emotion_vector(self.emotion, self.emotion_intensity)
            except EmotionError as e:
                raise FaceError(str(e)) from None
            frames = apply_emotion(frames, weights)
        return FaceResult(frames, self.fps, source)

    def _predict(self, model: Any, features: np.ndarray) -> np.ndarray:
        from motion.face.heads import predict

        with self._lock:  # heads are shared between request threads
            return predict(model.head, features, fps=FEATURE_FPS, num_frames=features.shape[1])

    def _mel_raw(self, model: Any, audio44: np.ndarray) -> np.ndarray:
        feats = model.features(audio44)
        if len(audio44) > _RELEASE_AFTER_S * TTS_SAMPLE_RATE:
            release_memory()  # the STFT blocks of a long clip, before the head's blocks are allocated
        return self._predict(model, feats)

    @property
    def result_face(self) -> str:
        """What the face of a synthesis result is made from: ``z``, ``audio`` or ``phones`` (see ``result_source``)."""
        if self.result_source not in ("auto", "phones", "audio"):
            raise FaceError(f"result_source must be auto, phones or audio, got {self.result_source!r}")
        if self.result_source != "auto":
            return self.result_source
        return {"z": "z", "mel": "audio"}.get(self.head_kind or "", "phones")

    @property
    def result_needs_audio(self) -> bool:
        """Whether a synthesis result's face waits for its audio (a mel head); otherwise a stream sends each chunk's
        frames with the chunk (the face is made from the piece's phones or z before its audio is decoded)."""
        return self.result_face == "audio"

    def describe_result(self) -> str:
        """What the face of a synthesis result is made from (the ``source`` its faces carry)."""
        how = self.result_face
        if how == "z" and self.model is not None:
            return f"trained z head ({self.head_path.name})"
        if how == "audio" and self._mel_model() is not None:
            return self._mel_model()[1]
        return "rule-based lip-sync from phone durations"

    def for_result(self, result: Any, start_s: float = 0.0) -> FaceResult:
        """The face of a synthesis result (``bert_vits2.synthesis.SynthesisResult`` or the demo voice's), aligned with
        its audio; pauses between pieces stay neutral for head-made faces. ``start_s``: where this result starts in a
        stream made piece by piece (the alive layer's idle motion and blinks follow the stream's clock)."""
        t0 = time.perf_counter()
        z = getattr(result, "z", None)
        how = self.result_face
        if how == "phones" or (how == "audio" and result.audio is None):
            face = self._finish(rule_based_face(result, self.fps), self.fps, result.duration_s,
                                "rule-based lip-sync from phone durations", None, result.sample_rate, start_s=start_s,
                                result=result)
        elif self.head_kind == "z" and z is not None and z.shape[0] == int(self.model.head.config["in_channels"]):
            raw = np.zeros((z.shape[1], self._num_values()), dtype=np.float32)
            for piece in result.pieces or [{"start_s": 0.0, "end_s": result.duration_s}]:
                a, b = int(round(piece["start_s"] * result.z_fps)), int(round(piece["end_s"] * result.z_fps))
                if b > a:
                    raw[a:b] = self._predict(self.model, z[:, a:b])
            # the alive layer reads the phones here too, so a face made from z before the audio (a stream) is the
            # same as the finished result's
            face = self._finish(raw, result.z_fps, result.duration_s, f"trained z head ({self.head_path.name})",
                                None, result.sample_rate, trained=True, start_s=start_s, result=result)
        else:
            mel = self._mel_model()
            if mel is not None:
                model, label = mel
                audio44 = _to_tts_rate(result.audio, result.sample_rate)
                raw = self._mel_raw(model, audio44)
                # the recogniser's model is English: a result known to be Chinese/Japanese only does without it
                # (on Japanese it added false closures and no bilabials the head had missed)
                langs = set(getattr(result, "phone_langs", None) or ())
                heard = (self._bilabials(model, audio44, TTS_SAMPLE_RATE)
                         if not langs or langs - {"zh", "ja"} else None)
                face = self._finish(raw, FEATURE_FPS, result.duration_s, label, result.audio, result.sample_rate,
                                    trained=model is self.model, start_s=start_s, bilabials=heard)
            else:
                face = self._finish(rule_based_face(result, self.fps), self.fps, result.duration_s,
                                    "rule-based lip-sync from phone durations", result.audio, result.sample_rate,
                                    start_s=start_s)
        if isinstance(getattr(result, "timings", None), dict):
            result.timings["face"] = time.perf_counter() - t0
        return face

    def for_audio(self, audio: np.ndarray, sample_rate: int, posterior: Any = None, start_s: float = 0.0) -> FaceResult:
        """A face for any audio (mono or ``[N, C]``, any rate): z head (with a posterior encoder) > trained mel head >
        the default head. ``posterior``: a ``motion.face.features.PosteriorEncoder`` for a z head. ``start_s``: where
        this audio starts in a stream made segment by segment (see :meth:`for_result`)."""
        audio44 = _to_tts_rate(audio, sample_rate)
        duration = len(audio44) / float(TTS_SAMPLE_RATE)
        if self.head_kind == "z":
            enc = posterior if posterior is not None else self.model.posterior
            if enc is not None:
                if enc.out_channels != int(self.model.head.config["in_channels"]):
                    raise FaceError(f"{self.head_path}: the z head reads {self.model.head.config['in_channels']} "
                                    f"channels but the posterior encoder gives {enc.out_channels}; use the G "
                                    "checkpoint the head was trained on")
                feats = enc.encode(audio44)
                if duration > _RELEASE_AFTER_S:
                    release_memory()
                raw = self._predict(self.model, feats)
                if duration > _RELEASE_AFTER_S:
                    release_memory()
                return self._finish(raw, FEATURE_FPS, duration,
                                    f"trained z head on the voice's posterior encoder ({self.head_path.name})", audio44,
                                    trained=True, start_s=start_s)
        mel = self._mel_model()
        if mel is None:
            if self.head_kind == "z":
                raise FaceError("this is a z head: it needs the voice's posterior encoder to read audio (give the G "
                                "checkpoint + config, or an exported post_enc.pth)")
            raise FaceError("no head to read audio with: the default head is switched off and no --head was given")
        model, label = mel
        raw = self._mel_raw(model, audio44)
        if duration > _RELEASE_AFTER_S:
            release_memory()  # the feature and activation blocks of a long clip
        return self._finish(raw, FEATURE_FPS, duration, label, audio44, trained=model is self.model, start_s=start_s,
                            bilabials=self._bilabials(model, audio44, TTS_SAMPLE_RATE))

    def for_audio_blocks(self, blocks: Iterable[np.ndarray], posterior: Any = None,
                         start_s: float = 0.0) -> FaceResult:
        """The face of mono 44.1 kHz audio handed over block by block (a long upload as it is read, see
        ``motion.face.features.iter_tts_audio``): the same face as :meth:`for_audio` on the joined blocks, without the
        audio ever held whole when a mel head reads it (its log-mel is made block by block, the alive layer reads an
        8 kHz copy made as a stream, which equals the one-shot resampling it would make). A z head joins the blocks
        first (its posterior encoder reads the whole clip)."""
        mel = None if self.head_kind == "z" else self._mel_model()
        if mel is None:  # a z head (or no head: for_audio says why)
            return self.for_audio(np.concatenate([np.asarray(b, np.float32).reshape(-1) for b in blocks] or
                                                 [np.zeros(0, np.float32)]), TTS_SAMPLE_RATE, posterior, start_s)
        import soxr

        from motion.face.alive import _ANALYSIS_SR
        from motion.face.features import LogMelBlocks

        model, label = mel
        feats = LogMelBlocks(int(model.head.config["n_mels"]))
        slow = soxr.ResampleStream(TTS_SAMPLE_RATE, _ANALYSIS_SR, 1, dtype="float32", quality="LQ") if self.alive else None
        finder = to16k = None
        with contextlib.ExitStack() as stack:
            if self._finds_bilabials(model):  # the recogniser hears the blocks as they come (16 kHz, a stream too)
                from motion.face.bilabials import borrowed_finder

                finder = stack.enter_context(borrowed_finder())
                to16k = soxr.ResampleStream(TTS_SAMPLE_RATE, 16000, 1, dtype="float32")
            return self._blocks_face(blocks, model, label, feats, slow, finder, to16k, start_s)

    def _blocks_face(self, blocks: Iterable[np.ndarray], model: Any, label: str, feats: Any, slow: Any, finder: Any,
                     to16k: Any, start_s: float) -> FaceResult:
        """:meth:`for_audio_blocks`' work once its readers exist (the log-mel blocks, the alive layer's 8 kHz stream,
        the bilabial finder and its 16 kHz stream, each None when unused)."""
        from motion.face.alive import _ANALYSIS_SR

        parts, n, trimmed = [], 0, 0
        for block in blocks:
            block = np.asarray(block, dtype=np.float32).reshape(-1)
            n += len(block)
            feats.push(block)
            if finder is not None:
                finder.push(to16k.resample_chunk(block))
            if slow is not None:
                parts.append(slow.resample_chunk(block))
            if n - trimmed > _RELEASE_AFTER_S * TTS_SAMPLE_RATE:  # the freed STFT blocks, now and then (a long
                trim_heap()  # upload's reading otherwise leaves them scattered: +110 MiB over 10 minutes)
                trimmed = n
        if slow is not None:
            parts.append(slow.resample_chunk(np.zeros(0, np.float32), last=True))
        analysis = np.concatenate(parts) if parts else None
        del parts
        duration = n / float(TTS_SAMPLE_RATE)
        if duration > _RELEASE_AFTER_S:
            release_memory()  # before the head's blocks are allocated
        raw = self._predict(model, feats.finish())
        if duration > _RELEASE_AFTER_S:
            release_memory()  # the feature and activation blocks of a long clip
        bilabials = None
        if finder is not None:
            finder.push(to16k.resample_chunk(np.zeros(0, np.float32), last=True))
            bilabials = finder.finish()
        return self._finish(raw, FEATURE_FPS, duration, label, analysis, _ANALYSIS_SR, trained=model is self.model,
                            start_s=start_s, bilabials=bilabials)

    def for_file(self, path: str | os.PathLike) -> tuple[FaceResult, np.ndarray]:
        """Read any audio/video file (mono 44.1 kHz) and make its face; returns ``(face, audio)``."""
        from bert_vits2.audio import load_audio

        audio, _ = load_audio(path, TTS_SAMPLE_RATE)
        return self.for_audio(audio, TTS_SAMPLE_RATE), audio

    def _finds_bilabials(self, model: Any) -> bool:
        """Whether a face the mel head ``model`` reads gets the phone recogniser's lip seals: the default head only
        (a head trained on your takes knows your voice), when ``bilabial_finder`` is on and PocketSphinx is installed."""
        if not self.bilabial_finder or model is self.model:
            return False
        from motion.face.bilabials import available

        if available():
            return True
        if not getattr(FaceMaker, "_warned_no_finder", False):
            FaceMaker._warned_no_finder = True
            log.warning("pocketsphinx is not installed: the default head's lip closures are not checked by a phone "
                        "recogniser (pip install pocketsphinx)")
        return False

    def _bilabials(self, model: Any, audio: np.ndarray, sample_rate: int) -> list | None:
        if not self._finds_bilabials(model):
            return None
        from motion.face.bilabials import find_bilabials

        return find_bilabials(audio, sample_rate)

    def _mel_model(self) -> tuple[Any, str] | None:
        if self.head_kind == "mel":
            return self.model, f"trained mel head ({self.head_path.name})"
        default = self.default_model()
        if default is not None:
            return default, "shipped default mel head (lip-sync bootstrap)"
        return None

    @staticmethod
    def _num_values() -> int:
        from motion.arkit import NUM_VALUES

        return NUM_VALUES
