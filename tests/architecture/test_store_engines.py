"""The engine rule of issue 15 is enforced: a store-touching test names its engine.

tests/support/store_engines.py states the rule and tests/conftest.py checks it before every
test. Here a throwaway suite using that same conftest shows the three cases: a test that
opens a SQLite store and says nothing fails at setup naming the fix; the same test with
`sqlite_only_store` (id `[sqlite_only]`) or through `db_url` passes; a pure test is untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CONFTEST = """\
from tests.conftest import (  # noqa: F401 - the repository's fixtures and hook
    SQLITE_ONLY, db_url, postgres_cluster, postgres_url, pytest_runtest_setup,
    sqlite_only_store)
"""

SUITE = '''\
import pytest
from forge.store import Database


def _open(path):
    Database(f"sqlite:///{path / 'forge.db'}").ping()


def test_silent_on_its_engine(tmp_path):
    _open(tmp_path)


@pytest.mark.usefixtures("sqlite_only_store")
def test_says_so(tmp_path):
    _open(tmp_path)


def test_runs_through_db_url(db_url, tmp_path):
    Database(db_url).ping()


def test_pure():
    assert sum([1, 2]) == 3
'''


def test_a_store_touching_test_must_name_its_engine(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         "-k", "not postgres", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "ERROR test_suite.py::test_silent_on_its_engine" in out, out
    assert ("test_suite.py::test_silent_on_its_engine touches the state store but is neither "
            "parametrized over `db_url` (SQLite and PostgreSQL) nor named `sqlite_only`") in out
    assert "PASSED test_suite.py::test_says_so[sqlite_only]" in out, out
    assert "PASSED test_suite.py::test_runs_through_db_url[sqlite]" in out, out
    assert "PASSED test_suite.py::test_pure" in out, out
    assert "1 error" in out and "3 passed" in out, out
