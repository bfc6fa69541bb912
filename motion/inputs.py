"""Checks on what users hand the tools, shared by the CLIs and the libraries they call: ``argparse`` types that refuse
nonsense at the door (finite numbers, ranges, ports, ``BONE=FACTOR``) and :func:`load_npy` for untrusted ``.npy`` files.

It imports nothing of ``motion``, so library modules (``livelink.take``, ``livelink.replay``, ``body.player``) can use
it without reaching :mod:`motion.cli`, whose error runner knows the libraries' error types (it sits above them).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bert_vits2.__main__ import version

_NOT_A_COMMAND = ("", "-c", "-m", "__main__.py", "pytest", "py.test")


def package_version() -> str:
    """The project's version: :func:`bert_vits2.__main__.version` (the package metadata, set in pyproject.toml)."""
    return version()


def prog_name(default: str) -> str:
    """The command as the user typed it, for usage lines: ``bv2-tts2ue``, ``tts2ue.py``, ``python -m motion tts2ue``.

    ``default`` (the script's file name) is used when ``sys.argv[0]`` names no command (``python -c``, test runners).
    """
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if name in _NOT_A_COMMAND or name.startswith(("pytest", "py.test")):
        return default
    if sys.argv[0].startswith("python -m "):  # set by python -m motion / bert_vits2: "python -m motion tts2ue"
        return sys.argv[0]
    return name


def cli_parser(default_prog: str, **kwargs: Any) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` named as invoked (:func:`prog_name`) with ``--version``: what every tool starts from."""
    parser = argparse.ArgumentParser(prog=prog_name(default_prog), **kwargs)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    return parser


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


def whole_number(low: int, high: int | None = None, what: str = "") -> Callable[[str], int]:
    """A whole number ``>= low`` (and ``<= high`` when given); ``what`` names it in the message."""
    name = f"{what} " if what else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name}{value} is out of range ({low}-{high})")
        if value < low:
            raise argparse.ArgumentTypeError(f"{name}{value} must be {low} or more")
        return value

    return parse


port_number = whole_number(1, 65535, "port")  # a UDP/TCP port (0 is not accepted: say which port to use)
positive_int = whole_number(1)
non_negative_int = whole_number(0)
sample_rate_hz = whole_number(8000, 192000, "sample rate (Hz)")  # what sound cards and the audio tools handle


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


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """A whole number within ``[low, high]``."""
    return whole_number(low, high)


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
