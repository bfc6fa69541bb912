"""Release checkpoints: what upstream's ``compress_model.py`` writes and many published voices ship as.

A release file is a generator checkpoint in upstream layout ``{"model", "iteration", "optimizer", "learning_rate"}``
with every ``enc_q`` key removed (the posterior encoder is only used in training and for z extraction from audio),
the tensors kept as fp32 or cast to fp16 (``--half``), a fresh AdamW state of the full generator, ``iteration`` 0 and
``learning_rate`` 0.0001. Default output name: ``G_8000.pth`` -> ``G_8000_release.pth`` (``G_8000_release_half.pth``
with ``--half``). :func:`bert_vits2.checkpoint.load_model_for_inference` loads such files for synthesis.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from bert_vits2.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    check_model_version,
    read_checkpoint,
)
from bert_vits2.hparams import load_hparams

__all__ = ["RELEASE_LEARNING_RATE", "release_output_path", "make_release_checkpoint"]

logger = logging.getLogger(__name__)

RELEASE_LEARNING_RATE = 0.0001  # what upstream's compress_model.py stores


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
    from bert_vits2 import models

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
