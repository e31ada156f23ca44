"""One output style for `forge … list` commands (issue 17 item 8): a table for people, and
`--json` that a script can parse, for every list command that reads the store or storage.
Before: apikey/entitlements printed box tables only, keys/image aligned text only, and
completions/retention holds JSON only; none of the first four had `--json`."""

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

SCN = "scn-00112233aabbccdd"


def forge(env: dict[str, str | None], *args: str) -> str:
    """stdout of a successful `forge ARGS` run in process (env restored afterwards)."""
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def test_every_list_command_prints_a_table_and_parseable_json(
        tmp_path: Path, db_url: str) -> None:
    storage = tmp_path / "storage"
    env: dict[str, str | None] = {"FORGE_ENV": "dev", "STORAGE_ROOT": str(storage),
                                  "FORGE_DB_URL": db_url}
    settings = load_settings({k: v for k, v in env.items() if v is not None})
    upgrade(settings.db_url)
    record_failed_event(Database(settings.db_url), consumer=CONSUMER,
                        subject="forge.scenario.completed", msg_id="m1", payload="{}",
                        error="SAT [bad] signature", scenario_id=SCN)
    forge(env, "apikey", "create", "--tenant", "acme", "--subject", "alice")
    forge(env, "entitlements", "grant", "--tenant", "acme", "--plan", "PRO")
    forge(env, "keys", "generate")
    forge(env, "retention", "hold", SCN, "--reason", "[bold]legal")

    expected = {
        ("apikey", "list"): ("keys", "subject", "alice"),
        ("entitlements", "list"): ("grants", "plan", "PRO"),
        ("keys", "list"): ("keys", "state", "current"),
        ("retention", "holds"): ("holds", "reason", "[bold]legal"),
        ("completions", "list"): ("events", "scenario_id", SCN),
    }
    for command, (key, field, value) in expected.items():
        rows = json.loads(forge(env, *command, "--json"))[key]
        assert [row[field] for row in rows] == [value], command
        table = forge(env, *command).splitlines()
        # A header, one line per row, no box drawing; cells print as typed (no markup).
        assert len(table) == 2 and table[0] == table[0].upper(), (command, table)
        assert value in table[1] and not any(c in "".join(table) for c in "│─┃━"), command
    # Times name their zone (SQLite reads them back without one, which a client takes as
    # its own local time, hours off).
    key = json.loads(forge(env, "apikey", "list", "--json"))["keys"][0]
    event = json.loads(forge(env, "completions", "list", "--json"))["events"][0]
    assert key["created"].endswith("+00:00") and event["first_failed_at"].endswith("+00:00")

    # `forge image list --json` names every shipped definition, built or not, and the cache.
    images = json.loads(forge({**env, "FORGE_IMAGE_CACHE": str(tmp_path / "cache")},
                              "image", "list", "--json"))
    assert {i["name"] for i in images["images"]} >= {"base"}
    assert not any(i["built"] for i in images["images"])
    assert images["cache"]["entries"] == 0
