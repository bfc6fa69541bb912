"""What every command-line tool of ``motion`` shares: one runner that turns the libraries' user errors into one line
on stderr (exit 1) instead of a traceback. The argument types and ``load_npy`` live lower, in :mod:`motion.inputs`."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Callable, Iterable

from bert_vits2.audio import AudioReadError
from bert_vits2.fileio import refuse_overwriting_inputs as refuse
from bert_vits2.hparams import ConfigError
from motion.face.prepare import PrepareError


def refuse_overwriting_inputs(option: str, output: str | os.PathLike | None,
                              inputs: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    """Raise ``ValueError`` when ``output`` (given with ``option``) is one of the ``(label, path)`` inputs.

    The check itself is :func:`bert_vits2.fileio.refuse_overwriting_inputs` (shared by every tool that writes).
    """
    refuse([(option, output)], inputs)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is written for the user (one line naming the file/option and what to do)."""
    # these three import torch (~3 s): deferred so that every CLI's --help and light runs start without it
    from bert_vits2.checkpoint import CheckpointError

    types: list[type[BaseException]] = [ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
                                         NotADirectoryError, PermissionError, AudioReadError, CheckpointError, ConfigError]
    from motion.face.features import PosteriorEncoderError
    from motion.face.model import HeadLoadError

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


def check_bind_host(host: str, option: str = "--host") -> str:
    """Raise ``ValueError`` (one line) unless ``host`` is an address this machine can listen on.

    Web servers would otherwise fail deep inside their start-up (``999.1.1.1``, a typo, another machine's IP).
    """
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as err:
        raise ValueError(f"{option} {host!r} is not a valid address or known host name ({err}); use 127.0.0.1 "
                         f"(this machine only) or 0.0.0.0 (all interfaces)") from None
    family, _, _, _, address = infos[0]
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((address[0], 0))
    except OSError as err:
        raise ValueError(f"{option} {host}: this machine cannot listen there ({err.strerror or err}); use one of "
                         f"its own addresses, 127.0.0.1 or 0.0.0.0") from None
    return host
