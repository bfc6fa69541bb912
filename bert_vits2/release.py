"""Release checkpoints: what upstream's ``compress_model.py`` writes and many published voices ship as.

A release file is a generator checkpoint in upstream layout ``{"model", "iteration", "optimizer", "learning_rate"}``
with every ``enc_q`` key removed (the posterior encoder is only used in training and for z extraction from audio),
the tensors kept as fp32 or cast to fp16 (``--half``), a fresh AdamW state of the full generator, ``iteration`` 0 and
``learning_rate`` 0.0001. Default output name: ``G_8000.pth`` -> ``G_8000_release.pth`` (``G_8000_release_half.pth``
with ``--half``). :func:`bert_vits2.inference.load_model_for_inference` loads such files for synthesis.

Recognising that form lives here too: :func:`is_release_state`, :func:`has_posterior_encoder` and
:func:`require_posterior_encoder`, which turns a use that needs ``enc_q`` into one clear line
(``MissingPosteriorEncoderError``) instead of running a randomly initialised encoder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bert_vits2 import models
from bert_vits2.checkpoint import CheckpointError, atomic_torch_save, read_checkpoint, unwrap_model
from bert_vits2.hparams import load_hparams
from bert_vits2.versions import check_model_version

__all__ = [
    "RELEASE_LEARNING_RATE",
    "release_output_path",
    "make_release_checkpoint",
    "MissingPosteriorEncoderError",
    "MissingPosteriorEncoder",
    "is_release_state",
    "has_posterior_encoder",
    "require_posterior_encoder",
]

logger = logging.getLogger(__name__)

RELEASE_LEARNING_RATE = 0.0001  # what upstream's compress_model.py stores


class MissingPosteriorEncoderError(CheckpointError):
    """The generator was loaded from a release checkpoint (``G_*_release.pth``, written by upstream's
    ``compress_model.py``) that has no posterior encoder ``enc_q``: synthesis works, but z extraction from audio,
    ``--export-posterior`` and fine-tuning need the full ``G_*.pth``."""


_POSTERIOR_PREFIX = "enc_q."
_POSTERIOR_USES = "z extraction from audio, --export-posterior and fine-tuning"


class MissingPosteriorEncoder(nn.Module):
    """Stands in for ``enc_q`` when the checkpoint is a release file without it: calling it raises
    ``MissingPosteriorEncoderError`` naming the file, instead of running a randomly initialised encoder."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise MissingPosteriorEncoderError(_missing_posterior_message(self.source, "running the posterior encoder"))


def _missing_posterior_message(source: str, purpose: str) -> str:
    return (f"{source}: a release checkpoint (compress_model.py output) without the posterior encoder enc_q, so "
            f"{purpose} is not possible ({_POSTERIOR_USES} need enc_q); it synthesizes speech, but use the full "
            "G_*.pth it was made from for this")


def is_release_state(state: "dict[str, torch.Tensor]") -> bool:
    """Whether a generator state dict is in release form: it has the text encoder but no ``enc_q.*`` key."""
    return "enc_p.emb.weight" in state and not any(k.startswith(_POSTERIOR_PREFIX) for k in state)


def has_posterior_encoder(model_or_state: "nn.Module | dict[str, torch.Tensor]") -> bool:
    """False for a model loaded from a release checkpoint (or a release state dict); True otherwise."""
    if isinstance(model_or_state, nn.Module):
        enc_q = getattr(unwrap_model(model_or_state), "enc_q", None)
        return enc_q is not None and not isinstance(enc_q, MissingPosteriorEncoder)
    return not is_release_state(model_or_state)


def require_posterior_encoder(model_or_state: "nn.Module | dict[str, torch.Tensor]", purpose: str,
                              source: str | os.PathLike | None = None) -> None:
    """Raise ``MissingPosteriorEncoderError`` (one line: the file, what needs enc_q, what to use) when it is absent.

    Call it before z extraction from audio, exporting the posterior encoder or fine-tuning; ``purpose`` says which.
    """
    if has_posterior_encoder(model_or_state):
        return
    if source is None and isinstance(model_or_state, nn.Module):
        source = getattr(unwrap_model(model_or_state).enc_q, "source", None)
    raise MissingPosteriorEncoderError(_missing_posterior_message(str(source or "this generator"), purpose))


def release_output_path(input_path: str | os.PathLike, half: bool = False) -> Path:
    """Upstream's default output name: ``<stem>_release[_half]<ext>`` beside the input."""
    path = Path(input_path)
    return path.with_name(f"{path.stem}_release{'_half' if half else ''}{path.suffix}")


def _fmt_names(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def make_release_checkpoint(
    config_path: str | os.PathLike,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike | None = None,
    half: bool = False,
) -> Path:
    """Write the release form of a G checkpoint (no ``enc_q``, fresh optimizer, iteration 0); returns its path.

    Unlike upstream, the generator is first checked against ``config_path`` (every non-``enc_q`` key with the
    shape that config builds), so a release file always loads with the config it is shipped with. Raises
    ``CheckpointError`` / ``ConfigError`` with one line.
    """
    input_path = Path(input_path)
    output = Path(output_path) if output_path is not None else release_output_path(input_path, half)
    if output.resolve() == input_path.resolve():
        raise CheckpointError(f"{output}: the output would overwrite the input checkpoint; choose another -o/--output")
    hps = load_hparams(config_path)
    check_model_version(hps, str(config_path))
    ckpt = read_checkpoint(input_path)
    state = ckpt["model"]
    check_model_version(hps, str(input_path), state)
    emb = state.get("enc_p.emb.weight")
    if emb is None or emb.dim() != 2:
        raise CheckpointError(f"{input_path}: no 'enc_p.emb.weight' of shape [n_vocab, hidden]; "
                              "not a Bert-VITS2 generator (G_*.pth) checkpoint")
    t, d = hps.train, hps.data
    with torch.device("meta"):  # shapes and parameter order only: no memory
        net = models.SynthesizerTrn(emb.shape[0], int(d.filter_length) // 2 + 1,
                                    int(t.segment_size) // int(d.hop_length), n_speakers=int(d.n_speakers),
                                    **hps.model)
    wanted = {k: tuple(v.shape) for k, v in net.state_dict().items() if "enc_q" not in k}
    kept = {k: v for k, v in state.items() if "enc_q" not in k}  # upstream's filter: any key naming enc_q
    missing = [k for k in wanted if k not in kept]
    unexpected = [k for k in kept if k not in wanted]
    other = [f"{k} {tuple(kept[k].shape)} in file vs {wanted[k]}" for k in wanted
             if k in kept and tuple(kept[k].shape) != wanted[k]]
    if missing or unexpected or other:
        parts = [f"{label} {len(names)}: {_fmt_names(names)}"
                 for label, names in (("missing", missing), ("unexpected", unexpected), ("other shape", other)) if names]
        raise CheckpointError(f"{input_path}: does not match {config_path} ({'; '.join(parts)}); pass the config.json "
                              "this checkpoint was trained with (-c)")
    if half:
        kept = {k: v.half() if v.is_floating_point() else v for k, v in kept.items()}
    optimizer = torch.optim.AdamW(net.parameters(), float(t.learning_rate), betas=tuple(t.betas), eps=float(t.eps))
    release = {"model": kept, "iteration": 0, "optimizer": optimizer.state_dict(),
               "learning_rate": RELEASE_LEARNING_RATE}
    atomic_torch_save(release, output)
    dropped = len(state) - len(kept)
    logger.info("wrote %s: %d tensors (%s), %d enc_q tensors dropped, %.1f MB -> %.1f MB", output, len(kept),
                "fp16" if half else "fp32", dropped, input_path.stat().st_size / 2**20, output.stat().st_size / 2**20)
    return output
