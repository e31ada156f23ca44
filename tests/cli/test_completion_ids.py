"""`forge completions reprocess --id N` with N past a 64-bit integer is a bad argument
(exit 2, naming --id), as the API's `id` (le 2**63-1). Before: the number reached the
store query and the operator got an OverflowError traceback, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli import app


@pytest.mark.parametrize("value", [str(2**63), "99999999999999999999999"])
def test_an_event_id_past_64_bits_is_a_usage_error(tmp_path: Path, value: str) -> None:
    root = tmp_path / "root"
    result = CliRunner().invoke(app, ["--storage", str(root), "completions", "reprocess",
                                      "--id", value],
                                env={"FORGE_ENV": "dev", "STORAGE_ROOT": None})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    said = " ".join(result.stderr.replace("│", " ").split())
    assert "Invalid value for '--id'" in said and "Traceback" not in result.output
    assert not root.exists()  # refused while parsing: no store, no bus connection
