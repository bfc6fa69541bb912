"""Atomic file writes: the one place this project publishes a file.

Every writer goes through :func:`atomic_write`: the data goes to a hidden temp file in the destination's own folder
(``.<name>.<random>.tmp``), is flushed and fsync'ed, gets the permissions a normal file would have (or the permissions
of the file it replaces), and is then renamed over the destination. A crash, a full disk or Ctrl-C at any moment
leaves either the old file or the new one, never half of one, and the temp file is removed on failure.
:func:`remove_stale_temps` cleans the temp files a SIGKILL can leave behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping

import numpy as np

__all__ = [
    "TEMP_SUFFIX", "atomic_write", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "save_npy_atomic",
    "save_npz_atomic", "remove_stale_temps", "is_temp_file", "OutputIsInputError", "same_file",
    "refuse_overwriting_inputs",
]

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_temp_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temp file left by :func:`atomic_write` (``.<name>.<random>.tmp``)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temp file beside ``path`` for writing; on a clean exit it replaces ``path`` (fsync + rename).

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 by default, ``\\n`` line ends). On any exception, including
    KeyboardInterrupt, the temp file is removed and ``path`` is left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        if mode == "w":
            f: IO[Any] = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="\n")
        else:
            f = os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            perms = path.stat().st_mode & 0o7777  # keep the replaced file's permissions
        except FileNotFoundError:
            perms = 0o666 & ~_umask()
        os.chmod(tmp, perms)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int | None = 1) -> Path:
    """JSON as UTF-8 (non-ASCII kept as is)."""
    return write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=indent) + "\n")


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return write_bytes_atomic(path, buf.getvalue())


def save_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return write_bytes_atomic(path, buf.getvalue())


def remove_stale_temps(folder: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Delete temp files of :func:`atomic_write` in ``folder`` (those of files named ``prefix*``); returns them.

    Only call this where no other process is writing into ``folder`` at the same time.
    """
    removed = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for p in root.iterdir():
        if is_temp_file(p) and p.name[1:].startswith(prefix) and p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


PathLike = str | os.PathLike | None
Labelled = Mapping[str, PathLike] | Iterable[tuple[str, PathLike]]


class OutputIsInputError(ValueError):
    """An output a tool was told to write names one of its inputs (the same file under any spelling)."""


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file: the same inode when both exist (symlinks, hard links, ``..``), else the
    same resolved path (an output that does not exist yet can still be a symlink to an input)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pass
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):  # a symlink loop: not something we would write over
        return False


def _pairs(items: Labelled) -> list[tuple[str, PathLike]]:
    return list(items.items()) if isinstance(items, Mapping) else list(items)


def refuse_overwriting_inputs(outputs: Labelled, inputs: Labelled) -> None:
    """Raise :class:`OutputIsInputError` (one line naming both options) when an output is one of the inputs.

    ``outputs`` and ``inputs`` are ``{label: path}`` or ``(label, path)`` pairs; ``None`` paths are skipped. Every
    tool that writes calls this before it reads anything heavy: publishing a result over its own input (even
    atomically) destroys the input, and the run that does it usually exits 0.
    """
    ins = [(label, path) for label, path in _pairs(inputs) if path is not None and str(path) != ""]
    for out_label, out in _pairs(outputs):
        if out is None or str(out) == "":
            continue
        for in_label, path in ins:
            if same_file(out, path):
                raise OutputIsInputError(
                    f"{out_label} {out} is the input {in_label}; writing there would destroy it: choose another "
                    f"output file")
