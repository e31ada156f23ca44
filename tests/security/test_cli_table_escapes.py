"""Attack: terminal escapes or newlines in a stored text drive the operator's terminal or forge
a row when `forge … list` prints it as a table (issue 17 item 8 made tables the default).

A failed completion's error may quote what a client sent. Printed raw, ``ESC]0;…BEL`` retitles
the window, ``ESC[2J`` clears the screen and a newline adds a row that looks like a real one.
Closed: cells show control characters escaped (``\\x1b``); `--json` keeps the exact text."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from forge.cli import app
from forge.config import load_settings
from forge.services.scoreboard.scoring import CONSUMER
from forge.store.db import Database
from forge.store.failed_events import record_failed_event
from forge.store.migrate import upgrade

EVIL = "bad token\x1b]0;owned\x07\x1b[2J\n7  scn-ffffffffffffffff  reprocessed"


def test_a_stored_error_cannot_drive_the_terminal_or_forge_a_row(
        tmp_path: Path, db_url: str) -> None:
    env = {"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "storage"),
           "FORGE_DB_URL": db_url}
    settings = load_settings(env)
    upgrade(settings.db_url)
    record_failed_event(Database(settings.db_url), consumer=CONSUMER,
                        subject="forge.scenario.completed", msg_id="m1", payload="{}",
                        error=EVIL, scenario_id="scn-00112233aabbccdd")

    table = CliRunner().invoke(app, ["completions", "list"], env=env)
    assert table.exit_code == 0, table.output
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout
    lines = table.stdout.splitlines()
    assert len(lines) == 2 and "scn-ffffffffffffffff" in lines[1]  # one row, not two
    assert "\\x1b]0;owned\\x07\\x1b[2J\\n7" in lines[1]

    as_json = CliRunner().invoke(app, ["completions", "list", "--json"], env=env)
    assert json.loads(as_json.stdout)["events"][0]["error"] == EVIL
