"""Shared test fixtures: paths to ../shared (skip cleanly where it is absent)."""

from __future__ import annotations

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
