"""Trained expression heads at inference: loading ``V_*.pth`` (or the shipped default) and running them.

- :func:`load_head_checkpoint`: a head checkpoint → the network in eval mode (weights-only load, clear errors).
- :class:`ExpressionModel`: a head plus, for z heads, the posterior encoder that turns audio into z;
  ``audio_to_frames`` (44.1 kHz audio → raw ``[T, 61]``) and ``z_to_frames``.

Choosing between heads and rules, alignment and post-processing live in :mod:`motion.face.api`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bert_vits2.checkpoint import CheckpointError, read_checkpoint
from bert_vits2.checkpoint_files import latest_checkpoint_path
from motion.constants import TTS_SAMPLE_RATE as TTS_RATE
from motion.face.features import load_exported_posterior, load_posterior_from_checkpoint, log_mel
from motion.face.heads import build_head, predict

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_HEAD = ASSETS / "default_mel_head.pth"


class HeadLoadError(RuntimeError):
    """A head checkpoint that cannot be used; the one-line message names the file and what to do."""


def load_head_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A trained head from ``V_*.pth`` (or the shipped default), in eval mode, and its checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise HeadLoadError(f"{path}: head checkpoint not found (train one with train_ms.py --visemes)")
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as err:
        raise HeadLoadError(str(err)) from None
    if not isinstance(ckpt, dict) or "head_config" not in ckpt or "model" not in ckpt:
        raise HeadLoadError(f"{path}: not an expression-head checkpoint (V_*.pth from train_ms.py --visemes)")
    try:
        model = build_head(ckpt["head_config"])
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise HeadLoadError(f"{path}: the head's weights do not fit its own config ({first}); "
                            "the file is damaged or from another version") from None
    model.eval()
    return model, ckpt


def latest_head_checkpoint(model_dir: str | Path) -> Path | None:
    """The ``V_{epoch}.pth`` with the highest epoch in ``model_dir`` (``V_best.pth`` is not counted), or None."""
    found = latest_checkpoint_path(model_dir, "V_*.pth")
    return Path(found) if found else None


def default_head_path() -> Path:
    """The shipped mel head (trained by ``scripts/train_default_head.py``)."""
    return DEFAULT_HEAD


@dataclass
class ExpressionModel:
    head: torch.nn.Module
    checkpoint: dict[str, Any]
    path: Path
    posterior: Any = None  # motion.face.features.PosteriorEncoder for z heads
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
        path = Path(head) if head is not None else DEFAULT_HEAD
        if head is None and not path.is_file():
            raise FileNotFoundError(f"{path}: the default mel head is missing; run scripts/train_default_head.py")
        model, ckpt = load_head_checkpoint(path)
        enc = None
        if model.config["type"] == "z":
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


__all__ = ["DEFAULT_HEAD", "ExpressionModel", "HeadLoadError", "default_head_path", "latest_head_checkpoint",
           "load_head_checkpoint"]
