"""README, "Running the platform": the commands its sign-in sentence gives, run in order,
leave a person who can start labs (probe: it gave only `forge apikey create` and `forge
roles set`, and a key carries no plan, so a newcomer following it got 403
`entitlement_not_found` on every lab; the grant command was only in the runbook's table)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from forge.cli import app

from .conftest import SpawnEnv

README = Path(__file__).resolve().parents[2] / "README.md"


def sign_in_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index("The learner UI is at")
    sentence = text[start:text.index("\n\n", start)].replace("\n", " ")
    commands = [shlex.split(c)[1:] for c in re.findall(r"`(forge [^`]+)`", sentence)]
    assert commands, sentence
    return commands


def test_the_readmes_sign_in_commands_leave_a_learner_who_can_start_labs(
        spawn_env: SpawnEnv, db_url: str, tmp_path: Path) -> None:
    env: dict[str, str | None] = {"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "cli"),
                                  "FORGE_DB_URL": db_url}
    key = None
    for words in sign_in_commands():
        args = ["acme" if w == "T" else "ann" if w == "S" else w for w in words]
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 0, (args, result.output)
        found = re.search(r"^api_key\s+(\S+)$", result.output, re.M)
        key = found.group(1) if found else key
    assert key is not None  # the sentence says where the key comes from
    with spawn_env.client() as client:
        tracks = client.get("/v1/tracks", headers={"x-api-key": key})
    assert tracks.status_code == 200, tracks.text
    assert tracks.json()["plan"] == "PRO" and tracks.json()["tracks"]  # labs to start
