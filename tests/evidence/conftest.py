"""Fixtures for evidence tests: built artifacts on disk, and a bare venv for the verifier."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.evidence.artifacts import Artifacts

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
    """A fresh venv holding only cryptography and zstandard (installed from PyPI)."""
    root = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    python = root / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "cryptography", "zstandard"],
        check=True, timeout=240,
    )
    assert python.exists() and sys.executable != str(python)
    yield python
    shutil.rmtree(root, ignore_errors=True)
