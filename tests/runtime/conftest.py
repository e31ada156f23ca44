"""Fixtures for runtime tests: a LocalRuntime with a prefix of its own.

Every test session uses a random prefix, so concurrent runs on the same machine never see
each other's labs, and leak checks look only at objects with their own prefix.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime.local import LocalRuntime

from ..support.prefixes import runtime_prefix


@pytest.fixture(scope="session")
def prefix() -> str:
    """A prefix unique to this test session (t + 4 hex)."""
    return runtime_prefix("t")


@pytest.fixture(scope="session")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """State directory shared by the session's runtimes."""
    return tmp_path_factory.mktemp("runtime-state")


@pytest.fixture(scope="session")
def rt(prefix: str, state_root: Path) -> Iterator[LocalRuntime]:
    """The session's runtime; every lab left at the end is destroyed."""
    runtime = LocalRuntime(str(state_root), prefix=prefix)
    assert runtime.check() == []
    yield runtime
    for info in runtime.list():
        runtime.destroy(info.lab_id)
    runtime.close()
    shutil.rmtree(state_root, ignore_errors=True)


