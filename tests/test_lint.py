"""The repository passes ruff with the configuration in pyproject.toml ([tool.ruff]); the failure shows ruff's report.

Fix with ``python -m ruff check --fix .`` (then by hand for what it cannot fix).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO_ROOT


def test_ruff_check_passes():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed in this environment (it is in the test extra: pip install -e '.[test]')")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"ruff found problems (fix with `python -m ruff check --fix .`):\n{proc.stdout}{proc.stderr}",
                    pytrace=False)
