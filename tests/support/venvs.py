"""Fresh virtual environments for tests, installed from the local wheelhouse only.

`make test` fills the wheelhouse (`build/wheelhouse`, or `FORGE_WHEELHOUSE`) with wheels of
every dependency, so a test never reaches a package index: what it installs is exactly what
the Makefile fetched, and a test run works with no network at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def wheelhouse() -> Path:
    """The directory of dependency wheels `make test` prepared."""
    path = Path(os.environ.get("FORGE_WHEELHOUSE") or REPO / "build" / "wheelhouse")
    if not path.is_dir() or not any(path.glob("*.whl")):
        raise RuntimeError(f"no wheelhouse at {path}: run `make wheelhouse` (make test does)")
    return path


def create_venv(root: Path, *requirements: str, timeout: float = 300) -> Path:
    """A new venv at `root` holding only `requirements` (names or wheel paths); its python."""
    venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(root)
    python = root / "bin" / "python"
    if requirements:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-index", "--find-links", str(wheelhouse()), *requirements],
            check=True, timeout=timeout,
        )
    assert sys.executable != str(python)
    return python
