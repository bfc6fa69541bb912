"""Hyperparameters: an upstream Bert-VITS2 ``config.json`` with attribute and mapping access.

``load_hparams`` reads every section of the file unchanged, so ``hps.model.hidden_channels``,
``hps.data.spk2id["alice"]`` and ``SynthesizerTrn(..., **hps.model)`` work as they do upstream.
Nothing that decides checkpoint shapes (``model.gin_channels``, ``data.n_speakers``) is ever
defaulted: it must be in the file, because the same network code was released with 256 and 512
speaker-embedding channels and only the checkpoint's own config knows which.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bert_vits2.fileio import write_text_atomic

__all__ = ["HParams", "ConfigError", "ConfigNotFoundError", "load_hparams", "save_hparams", "REQUIRED_SECTIONS"]

# Sections every Bert-VITS2 config.json has, and the keys whose absence would silently build a
# network of the wrong shape.
REQUIRED_SECTIONS = ("train", "data", "model")
_REQUIRED_KEYS = {"data": ("n_speakers",), "model": ("gin_channels",)}


class ConfigError(ValueError):
    """A config.json that cannot be used; the message names the file and what to fix."""


class ConfigNotFoundError(ConfigError, FileNotFoundError):
    """The config file does not exist."""


class HParams(Mapping):
    """A nested, mutable view of a JSON object: ``hps.a.b`` and ``hps["a"]["b"]`` are the same value.

    Nested dicts become ``HParams``; lists and scalars are kept as they are. ``to_dict`` gives back a
    plain ``dict`` (deep copy), which is also what ``save_hparams`` writes.
    Keys that clash with method names (``keys``, ``items``, ...) are reachable with ``[]``.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        object.__setattr__(self, "_data", {})
        for key, value in dict(data or {}, **kwargs).items():
            self[key] = value

    # mapping protocol -------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"HParams keys must be strings, got {type(key).__name__}")
        self._data[key] = _wrap(value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    # attribute access --------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, i.e. for config keys.
        if name == "_data":  # not initialised yet (e.g. during unpickling)
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"no hyperparameter {name!r} (have: {', '.join(self._data) or 'none'})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    # helpers ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A deep plain-``dict`` copy (nested ``HParams`` unwrapped, lists copied)."""
        return {key: _unwrap(value) for key, value in self._data.items()}

    def copy(self) -> "HParams":
        return HParams(self.to_dict())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HParams):
            return self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return self.to_dict() == _unwrap(dict(other))
        return NotImplemented

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"HParams({self.to_dict()!r})"

    def __getstate__(self) -> dict[str, Any]:
        return self.to_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", {})
        for key, value in state.items():
            self[key] = value


def _wrap(value: Any) -> Any:
    if isinstance(value, HParams):
        return value
    if isinstance(value, Mapping):
        return HParams(value)
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, HParams):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_unwrap(v) for v in value]
    return value


# Types of the keys the code does arithmetic with. A wrong type there (``"hop_length": 0``, ``"batch_size": "two"``)
# otherwise surfaces as a ZeroDivisionError or TypeError deep inside training; checked only where the key is present.
_POS_INT, _NONNEG_INT, _INT, _POS_NUM, _NONNEG_NUM, _NUM, _BOOL, _STR = (
    "a positive integer", "a non-negative integer", "an integer", "a positive number", "a non-negative number",
    "a number", "true or false", "a string")
_TYPES: dict[str, dict[str, str]] = {
    "train": {"log_interval": _POS_INT, "eval_interval": _POS_INT, "seed": _INT, "epochs": _POS_INT,
              "learning_rate": _POS_NUM, "eps": _POS_NUM, "batch_size": _POS_INT, "bf16_run": _BOOL,
              "lr_decay": _POS_NUM, "segment_size": _POS_INT, "c_mel": _NONNEG_NUM, "c_kl": _NONNEG_NUM,
              "skip_optimizer": _BOOL, "keep_ckpts": _NONNEG_INT},
    "data": {"sampling_rate": _POS_INT, "filter_length": _POS_INT, "hop_length": _POS_INT, "win_length": _POS_INT,
             "n_mel_channels": _POS_INT, "mel_fmin": _NONNEG_NUM, "add_blank": _BOOL, "training_files": _STR,
             "validation_files": _STR},
    "model": {"inter_channels": _POS_INT, "hidden_channels": _POS_INT, "filter_channels": _POS_INT,
              "n_heads": _POS_INT, "n_layers": _POS_INT, "kernel_size": _POS_INT, "p_dropout": _NONNEG_NUM,
              "upsample_initial_channel": _POS_INT, "gin_channels": _NONNEG_INT},
}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if isinstance(value, bool):  # JSON true/false are not numbers here
        return False
    if kind in (_POS_INT, _NONNEG_INT, _INT):
        if not isinstance(value, int):
            return False
        return value > 0 if kind == _POS_INT else value >= 0 if kind == _NONNEG_INT else True
    if not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
        return False
    return value > 0 if kind == _POS_NUM else value >= 0 if kind == _NONNEG_NUM else True


def _check_types(config: dict[str, Any], path: Path) -> None:
    """Refuse a key of the wrong type with one line naming it (``'data.hop_length' must be a positive integer``)."""
    for section, kinds in _TYPES.items():
        for key, kind in kinds.items():
            if key in config[section] and not _type_ok(config[section][key], kind):
                raise ConfigError(f"{path}: '{section}.{key}' must be {kind}, got {json.dumps(config[section][key])}; "
                                  "fix it in the config (configs/config.json has the defaults)")
    fmax = config["data"].get("mel_fmax")
    if fmax is not None and not _type_ok(fmax, _POS_NUM):
        raise ConfigError(f"{path}: 'data.mel_fmax' must be a positive number or null, got {json.dumps(fmax)}")
    betas = config["train"].get("betas")
    if betas is not None and not (isinstance(betas, list) and len(betas) == 2
                                  and all(_type_ok(b, _NONNEG_NUM) and b < 1 for b in betas)):
        raise ConfigError(f"{path}: 'train.betas' must be two numbers in [0, 1), got {json.dumps(betas)}")
    for key in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
        value = config["model"].get(key)
        if value is not None and not (isinstance(value, list) and value and all(_type_ok(v, _POS_INT) for v in value)):
            raise ConfigError(f"{path}: 'model.{key}' must be a list of positive integers, got {json.dumps(value)}")


def _validate(config: Any, path: Path) -> None:
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a JSON object with sections {', '.join(REQUIRED_SECTIONS)}, "
                          f"got a JSON {type(config).__name__}")
    missing = [s for s in REQUIRED_SECTIONS if not isinstance(config.get(s), dict)]
    if missing:
        raise ConfigError(f"{path}: missing section(s) {', '.join(repr(s) for s in missing)}; "
                          "a Bert-VITS2 config.json needs 'train', 'data' and 'model' objects "
                          "(start from configs/config.json)")
    for section, keys in _REQUIRED_KEYS.items():
        for key in keys:
            if key not in config[section]:
                raise ConfigError(f"{path}: '{section}.{key}' is missing; it decides checkpoint shapes and is never "
                                  "guessed. Use the config.json that belongs to the checkpoint")
    _check_types(config, path)
    n_speakers = config["data"]["n_speakers"]
    if not isinstance(n_speakers, int) or isinstance(n_speakers, bool) or n_speakers < 0:
        raise ConfigError(f"{path}: 'data.n_speakers' must be a non-negative integer, got {n_speakers!r}")
    spk2id = config["data"].get("spk2id", {})
    if not isinstance(spk2id, dict):
        raise ConfigError(f"{path}: 'data.spk2id' must be an object mapping speaker name to id")
    bad = {name: sid for name, sid in spk2id.items()
           if not isinstance(sid, int) or isinstance(sid, bool) or not 0 <= sid < max(n_speakers, 1)}
    if bad:
        shown = ", ".join(f"{k!r}: {v!r}" for k, v in list(bad.items())[:5])
        raise ConfigError(f"{path}: 'data.spk2id' has id(s) outside 0..{n_speakers - 1} (data.n_speakers = {n_speakers}): "
                          f"{shown}; re-run preprocess_text.py or fix n_speakers")


def load_hparams(path: str | os.PathLike) -> HParams:
    """Read an upstream-style ``config.json`` (all sections kept) into ``HParams``.

    Raises ``ConfigNotFoundError`` / ``ConfigError`` with the file name for a missing file, invalid
    JSON, missing ``train``/``data``/``model`` sections or missing ``gin_channels``/``n_speakers``.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a config.json" if path.is_dir() else "does not exist"
        raise ConfigNotFoundError(f"config file {path} {what}; pass the config.json of your model (e.g. configs/config.json)")
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM written by Windows editors
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); is this really a config.json?") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    _validate(config, path)
    return HParams(config)


def save_hparams(hps: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write ``hps`` as JSON atomically (temp file in the same folder + ``os.replace``).

    Used by preprocessing to write ``spk2id``/``n_speakers`` back: every other key is kept as loaded.
    UTF-8 with non-ASCII speaker names written as they are, 2-space indent like upstream.
    """
    path = Path(path)
    data = hps.to_dict() if isinstance(hps, HParams) else _unwrap(dict(hps))
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    write_text_atomic(path, text)
