"""Shared test fixtures and helpers.

* paths to ../shared (skip cleanly where it is absent);
* ``checkout_env()``: the environment for a child ``python`` that must run this checkout's code;
* the text-frontend golden tables (``*_frontend.tsv``) reader;
* the model tests' config/checkpoint loaders and the one-thread fixture.

Test modules import the helpers with ``from conftest import ...`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BV2_SHARED_DIR", REPO_ROOT.parent / "shared"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data not found at {path} (expected ../shared beside the repository)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def bv2_ref() -> Path:
    """../shared/reference/bv2: upstream Bert-VITS2 v2.3 golden fixtures."""
    return _need(SHARED / "reference" / "bv2")


@pytest.fixture(scope="session")
def livelink_ref() -> Path:
    return _need(SHARED / "reference" / "livelink")


@pytest.fixture(scope="session")
def motion_ref() -> Path:
    return _need(SHARED / "reference" / "motion")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


# ----------------------------------------------------------------------------------------------- subprocesses


def checkout_env(**extra: str) -> dict[str, str]:
    """``os.environ`` plus ``extra`` with the repository root prepended to PYTHONPATH.

    Pass it as ``env=`` to every subprocess that runs ``sys.executable`` so the child imports this checkout's
    ``bert_vits2`` / ``motion`` (and top-level scripts), not whatever copy is installed in the environment.
    """
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


# ------------------------------------------------------------------------------------ text frontend tables

FRONTEND_HEADER = ["text", "norm_text", "phones", "tones", "word2ph", "error"]


def unescape_cell(cell: str) -> str:
    """Undo the table's escaping of ``\\n``, ``\\t`` and ``\\\\`` in a text cell."""
    out, i = [], 0
    while i < len(cell):
        if cell[i] == "\\" and i + 1 < len(cell) and cell[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[cell[i + 1]])
            i += 2
        else:
            out.append(cell[i])
            i += 1
    return "".join(out)


def load_frontend_table(path: Path) -> list[dict]:
    """Rows of a ``<lang>_frontend.tsv`` golden table (upstream v2.3 output) as dicts keyed by FRONTEND_HEADER;
    ``text`` and ``norm_text`` unescaped, the other cells as stored (space-separated; ``error`` empty or not)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0].split("\t") == FRONTEND_HEADER, lines[0]
    rows = []
    for line in lines[1:]:
        if not line:
            continue
        cells = line.split("\t")
        assert len(cells) == len(FRONTEND_HEADER), line
        row = dict(zip(FRONTEND_HEADER, cells))
        row["text"], row["norm_text"] = unescape_cell(row["text"]), unescape_cell(row["norm_text"])
        rows.append(row)
    return rows


def frontend_rows(bv2_ref: Path, lang: str) -> list[dict]:
    """The ``lang`` ("en", "ja", "zh") golden table: ``BV2_<LANG>_FRONTEND_TSV`` or ``<bv2_ref>/<lang>_frontend.tsv``."""
    rows = load_frontend_table(Path(os.environ.get(f"BV2_{lang.upper()}_FRONTEND_TSV", bv2_ref / f"{lang}_frontend.tsv")))
    assert rows, f"empty {lang} frontend table"
    return rows


def frontend_tokenizer_dir(bv2_ref: Path, lang: str, default_name: str) -> str:
    """The tokenizer folder the ``lang`` table was made with: ``BV2_<LANG>_TOKENIZER_DIR`` or ``<bv2_ref>/<default_name>``."""
    return str(os.environ.get(f"BV2_{lang.upper()}_TOKENIZER_DIR", bv2_ref / default_name))


# ------------------------------------------------------------------------------------------------ models


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch thread for the module (use with ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``):
    the CI box has 2 cores shared with other jobs, and 2 spinning OpenMP threads on tiny ops are many times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def load_bv2_config(bv2_ref: Path) -> dict:
    """A fresh copy of the reference ``config.json`` (callers may modify it)."""
    return json.loads((bv2_ref / "config.json").read_text())


@pytest.fixture
def bv2_cfg(bv2_ref) -> dict:
    """The reference ``config.json``, a fresh dict per test."""
    return load_bv2_config(bv2_ref)


def load_state_dict(path: Path) -> dict:
    """The ``"model"`` state dict of an upstream-format checkpoint, loaded with ``weights_only=True``."""
    import torch

    return torch.load(path, weights_only=True)["model"]


def build_synthesizer(cfg: dict, n_speakers: int | None = None, checkpoint: Path | None = None):
    """SynthesizerTrn as upstream builds it from ``cfg`` (112 symbols, linear spectrogram input, training segment);
    with ``checkpoint`` its weights are loaded strictly. Returned in training mode."""
    from bert_vits2.models import SynthesizerTrn

    model = SynthesizerTrn(
        112,
        cfg["data"]["filter_length"] // 2 + 1,
        cfg["train"]["segment_size"] // cfg["data"]["hop_length"],
        n_speakers=cfg["data"]["n_speakers"] if n_speakers is None else n_speakers,
        **cfg["model"],
    )
    if checkpoint is not None:
        result = model.load_state_dict(load_state_dict(checkpoint), strict=True)
        assert not result.missing_keys and not result.unexpected_keys
    return model


_PORTS_HANDED_OUT: set[tuple[str, int]] = set()


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux: ip_local_port_range; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(kind: str = "tcp") -> int:
    """A port on 127.0.0.1 that nothing listens on right now (``kind``: "tcp" for servers, "udp" for Live Link/VMC).

    For callers that must pass a port number on (a child process, a CLI): where the code under test can bind port 0
    and report the port, do that instead. Why not bind port 0 here: a port the kernel hands out for port 0 goes back
    to its ephemeral pool on close, where the next port-0 bind or outgoing connection (of any test or process) may
    take it before the caller binds it. So the port is drawn at random from the 10000 ports below the ephemeral range,
    which the kernel never hands out by itself, is checked free by binding it, and is never handed out twice by this
    process; only another explicit bind of the same port can still collide (see ``start_on_free_port`` to retry).
    """
    import random
    import socket

    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    high = _ephemeral_low()
    low = max(1024, high - 10_000)
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(low, high)
        if (kind, port) in _PORTS_HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, sock_type) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_HANDED_OUT.add((kind, port))
        return port
    raise RuntimeError(f"no free {kind} port found in {low}-{high - 1} on 127.0.0.1")


def start_on_free_port(start, kind: str = "tcp", attempts: int = 5) -> int:
    """Call ``start(port)`` with a ``free_port`` until it does not fail with ``OSError`` (address in use: another
    process took the port between the check and the bind); returns the port it started on."""
    for attempt in range(attempts):
        port = free_port(kind)
        try:
            start(port)
        except OSError:
            if attempt == attempts - 1:
                raise
            continue
        return port
    raise AssertionError("unreachable")


#: Debian's Chromium for the browser tests (never ``playwright install``) and its headless flags
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
#: for pages that play audio without a click
AUTOPLAY_ARGS = CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required", "--mute-audio"]


@contextlib.contextmanager
def chromium_page(*, args: list[str] = CHROMIUM_ARGS, timeout_ms: float = 90_000, **page_options):
    """A page in Debian's headless Chromium (``page_options`` go to ``new_page``: viewport, accept_downloads, ...)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(**page_options)
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()


#: the marks every browser test module carries
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]

