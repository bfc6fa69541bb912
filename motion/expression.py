"""Face curves for any speech: the Python API behind ``motion/wav_to_visemes.py`` and the web UI.

- ``ExpressionModel.load(head=None)``: a trained head (``V_*.pth``) or the shipped default mel head; z heads also need
  a posterior encoder (a G checkpoint + config, or an exported ``post_enc.pth``) to turn audio into z.
- ``model.audio_to_frames(audio_44k)``: any speech -> ``[T, 61]`` at the requested fps (raw; post-process with
  ``motion.postprocess.postprocess``).
- ``tts_frames(model, z_list, pauses_s)``: text-synthesis output (one z per sentence, the inverse-flow z that
  ``SynthesizerTrn.infer`` returns, plus the silences the web UI inserts between sentences) -> frames aligned to the
  final concatenated audio.
- ``phones_frames(phone_lists, duration_lists, pauses_s)``: the rule-based lip-sync for the same layout, used when no
  trained head is configured.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from motion.arkit import NUM_VALUES
from motion.heads import FEATURE_FPS, predict

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_HEAD = ASSETS / "default_mel_head.pth"
TTS_RATE = 44100
HOP = 512


def default_head_path() -> Path:
    """The shipped mel head (trained by ``scripts/train_default_head.py``)."""
    return DEFAULT_HEAD


@dataclass
class ExpressionModel:
    head: torch.nn.Module
    checkpoint: dict[str, Any]
    path: Path
    posterior: Any = None  # motion.features.PosteriorEncoder for z heads
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.head.config["type"])

    @property
    def offset_s(self) -> float:
        """The audio->face offset the training labels were corrected by (informational)."""
        return float(self.checkpoint.get("offset_s") or 0.0)

    @classmethod
    def load(
        cls, head: str | Path | None = None, *, g_checkpoint: str | Path | None = None, config: str | Path | None = None,
        posterior: str | Path | None = None, speaker: str | int | None = None,
    ) -> "ExpressionModel":
        """Load a head (default: the shipped mel head); for a z head also its posterior encoder."""
        from motion.train_visemes import load_head_checkpoint

        path = Path(head) if head is not None else DEFAULT_HEAD
        if head is None and not path.is_file():
            raise FileNotFoundError(f"{path}: the default mel head is missing; run scripts/train_default_head.py")
        model, ckpt = load_head_checkpoint(path)
        enc = None
        if model.config["type"] == "z":
            from motion.features import load_exported_posterior, load_posterior_from_checkpoint

            if posterior is not None:
                enc = load_exported_posterior(posterior)
            elif g_checkpoint is not None:
                if config is None:
                    raise ValueError("a G checkpoint needs its config (--config)")
                enc = load_posterior_from_checkpoint(config, g_checkpoint, speaker)
            if enc is not None and enc.out_channels != int(model.config["in_channels"]):
                raise ValueError(f"{path}: the z head reads {model.config['in_channels']} channels but the posterior "
                                 f"encoder gives {enc.out_channels}; use the G checkpoint the head was trained on")
        return cls(model, ckpt, path, enc)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Mono 44.1 kHz audio -> this head's input [C, T] at 86.13 frames/s."""
        if self.kind == "mel":
            from motion.features import log_mel

            return log_mel(audio, int(self.head.config["n_mels"]))
        if self.posterior is None:
            raise ValueError("this is a z head: load it with a G checkpoint (+ config) or an exported post_enc.pth")
        return self.posterior.encode(audio)

    def audio_to_frames(self, audio: np.ndarray, fps: float = 60.0, num_frames: int | None = None) -> np.ndarray:
        """Mono 44.1 kHz audio -> raw curves [T, 61] at ``fps`` covering the whole audio."""
        if num_frames is None:
            num_frames = max(1, int(math.ceil(len(audio) / TTS_RATE * fps - 1e-6)))
        feats = self.features(audio)
        return predict(self.head, feats, fps=fps, num_frames=num_frames)

    def z_to_frames(self, z: np.ndarray, fps: float = 60.0, num_frames: int | None = None) -> np.ndarray:
        """z [C, T] (prior path from ``SynthesizerTrn.infer``) -> [T', 61]; needs a z head."""
        if self.kind != "z":
            raise ValueError("z_to_frames needs a z head; a mel head reads audio (use audio_to_frames)")
        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 3:
            z = z[0]
        return predict(self.head, z, fps=fps, num_frames=num_frames)


def _pause_list(n: int, pauses_s: float | Sequence[float] | None) -> list[float]:
    """Pauses after each segment: ``n-1`` values (between segments) or ``n`` (after each, the last trailing)."""
    if pauses_s is None:
        return [0.0] * n
    if isinstance(pauses_s, (int, float)):
        return [float(pauses_s)] * (n - 1) + [0.0]
    p = [float(v) for v in pauses_s]
    if len(p) == n - 1:
        return p + [0.0]
    if len(p) == n:
        return p
    raise ValueError(f"{n} segments need {n - 1} pauses (between them) or {n} (after each); got {len(p)}")


def place_segments(
    segments: Sequence[np.ndarray], durations_s: Sequence[float], pauses_s: float | Sequence[float] | None,
    src_fps: float, fps: float = 60.0,
) -> np.ndarray:
    """Lay per-segment curves (each ``[T_i, 61]`` at ``src_fps`` covering ``durations_s[i]``) on the timeline of the
    concatenated audio (segment, pause, segment, ...) and sample at ``fps`` frame centres; pauses are neutral (0)."""
    pauses = _pause_list(len(segments), pauses_s)
    total = float(sum(durations_s) + sum(pauses))
    n_out = max(1, int(math.ceil(total * fps - 1e-6)))
    out = np.zeros((n_out, NUM_VALUES), dtype=np.float32)
    centres = (np.arange(n_out) + 0.5) / fps
    start = 0.0
    for seg, dur, pause in zip(segments, durations_s, pauses):
        seg = np.asarray(seg, dtype=np.float32)
        sel = np.nonzero((centres >= start) & (centres < start + dur))[0]
        if len(sel) and len(seg):
            pos = (centres[sel] - start) * src_fps - 0.5
            pos = np.clip(pos, 0, len(seg) - 1)
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, len(seg) - 1)
            w = (pos - lo)[:, None].astype(np.float32)
            out[sel] = seg[lo] * (1 - w) + seg[hi] * w
        start += dur + pause
    return out


def tts_frames(
    model: ExpressionModel, z_list: Sequence[np.ndarray], pauses_s: float | Sequence[float] | None = None,
    fps: float = 60.0, audio_lengths: Sequence[int] | None = None,
) -> np.ndarray:
    """Per-sentence z (``[C, T_i]`` or ``[1, C, T_i]``; sentence audio = ``T_i * 512`` samples unless
    ``audio_lengths`` says otherwise) + pauses between sentences -> ``[T, 61]`` aligned to the final audio."""
    segs, durs = [], []
    for i, z in enumerate(z_list):
        z = np.asarray(z, dtype=np.float32)
        z = z[0] if z.ndim == 3 else z
        segs.append(model.z_to_frames(z, fps=FEATURE_FPS, num_frames=z.shape[-1]))
        n = audio_lengths[i] if audio_lengths is not None else z.shape[-1] * HOP
        durs.append(n / TTS_RATE)
    return place_segments(segs, durs, pauses_s, FEATURE_FPS, fps)


def phones_frames(
    phone_lists: Sequence[Sequence[str]], duration_lists: Sequence[Sequence[float]],
    pauses_s: float | Sequence[float] | None = None, fps: float = 60.0, *, lang: str | Sequence[str] | None = None,
    frame_rate: float | None = None, segment_durations_s: Sequence[float] | None = None,
) -> np.ndarray:
    """Rule-based lip-sync for sentences of phones + durations (seconds, or frames at ``frame_rate``, e.g. Bert-VITS2
    ``w_ceil`` at 44100/512) with the pauses between them -> ``[T, 61]`` aligned to the final audio."""
    from motion.lipsync import lipsync

    langs = list(lang) if isinstance(lang, (list, tuple)) else [lang] * len(phone_lists)
    segs, durs = [], []
    for i, (ph, du) in enumerate(zip(phone_lists, duration_lists)):
        d = np.asarray(du, dtype=np.float64) / (frame_rate or 1.0)
        dur = float(segment_durations_s[i]) if segment_durations_s is not None else float(d.sum())
        n = max(1, int(math.ceil(dur * fps - 1e-6)))
        segs.append(lipsync(list(ph), d, fps, lang=langs[i], num_frames=n))
        durs.append(dur)
    return place_segments(segs, durs, pauses_s, fps, fps)


def speech_frames(
    model: ExpressionModel | None, *, audio: np.ndarray | None = None, z_list: Sequence[np.ndarray] | None = None,
    phone_lists: Sequence[Sequence[str]] | None = None, duration_lists: Sequence[Sequence[float]] | None = None,
    pauses_s: float | Sequence[float] | None = None, fps: float = 60.0, lang: str | Sequence[str] | None = None,
    frame_rate: float | None = 44100 / 512, audio_lengths: Sequence[int] | None = None,
) -> tuple[np.ndarray, str]:
    """The web UI's one call for synthesised speech -> ``(frames [T, 61], source)``.

    A z head uses the sentences' z (``source`` "z head"); a mel head reads the final ``audio`` ("mel head"); with no
    model (or no input the model can use) the rule-based lip-sync reads the phones and durations ("rules")."""
    if model is not None and model.kind == "z" and z_list is not None:
        return tts_frames(model, z_list, pauses_s, fps, audio_lengths), "z head"
    if model is not None and model.kind == "mel" and audio is not None:
        return model.audio_to_frames(np.asarray(audio, dtype=np.float32), fps=fps), "mel head"
    if phone_lists is None or duration_lists is None:
        raise ValueError("no usable input: give z_list for a z head, audio for a mel head, or phones + durations")
    seg = None
    if audio_lengths is not None:
        seg = [n / TTS_RATE for n in audio_lengths]
    return phones_frames(phone_lists, duration_lists, pauses_s, fps, lang=lang, frame_rate=frame_rate,
                         segment_durations_s=seg), "rules"


__all__ = [
    "DEFAULT_HEAD", "ExpressionModel", "default_head_path", "phones_frames", "place_segments", "speech_frames",
    "tts_frames",
]
