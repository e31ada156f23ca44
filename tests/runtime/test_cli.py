"""`forge runtime check|list|destroy` against real labs (root)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.runtime.local import LocalRuntime
from forge.runtime.local.cli import app
from tests.runtime.helpers import leftovers, simple_lab

pytestmark = pytest.mark.root


def test_operator_lists_and_destroys_orphaned_labs(tmp_path: Path) -> None:
    prefix, state = "c" + secrets.token_hex(2), str(tmp_path / "state")
    rt = LocalRuntime(state, prefix=prefix)
    rt.create(simple_lab("orphan-a"))
    rt.create(simple_lab("orphan-b"))
    rt.close()
    runner = CliRunner()
    opts = ["--state-dir", state, "--prefix", prefix]

    assert runner.invoke(app, ["check", *opts]).exit_code == 0
    listed = runner.invoke(app, ["list", *opts])
    assert listed.exit_code == 0
    assert "orphan-a  running  box=10.200.0.1" in listed.output
    assert "orphan-b  running" in listed.output

    assert runner.invoke(app, ["destroy", *opts]).exit_code == 2
    one = runner.invoke(app, ["destroy", "orphan-a", *opts])
    assert one.exit_code == 0 and "destroyed orphan-a" in one.output
    bad = runner.invoke(app, ["destroy", "../etc", *opts])
    assert bad.exit_code == 1 and "lab_id" in bad.output
    rest = runner.invoke(app, ["destroy", "--all", *opts])
    assert rest.exit_code == 0 and "destroyed orphan-b" in rest.output
    assert leftovers(prefix, state) == []
