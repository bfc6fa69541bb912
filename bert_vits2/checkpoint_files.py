"""Checkpoint folders: step numbers in file names, finding the newest, pruning old ones, and the set of files one
training step writes (``G_``, ``D_``, ``DUR_``, ``WD_``) published complete or not at all.

The format of each file is :mod:`bert_vits2.checkpoint`'s; this module only names, finds, writes and removes files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bert_vits2.checkpoint import upstream_state_dict
from bert_vits2.fileio import atomic_write, remove_stale_temps

__all__ = [
    "CHECKPOINT_PREFIXES",
    "checkpoint_step",
    "latest_checkpoint_path",
    "prune_checkpoints",
    "save_checkpoint_set",
    "complete_checkpoint_steps",
    "remove_stale_checkpoint_temps",
]

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIXES = ("G", "D", "DUR", "WD")  # generator, MPD, duration and WavLM discriminators

_STEP = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The global step in a checkpoint's file name (``G_8000.pth`` -> 8000), None if it has no number."""
    match = _STEP.search(Path(path).name)
    return int(match.group(1)) if match else None


def latest_checkpoint_path(dir_path: str | os.PathLike, pattern: str = "G_*.pth") -> str | None:
    """Path of the checkpoint matching ``pattern`` with the highest step number (numeric, so 10000 > 9000), or None."""
    candidates = [p for p in Path(dir_path).glob(pattern) if p.is_file() and checkpoint_step(p) is not None]
    if not candidates:
        return None
    return str(max(candidates, key=lambda p: (checkpoint_step(p), p.name)))


def prune_checkpoints(
    dir_path: str | os.PathLike, keep: int, sort_by: str = "time", prefixes: tuple[str, ...] = CHECKPOINT_PREFIXES
) -> list[str]:
    """Delete old checkpoints, keeping the newest ``keep`` of each of ``G_``, ``D_``, ``DUR_``, ``WD_``.

    Upstream ``keep_ckpts`` semantics: ``keep <= 0`` keeps everything; the base files ``*_0.pth`` are
    never removed nor counted; "newest" is by modification time (``sort_by="time"``, upstream's
    choice) or by step number (``sort_by="step"``). Unlike upstream, ``D_`` and ``DUR_`` are counted
    separately (upstream's "D" prefix also matched DUR files). ``prefixes`` picks other families (the
    expression head's ``V_``). Returns the removed paths.
    """
    if sort_by not in ("time", "step"):
        raise ValueError(f"sort_by must be 'time' or 'step', got {sort_by!r}")
    if keep <= 0:
        return []
    pattern = re.compile(r"^(%s)_(\d+)\.pth$" % "|".join(map(re.escape, prefixes)))
    groups: dict[str, list[tuple[Path, int]]] = {}
    for entry in Path(dir_path).iterdir():
        match = pattern.match(entry.name)
        if not match or not entry.is_file() or int(match.group(2)) == 0:
            continue
        groups.setdefault(match.group(1), []).append((entry, int(match.group(2))))
    removed = []
    for prefix, files in groups.items():
        if sort_by == "time":
            files.sort(key=lambda item: (item[0].stat().st_mtime, item[1]))
        else:
            files.sort(key=lambda item: item[1])
        for entry, _ in files[:-keep]:
            entry.unlink()
            removed.append(str(entry))
            logger.info("removed old checkpoint %s", entry)
    return sorted(removed)


def _write_checkpoint(obj: Any, f: Any, path: Path) -> None:
    """How one checkpoint's bytes go into ``f``, the temp file of ``path`` (a seam: tests slow it down, fail it or
    signal in the middle of it)."""
    torch.save(obj, f)


def save_checkpoint_set(
    model_dir: str | os.PathLike,
    step: int,
    entries: "dict[str, tuple[nn.Module, torch.optim.Optimizer | None]]",
    learning_rate: float | None,
    iteration: int,
) -> list[Path]:
    """Write ``{prefix}_{step}.pth`` for every ``prefix -> (model, optimizer)`` so the step's set is complete or absent.

    Each file is written and fsync'ed to its own temp file (``.G_8.pth.<random>.tmp``); only when all of them are
    written are they renamed into place, ``G`` last, because resuming starts from ``G_*.pth``. An exception (full
    disk, Ctrl-C) removes every temp file and publishes nothing; a SIGKILL leaves temp files that
    :func:`remove_stale_checkpoint_temps` removes at the next start. Returns the written paths.
    """
    folder = Path(model_dir)
    order = sorted(entries, key=lambda prefix: prefix != "G")  # entered first = renamed last
    paths = []
    with contextlib.ExitStack() as stack:
        for prefix in order:
            model, optimizer = entries[prefix]
            path = folder / f"{prefix}_{step}.pth"
            f = stack.enter_context(atomic_write(path, "wb"))
            state = upstream_state_dict(model)
            _write_checkpoint({"model": state, "iteration": iteration,
                               "optimizer": optimizer.state_dict() if optimizer is not None else None,
                               "learning_rate": learning_rate}, f, path)
            paths.append(path)
    logger.info("saved %s (iteration %s)", ", ".join(p.name for p in paths), iteration)
    return paths


def complete_checkpoint_steps(model_dir: str | os.PathLike, prefixes: tuple[str, ...] = CHECKPOINT_PREFIXES) -> list[int]:
    """Steps (newest first) for which every ``{prefix}_{step}.pth`` of ``prefixes`` exists."""
    folder = Path(model_dir)
    steps = {checkpoint_step(p) for p in folder.glob(f"{prefixes[0]}_*.pth") if p.is_file()}
    steps.discard(None)
    return sorted((s for s in steps if all((folder / f"{prefix}_{s}.pth").is_file() for prefix in prefixes)),
                  reverse=True)


def remove_stale_checkpoint_temps(model_dir: str | os.PathLike, prefixes: tuple[str, ...] = CHECKPOINT_PREFIXES) -> list[Path]:
    """Delete temp files an interrupted checkpoint save left (SIGKILL, power loss); call only when nothing writes there."""
    removed: list[Path] = []
    for prefix in prefixes:
        for path in remove_stale_temps(model_dir, f"{prefix}_"):
            logger.warning("removed %s, left by an interrupted checkpoint save", path)
            removed.append(path)
    return removed
