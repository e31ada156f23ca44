"""Fixtures for evidence tests: built artifacts on disk, and a bare venv for the verifier."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.evidence.artifacts import Artifacts
from tests.support.venvs import create_venv

from .sample import build, write_files


@pytest.fixture
def artifacts(tmp_path: Path) -> Artifacts:
    """Artifacts for the fixed sample inputs."""
    return build(tmp_path / "work")


@pytest.fixture
def result_files(artifacts: Artifacts, tmp_path: Path) -> dict[str, Path]:
    """The four files written into a directory: name -> path."""
    return write_files(artifacts, tmp_path / "results")


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding only cryptography and zstandard (from the local wheelhouse)."""
    root = tmp_path_factory.mktemp("bare-venv")
    yield create_venv(root, "cryptography", "zstandard")
    shutil.rmtree(root, ignore_errors=True)
