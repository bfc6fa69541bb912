"""What every command-line tool of ``motion`` shares: one runner that turns the libraries' user errors into one line
on stderr (exit 1) instead of a traceback. The argument types and ``load_npy`` live lower, in :mod:`motion.inputs`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Iterable


def refuse_overwriting_inputs(option: str, output: str | os.PathLike | None,
                              inputs: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    """Raise ``ValueError`` when ``output`` (given with ``option``) is one of the ``(label, path)`` inputs.

    The check itself is :func:`bert_vits2.fileio.refuse_overwriting_inputs` (shared by every tool that writes).
    """
    from bert_vits2.fileio import refuse_overwriting_inputs as refuse

    refuse([(option, output)], inputs)


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
