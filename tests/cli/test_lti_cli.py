"""`forge lti`: the operator makes the tool key, sees the URLs to paste into the LMS and
the registered platforms, follows the grades owed to platforms and queues a failed one
again. Before: there was no `forge lti`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from typer.testing import CliRunner

from forge.cli import app
from forge.config import load_settings
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import LtiGradePost


def _run(env: dict[str, str | None], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, (args, result.output)
    return result.output


def test_key_platforms_grades_and_retry(tmp_path: Path, sqlite_only_store: str) -> None:
    # The outbox's store semantics run on both engines in tests/classroom/test_lti.py.
    env: dict[str, str | None] = {"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "s"),
                                  "FORGE_DB_URL": f"sqlite:///{tmp_path / 'forge.db'}"}
    key = tmp_path / "tool.pem"
    _run(env, "lti", "key", "new", str(key))
    assert "exists" in _run(env, "lti", "key", "new", str(key), code=1)
    assert "FORGE_LTI_FILE is not set" in _run(env, "lti", "platform", "list", code=1)
    lti = tmp_path / "lti.yaml"
    lti.write_text(yaml.safe_dump({
        "tool": {"base_url": "https://forge.example.org", "private_key_file": str(key)},
        "platforms": {"canvas": {
            "tenant": "acme", "issuer": "https://canvas.example.org", "client_id": "1000",
            "deployment_ids": ["1:abc"], "auth_login_url": "https://canvas.example.org/auth",
            "auth_token_url": "https://canvas.example.org/token",
            "key_set_url": "https://canvas.example.org/jwks"}}}))
    env["FORGE_LTI_FILE"] = str(lti)
    listed = json.loads(_run(env, "lti", "platform", "list", "--json"))
    assert listed["tool"]["login_initiation_url"] == "https://forge.example.org/lti/login"
    assert listed["tool"]["jwks_url"] == "https://forge.example.org/lti/jwks"
    assert listed["platforms"] == [{"name": "canvas", "tenant": "acme",
                                    "issuer": "https://canvas.example.org",
                                    "client_id": "1000", "deployment_ids": ["1:abc"]}]
    assert "https://forge.example.org/lti/launch" in _run(env, "lti", "platform", "list")

    settings = load_settings({k: v for k, v in env.items() if v is not None})
    upgrade(settings.db_url)
    now = datetime.now(UTC)
    with Database(settings.db_url).session() as sess:
        sess.add(LtiGradePost(
            scenario_id="scn-00112233aabbccdd", platform="canvas",
            lineitem="https://canvas.example.org/li/1", lti_user="u1", assignment_id="asg-1",
            score_given=80.0, score_maximum=100.0, timestamp=now.isoformat(), state="failed",
            attempts=3, next_at=now, last_error="score post answered HTTP 404",
            posted_at=None, created_at=now))
    rows = json.loads(_run(env, "lti", "grades", "--state", "failed", "--json"))["grades"]
    assert [(r["state"], r["last_error"]) for r in rows] == [
        ("failed", "score post answered HTTP 404")]
    assert "queued" in _run(env, "lti", "retry", "scn-00112233aabbccdd")
    rows = json.loads(_run(env, "lti", "grades", "--json"))["grades"]
    assert rows[0]["state"] == "pending"
    assert "owes no unposted grade" in _run(env, "lti", "retry", "scn-ffffffffffffffff", code=1)


def test_a_grade_list_cut_at_its_limit_says_so(tmp_path: Path, sqlite_only_store: str) -> None:
    """`forge lti grades` listed the newest 1,000 grades and nothing more, saying nothing:
    after a term of a class of 200 (five assignments: 1,000 grades posted) a grade that
    failed or still waits for its learner's LMS id was in no listing. Now a cut list says
    so (a line on stderr, `"more": true` in --json), --limit lengthens it, and every grade
    is listed once, newest first."""
    env: dict[str, str | None] = {"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "s"),
                                  "FORGE_DB_URL": f"sqlite:///{tmp_path / 'forge.db'}"}
    settings = load_settings({k: v for k, v in env.items() if v is not None})
    upgrade(settings.db_url)
    now = datetime.now(UTC)
    count = 1001
    with Database(settings.db_url).session() as sess:
        sess.add_all(LtiGradePost(
            scenario_id=f"scn-{n:016x}", platform="canvas", lineitem="", lti_user="",
            assignment_id="asg-1", score_given=80.0, score_maximum=100.0,
            timestamp=now.isoformat(), state="posted" if n else "pending", attempts=1,
            next_at=now, last_error=None if n else "waiting for the LMS user id of lea",
            posted_at=now if n else None, created_at=now + timedelta(seconds=n))
            for n in range(count))
    runner = CliRunner()
    cut = runner.invoke(app, ["lti", "grades", "--json"], env=env)
    assert cut.exit_code == 0, cut.output
    body = json.loads(cut.stdout)
    assert (len(body["grades"]), body["more"]) == (1000, True)
    assert "only the newest 1000 are listed" in cut.stderr
    whole = runner.invoke(app, ["lti", "grades", "--json", "--limit", "2000"], env=env)
    body = json.loads(whole.stdout)
    assert body["more"] is False and "only the newest" not in whole.stderr
    assert [g["scenario_id"] for g in body["grades"]] == [
        f"scn-{n:016x}" for n in reversed(range(count))]
    assert body["grades"][-1]["waiting"] is True  # the oldest: the one that was left out
    assert "--limit" in runner.invoke(app, ["lti", "grades", "--limit", "0"], env=env).output
