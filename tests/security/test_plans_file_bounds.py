"""Attack: point FORGE_PLANS_FILE at a file that never ends (/dev/zero), never opens (a
FIFO nobody writes) or is not text, to exhaust memory or hang every service and operator
command that reads the plans.

Before: `load_plans` read the file whole with `Path.read_text`, so /dev/zero grew the
process until the OOM killer came, a FIFO hung it, a file that is not UTF-8 ended in a
UnicodeDecodeError traceback, and even a missing file (a PlanError) was a traceback in
`forge receipt mint`, `forge entitlements grant` and `forge serve`. Now each is one line
naming the file and why, exit 1. Each run is watched (`run` of test_bounded_files):
passing 1 GiB or hanging fails the test, not the host.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.plans.catalog import MAX_PLANS_BYTES

from ..conftest import SQLITE_ONLY
from ..live_server import distinct_ports
from ..support.prefixes import runtime_prefix
from .test_bounded_files import FORGE, run

REASONS = {"zero": "is a device, not a regular file", "fifo": "is a FIFO, not a regular file",
           "big": f"larger than {MAX_PLANS_BYTES} bytes", "latin1": "not UTF-8 text (byte 15)",
           "missing": "file not found"}


def _plans_file(tmp_path: Path, kind: str) -> Path:
    if kind == "zero":
        return Path("/dev/zero")
    path = tmp_path / f"plans-{kind}.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "big":
        with open(path, "wb") as fh:
            fh.truncate(MAX_PLANS_BYTES + 1)
    elif kind == "latin1":
        path.write_bytes(b"plans:\n  X: caf\xe9\n")
    return path


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dev environment of this test's own: storage root, runtime prefix, no plans set."""
    monkeypatch.setenv("FORGE_ENV", "dev")
    monkeypatch.setenv("STORAGE_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("FORGE_RUNTIME_PREFIX", runtime_prefix("q"))
    monkeypatch.delenv("FORGE_DB_URL", raising=False)
    return tmp_path


@pytest.mark.parametrize("kind", sorted(REASONS))
@pytest.mark.parametrize("command", [("receipt", "mint", "--tenant", "acme", "--plan", "PRO"),
                                     ("entitlements", "grant", "--tenant", "acme", "--plan",
                                      "PRO")], ids=["receipt", "grant"])
def test_operator_commands_refuse_a_hostile_plans_file(
        environ: Path, monkeypatch: pytest.MonkeyPatch, kind: str,
        command: tuple[str, ...]) -> None:
    plans = _plans_file(environ, kind)
    monkeypatch.setenv("FORGE_PLANS_FILE", str(plans))
    result = run([*FORGE, *command])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and result.stdout == ""
    said = [line for line in result.stderr.splitlines()
            if not line.startswith("warning: ")]  # dev secrets, a new storage root
    assert said == [f"error: cannot read plans file {plans}: {REASONS[kind]}"]


@pytest.mark.no_store  # refused on reading the plans, before any platform or store
@pytest.mark.parametrize("kind", ["zero", "missing"])
def test_the_demo_refuses_a_hostile_plans_file_in_one_line(
        environ: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    plans = _plans_file(environ, kind)
    monkeypatch.setenv("FORGE_PLANS_FILE", str(plans))
    result = run([*FORGE, "demo", "--lab", "ccna"])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines()
            if not line.startswith(("warning: ", "dev: "))]  # the dev root it prepares
    assert said == [f"error: cannot read plans file {plans}: {REASONS[kind]}"]


@pytest.mark.parametrize("engine", [SQLITE_ONLY])
def test_serve_refuses_a_plans_file_it_cannot_read_in_one_line(
        environ: Path, monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    plans = _plans_file(environ, "zero")
    monkeypatch.setenv("FORGE_PLANS_FILE", str(plans))
    [port] = distinct_ports(1)
    result = run([*FORGE, "serve", "spawn", "--port", str(port)])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"forge serve spawn: cannot read plans file {plans}: {REASONS['zero']}")
