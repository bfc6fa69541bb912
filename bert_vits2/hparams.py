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
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # keep the original file's permissions (mkstemp creates 0600)
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
