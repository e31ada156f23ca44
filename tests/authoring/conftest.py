"""Run the `forge` CLI as an operator would, with a storage root and runtime prefix of the
test's own (so its labs never mix with another suite's), no service running."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ..support.prefixes import runtime_prefix

FORGE = [sys.executable, "-m", "forge"]
Forge = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture()
def forge_env(tmp_path: Path) -> dict[str, str]:
    """The environment of the CLI: this test's storage root and runtime prefix."""
    env = {**os.environ, "STORAGE_ROOT": str(tmp_path / "storage"),
           "FORGE_RUNTIME_PREFIX": runtime_prefix("a"), "COLUMNS": "200"}
    env.pop("FORGE_TEMPLATE_DIR", None)
    return env


@pytest.fixture()
def forge(tmp_path: Path, forge_env: dict[str, str]) -> Forge:
    """`forge(*args, cwd=...)`: the CLI in a subprocess, COLUMNS wide enough for tables."""
    env = forge_env

    def run(*args: str, cwd: Path = tmp_path,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*FORGE, *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    return run
