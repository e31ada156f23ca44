"""`forge up --help` says what each rehearsal option does today: `--separate-storage` said
verdicts verify "only once evidence travels over JetStream, issue 15 item 4", a caveat
fixed long ago (docs/scale-out.md), so an evaluator took the option for a broken one."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from forge.cli import app

# The CLI app counts as store-touching (tests/support/store_engines.py); no store is opened.
pytestmark = pytest.mark.usefixtures("sqlite_only_store")


def test_separate_storage_help_says_where_verdicts_are() -> None:
    result = CliRunner().invoke(app, ["up", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "issue 15" not in text and "verify only once" not in text
    assert "so verdicts verify, their files under roots/scoreboard/" in text
