"""What every command-line tool of ``motion`` shares: argument types that refuse nonsense at the door, and one
runner that turns the libraries' user errors into one line on stderr (exit 1) instead of a traceback."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import numpy as np


def finite_float(text: str) -> float:
    """A float that is not NaN or infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0 (frame rates, durations, scales)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """A finite float within ``[low, high]``."""

    def parse(text: str) -> float:
        value = finite_float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} must be between {low:g} and {high:g}")
        return value

    return parse


def port_number(text: str) -> int:
    """A UDP/TCP port 1..65535 (0 is not accepted: say which port to use)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range (1-65535)")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def bone_factor(text: str) -> tuple[str, float]:
    """``BONE=FACTOR`` (``--damping``): a bone name and a finite factor in [0, 10]."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected BONE=FACTOR, e.g. LeftUpperArm=0.8")
    try:
        factor = bounded_float(0.0, 10.0)(value)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: the factor {err}") from None
    return name.strip(), factor


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def refuse_overwriting_inputs(option: str, output: str | os.PathLike | None,
                              inputs: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    """Raise ``ValueError`` when ``output`` (given with ``option``) is one of the ``(label, path)`` inputs.

    Writing a result over its own input destroys the input the moment the output is published.
    """
    if output is None:
        return
    out = Path(output)
    for label, path in inputs:
        if path is not None and _same_file(out, Path(path)):
            raise ValueError(f"{option} {out} is the input {label}; writing there would destroy it: choose another "
                             f"output file")


MAX_NPY_BYTES = 2 << 30  # a face or body clip is megabytes; a header declaring more is corrupt or hostile


def load_npy(path: str | os.PathLike, what: str | None = None, max_bytes: int = MAX_NPY_BYTES) -> np.ndarray:
    """``np.load`` for untrusted files: no pickles, and the header's shape is checked against the file's size first.

    A header declaring a huge shape would otherwise end in a MemoryError (or a multi-GB allocation) before any
    data is read. Raises ``ValueError`` naming the file.
    """
    p = Path(path)
    label = what or str(p)
    if not p.is_file():
        raise ValueError(f"{label}: no such file")
    try:
        with open(p, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            data_bytes = p.stat().st_size - f.tell()
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{label}: not a readable .npy array ({err})") from None
    if dtype.hasobject:
        raise ValueError(f"{label}: holds Python objects (a pickle); only plain number arrays are read")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > max_bytes or need > data_bytes:
        raise ValueError(f"{label}: its header declares shape {list(shape)} ({need} bytes) but the file holds "
                         f"{data_bytes} bytes of data: the file is corrupt or truncated")
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{label}: not a readable .npy array ({err})") from None


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """A whole number within ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} must be between {low} and {high}")
        return value

    return parse


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is written for the user (one line naming the file/option and what to do)."""
    from bert_vits2.audio import AudioReadError
    from bert_vits2.checkpoint import CheckpointError

    types: list[type[BaseException]] = [ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
                                         NotADirectoryError, PermissionError, AudioReadError, CheckpointError]
    try:
        from bert_vits2.hparams import ConfigError  # type: ignore[attr-defined]

        types.append(ConfigError)
    except ImportError:  # pragma: no cover - older layout
        pass
    from motion.face.features import PosteriorEncoderError
    from motion.face.model import HeadLoadError
    from motion.face.prepare import PrepareError

    types += [PosteriorEncoderError, HeadLoadError, PrepareError]
    return tuple(types)


def run_cli(prog: str, fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call ``fn(args)``; a user error is printed as ``prog: message`` (exit 1), Ctrl-C exits 130."""
    try:
        return int(fn(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except user_error_types() as err:
        text = str(err).strip() or type(err).__name__
        if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
            text = f"{err.filename}: {text}"
        print(f"{prog}: {text}", file=sys.stderr)
        return 1
