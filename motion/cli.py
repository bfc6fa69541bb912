"""What every command-line tool of ``motion`` shares: argument types that refuse nonsense at the door, and one
runner that turns the libraries' user errors into one line on stderr (exit 1) instead of a traceback."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable


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


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is written for the user (one line naming the file/option and what to do)."""
    from bert_vits2.audio import AudioReadError
    from bert_vits2.checkpoint import CheckpointError

    types: list[type[BaseException]] = [ValueError, FileNotFoundError, IsADirectoryError, PermissionError,
                                         AudioReadError, CheckpointError]
    try:
        from bert_vits2.hparams import ConfigError  # type: ignore[attr-defined]

        types.append(ConfigError)
    except ImportError:  # pragma: no cover - older layout
        pass
    from motion.face.features import PosteriorEncoderError
    from motion.face.model import HeadLoadError

    types += [PosteriorEncoderError, HeadLoadError]
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
