"""Checkpoints in upstream Bert-VITS2 format: ``{"model", "iteration", "optimizer", "learning_rate"}``.

Files written here load in upstream and vice versa: state-dict keys carry no ``module.`` prefix and
keep the legacy weight-norm names (``weight_g``/``weight_v``). Reading is always
``torch.load(weights_only=True)``, so a checkpoint can never run code; anything that is not a
readable checkpoint raises ``CheckpointError`` with a one-line message naming the file.

Loading follows upstream's forgiving rule for training (fine-tuning the 850-speaker base model on
your own speakers): a key that is missing from the file or has another shape keeps the model's
fresh initialisation and is reported by name. ``strict=True`` (inference) refuses any difference.

One file's format only: folders of checkpoints (steps, newest, pruning, complete sets) are
:mod:`bert_vits2.checkpoint_files`, release files and the posterior-encoder checks :mod:`bert_vits2.release`,
version refusal :mod:`bert_vits2.versions`, and building a model for synthesis :mod:`bert_vits2.inference`.
"""

from __future__ import annotations

import builtins
import codecs
import logging
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from bert_vits2.fileio import atomic_write

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "LoadReport",
    "LoadResult",
    "read_checkpoint",
    "apply_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "atomic_torch_save",
    "upstream_state_dict",
    "unwrap_model",
]

logger = logging.getLogger(__name__)

_MODULE_PREFIX = "module."
_NEW_WN = {".parametrizations.weight.original0": ".weight_g", ".parametrizations.weight.original1": ".weight_v"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the one-line message names the file and the problem."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did with each key (all lists hold state-dict key names)."""

    path: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)  # in the model, not in the file: fresh init kept
    mismatched: list[str] = field(default_factory=list)  # other shape in the file: fresh init kept
    mismatched_shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)  # key -> (file, model)
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model: ignored
    optimizer_loaded: bool = False
    optimizer_note: str = ""  # why the optimizer state was not loaded, if it was not

    @property
    def not_loaded(self) -> list[str]:
        """Model keys that kept their fresh initialisation."""
        return self.missing + self.mismatched

    @property
    def clean(self) -> bool:
        return not (self.missing or self.mismatched or self.unexpected)


class _LoadTuple(NamedTuple):
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    learning_rate: float | None
    iteration: int


class LoadResult(_LoadTuple):
    """``(model, optimizer, learning_rate, iteration)`` like upstream, plus ``.report`` (a ``LoadReport``)."""

    report: LoadReport


# --------------------------------------------------------------------------------------------------
# Reading

def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` names an object in an already-imported module (never imports anything)."""
    module_name, _, attr = dotted.rpartition(".")
    obj: Any = sys.modules.get(module_name) if module_name else builtins
    for part in attr.split(".") if obj is not None else ():
        obj = getattr(obj, part, None)
    return obj is not None


def _describe_load_failure(path: Path, exc: BaseException) -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` failed, from the file's first bytes and the error."""
    message = str(exc)
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return f"{path}: empty file, not a checkpoint (an interrupted save or download?)"
    is_zip = zipfile.is_zipfile(path)
    if head.startswith(b"PK\x03\x04") and not is_zip:
        return f"{path}: truncated checkpoint (the zip archive ends early: an interrupted save or download); save or download it again"
    if is_zip:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            names = []
        if names and not any(n.endswith("data.pkl") for n in names):
            return f"{path}: a zip archive but not a PyTorch checkpoint (no data.pkl inside)"
    elif head[:1] != b"\x80":  # neither zip nor pickle (legacy torch.save format starts with a pickle protocol byte)
        if head.startswith(b"version https://git-lfs"):
            return f"{path}: a Git LFS pointer, not the checkpoint itself; run `git lfs pull` or download the real file"
        try:  # incremental decoder: a multi-byte character cut at byte 64 is not an error
            text = codecs.getincrementaldecoder("utf-8")().decode(head)
        except UnicodeDecodeError:
            text = ""
        if text and all(c.isprintable() or c.isspace() for c in text):
            return f"{path}: a text file, not a PyTorch checkpoint (starts with {text[:24]!r})"
        return f"{path}: not a PyTorch checkpoint (unknown binary data, starts with {head[:8]!r})"
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if unsafe:
        name = unsafe.group(1)
        if _resolves(name):
            return (f"{path}: refused, not a plain-weights checkpoint: unpickling it would call {name} (it could run code); "
                    "only tensors, numbers and strings are accepted (use checkpoints from sources you trust)")
        return (f"{path}: refused, it references the Python object {name!r}, which a plain-weights checkpoint never "
                "contains (a damaged file, or a pickle meant to run code); save or download it again")
    blocked = re.search(r"unsupported GLOBAL ([\w.]+) whose module ([\w.]+) is blocked", message)
    if blocked:  # torch >= 2.13 names a blocked module (os/posix/subprocess/builtins...) this way
        return (f"{path}: refused for safety: the file contains code/objects ({blocked.group(1)}) that a plain-weights "
                "checkpoint never holds, and unpickling it could run code; only tensors, numbers and strings are "
                "accepted (use checkpoints from sources you trust)")
    detail = f"{type(exc).__name__}: {_one_line(message.split('WeightsUnpickler error:')[-1], 80)}"
    fmt = "checkpoint" if is_zip else "legacy-format checkpoint"
    return f"{path}: damaged or truncated {fmt} ({detail}); save or download it again"


_RECORD = re.compile(r"^[^/]+/data/[^/]+$")  # tensor storage records of torch's zip format (``archive/data/0``)
_SIZE_SLACK = 1 << 20  # zip headers, data.pkl and alignment padding


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def _declared_tensor_bytes(obj: Any, seen: set[int]) -> int:
    """Bytes of the distinct storages behind the (meta) tensors in a loaded checkpoint structure."""
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        key = storage._cdata
        if key in seen:
            return 0
        seen.add(key)
        return storage.nbytes()
    if isinstance(obj, dict):
        return sum(_declared_tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_declared_tensor_bytes(v, seen) for v in obj)
    return 0


def _check_declared_sizes(path: Path, max_bytes: int | None) -> None:
    """Refuse a zip checkpoint whose declared tensor sizes cannot be right, before anything is allocated.

    torch stores tensor bytes uncompressed, so a genuine file always holds at least as many bytes as its storage
    records declare. The storage sizes come from the zip's central directory and from the pickle's storage records
    (read with ``map_location="meta"``: shapes only, no data). Non-zip (legacy) files and files torch cannot parse
    are left to ``torch.load``, whose failure is then described.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            records = [info for info in archive.infolist() if _RECORD.match(info.filename)]
    except (zipfile.BadZipFile, OSError, ValueError):
        return
    record_bytes = sum(info.file_size for info in records)
    compressed = any(info.compress_type != zipfile.ZIP_STORED for info in records)
    declared = 0
    try:
        declared = _declared_tensor_bytes(torch.load(path, map_location="meta", weights_only=True), set())
    except Exception:  # noqa: BLE001 - the real load below reports what is wrong with the file
        pass
    claimed, size = max(record_bytes, declared), path.stat().st_size
    if claimed > size + _SIZE_SLACK:
        how = "compressed tensor records, which torch never writes: " if compressed else ""
        raise CheckpointError(f"{path}: refused before loading: it declares {_fmt_bytes(claimed)} of tensor data but "
                              f"the file is only {_fmt_bytes(size)} ({how}a crafted or damaged file); use the original "
                              "checkpoint")
    if max_bytes is not None and claimed > max_bytes:
        raise CheckpointError(f"{path}: refused before loading: it declares {_fmt_bytes(claimed)} of tensor data, more "
                              f"than this model can use ({_fmt_bytes(max_bytes)} with optimizer state); not a "
                              "checkpoint of this model")


def _model_budget(model: nn.Module) -> int:
    """Most tensor bytes a checkpoint of ``model`` can sensibly hold: weights + two AdamW moments + slack."""
    state = unwrap_model(model).state_dict()
    model_bytes = sum(t.numel() * 4 for t in state.values())  # as fp32, whatever the model's dtype now
    return 3 * model_bytes + (64 << 20)


def read_checkpoint(path: str | os.PathLike, *, max_bytes: int | None = None) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``, onto the CPU) and check its layout.

    Keys of ``"model"`` come back without any ``module.`` prefix. Raises ``CheckpointError``.
    Before any tensor is materialised, the sizes the file declares are checked: more tensor data than the file
    holds (compressed records: a "zip bomb") or, with ``max_bytes``, more than the model can use is refused.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise CheckpointNotFoundError(f"checkpoint {path} {what}")
    _check_declared_sizes(path, max_bytes)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear line
        raise CheckpointError(_describe_load_failure(path, exc)) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        kind = f"a dict with keys {sorted(map(str, ckpt))[:6]}" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise CheckpointError(f"{path}: not a Bert-VITS2 checkpoint: expected a dict with a 'model' state dict, found {kind}")
    state = ckpt["model"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: 'model' is not a state dict (found {type(state).__name__}"
                              f"{', empty' if isinstance(state, dict) else ''})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: 'model' holds non-tensor entries, e.g. {bad[0]!r}; not a state dict")
    ckpt = dict(ckpt)
    ckpt["model"] = {_strip_module(k): v for k, v in state.items()}
    return ckpt


def _strip_module(key: str) -> str:
    while key.startswith(_MODULE_PREFIX):
        key = key[len(_MODULE_PREFIX):]
    return key


def _to_legacy_name(key: str) -> str:
    for new, old in _NEW_WN.items():
        if key.endswith(new):
            return key[: -len(new)] + old
    return key


def unwrap_model(model: nn.Module) -> nn.Module:
    """The wrapped network of DistributedDataParallel / DataParallel, else ``model`` itself."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


# --------------------------------------------------------------------------------------------------
# Loading into a model

def _fmt_names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _optimizer_problem(optimizer: torch.optim.Optimizer, saved: Any) -> str:
    """Why ``saved`` cannot go into ``optimizer`` ('' when it can)."""
    if not isinstance(saved, dict) or "param_groups" not in saved or "state" not in saved:
        return "the saved optimizer entry is not an optimizer state dict"
    current = optimizer.state_dict()
    if len(saved["param_groups"]) != len(current["param_groups"]):
        return f"{len(saved['param_groups'])} parameter groups saved, the optimizer has {len(current['param_groups'])}"
    for g_saved, g_now in zip(saved["param_groups"], current["param_groups"]):
        if len(g_saved.get("params", ())) != len(g_now["params"]):
            return f"a parameter group has {len(g_saved.get('params', ()))} parameters saved, {len(g_now['params'])} now"
    # load_state_dict does not compare the moment tensors with the parameters: do it here, otherwise a
    # fine-tuning run with another speaker count would crash at its first step.
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_ids = [i for group in saved["param_groups"] for i in group["params"]]
    for param, sid in zip(params, saved_ids):
        for name, value in saved["state"].get(sid, {}).items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                return f"its '{name}' for a parameter has shape {tuple(value.shape)}, the parameter {tuple(param.shape)}"
    return ""


def apply_checkpoint(
    ckpt: dict[str, Any], path: str, model: nn.Module, optimizer: torch.optim.Optimizer | None,
    strict: bool, skip_optimizer: bool,
) -> LoadResult:
    """Load a checkpoint dict that :func:`read_checkpoint` returned into ``model``; :func:`load_checkpoint` explains.

    For callers that read the file first to decide how to build the model (``bert_vits2.inference``); ``path``
    names the file in messages.
    """
    target = unwrap_model(model)
    saved: dict[str, torch.Tensor] = ckpt["model"]
    # A model built with torch's new parametrized weight norm asks for other names than the file has.
    saved_lookup = {**{_to_legacy_name(k): k for k in saved}, **{k: k for k in saved}}
    current = target.state_dict()
    report = LoadReport(path=path)
    new_state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, value in current.items():
        source = saved_lookup.get(key) or saved_lookup.get(_to_legacy_name(key))
        if source is None:
            report.missing.append(key)
            new_state[key] = value
            continue
        used.add(source)
        tensor = saved[source]
        if tensor.shape != value.shape:
            report.mismatched.append(key)
            report.mismatched_shapes[key] = (tuple(tensor.shape), tuple(value.shape))
            new_state[key] = value
            continue
        new_state[key] = tensor
    report.unexpected = [k for k in saved if k not in used]
    report.loaded = len(current) - len(report.missing) - len(report.mismatched)

    if strict and not report.clean:
        parts = []
        if report.missing:
            parts.append(f"missing {len(report.missing)}: {_fmt_names(report.missing)}")
        if report.mismatched:
            parts.append(f"{len(report.mismatched)} with another shape: " + _fmt_names(
                [f"{k} {report.mismatched_shapes[k][0]} in file vs {report.mismatched_shapes[k][1]} in model"
                 for k in report.mismatched], 4))
        if report.unexpected:
            parts.append(f"unexpected {len(report.unexpected)}: {_fmt_names(report.unexpected)}")
        raise CheckpointError(f"{path}: does not match the model ({'; '.join(parts)}); "
                              "is the config.json the one this checkpoint was trained with?")

    target.load_state_dict(new_state, strict=True)
    for key in report.missing:
        logger.warning("%s is not in the checkpoint %s: keeping its fresh initialisation", key, path)
    for key in report.mismatched:
        file_shape, model_shape = report.mismatched_shapes[key]
        logger.warning("%s has shape %s in the checkpoint %s but %s in the model (e.g. another speaker count): "
                       "keeping its fresh initialisation", key, file_shape, path, model_shape)
    if report.unexpected:
        logger.warning("%d key(s) of %s are not used by the model: %s", len(report.unexpected), path,
                       _fmt_names(report.unexpected))

    saved_optimizer = ckpt.get("optimizer")
    if optimizer is not None:
        if skip_optimizer:
            report.optimizer_note = "skipped (skip_optimizer)"
        elif saved_optimizer is None:
            report.optimizer_note = "the checkpoint has no optimizer state"
        else:
            problem = _optimizer_problem(optimizer, saved_optimizer)
            if problem:
                if strict:
                    raise CheckpointError(f"{path}: optimizer state does not fit the optimizer: {problem}")
                report.optimizer_note = problem
                logger.warning("optimizer state of %s not loaded (%s): starting with a fresh optimizer", path, problem)
            else:
                try:
                    optimizer.load_state_dict(saved_optimizer)
                except (ValueError, KeyError, TypeError, RuntimeError) as exc:
                    if strict:
                        raise CheckpointError(f"{path}: optimizer state does not load: {_one_line(str(exc))}") from None
                    report.optimizer_note = _one_line(str(exc))
                    logger.warning("optimizer state of %s not loaded (%s): starting with a fresh optimizer", path,
                                   report.optimizer_note)
                else:
                    report.optimizer_loaded = True

    learning_rate = ckpt.get("learning_rate")
    iteration = ckpt.get("iteration", 0)
    iteration = int(iteration) if isinstance(iteration, (int, float, torch.Tensor)) and not isinstance(iteration, bool) else 0
    logger.info("loaded %s (iteration %d, %d/%d tensors)", path, iteration, report.loaded, len(current))
    result = LoadResult(model, optimizer, learning_rate, iteration)
    result.report = report
    return result


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    strict: bool = False,
    *,
    skip_optimizer: bool = False,
) -> LoadResult:
    """Load an upstream-format checkpoint into ``model`` (and ``optimizer``); returns ``(model, optimizer, lr, iteration)``.

    ``strict=False`` (training): keys missing from the file or of another shape keep their fresh
    initialisation, are logged as warnings and listed in ``result.report``. ``strict=True``
    (inference): any missing, unexpected or mismatched key raises ``CheckpointError``.
    The optimizer state is loaded when an optimizer is given, the file has one, ``skip_optimizer``
    is false and it fits the optimizer's parameters; otherwise the optimizer is left fresh.
    ``iteration`` is what upstream stores there (the epoch); ``learning_rate`` the config's lr.
    """
    ckpt = read_checkpoint(path, max_bytes=_model_budget(model))
    return apply_checkpoint(ckpt, str(path), model, optimizer, strict, skip_optimizer)


# --------------------------------------------------------------------------------------------------
# Saving

def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`bert_vits2.fileio.atomic_write`: a crash never leaves a half-written file."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def upstream_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict as upstream files hold it: no ``module.`` prefix, legacy ``weight_g``/``weight_v`` names."""
    return {_to_legacy_name(_strip_module(k)): v for k, v in unwrap_model(model).state_dict().items()}


def save_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    learning_rate: float | None,
    iteration: int,
    path: str | os.PathLike,
) -> None:
    """Write ``{"model", "iteration", "optimizer", "learning_rate"}`` atomically (temp file + ``os.replace``).

    A DDP/DataParallel wrapper is unwrapped so keys have no ``module.`` prefix; parametrized weight
    norm is written under the legacy ``weight_g``/``weight_v`` names upstream expects.
    """
    checkpoint = {
        "model": upstream_state_dict(model),
        "iteration": iteration,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "learning_rate": learning_rate,
    }
    atomic_torch_save(checkpoint, Path(path))
    logger.info("saved %s (iteration %s)", path, iteration)
