"""An owed LMS grade survives a token endpoint hiccup, and a grade the LMS never takes
stops being retried (issue 18 item 4, security review).

Before: a token endpoint answering 400/401 (the LMS rotating its keys, a clock skew) failed
every grade posted meanwhile for good, while a line item answering 5xx was retried for
ever. After: a token refusal is retried like any outage, and a grade is marked `failed`
after MAX_ATTEMPTS posts or once older than MAX_AGE (`forge lti retry` queues it again).
The platform is a real HTTP server on loopback; the store runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from forge.classroom import lti_grade_posts
from forge.config import load_settings
from forge.identity.lti_config import generate_key, load_lti
from forge.identity.lti_services import LtiCallFailed, PlatformClient
from forge.services.scoreboard.lti_grades import GradePoster
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import LtiGradePost

from ..live_server import live_server
from ..support.lti_grades import graded_attempts

TOKEN_CALLS: list[str] = []  # the paths of the token requests the stand-in LMS received


@pytest.fixture(scope="module")
def rotating() -> Iterator[str]:
    """An LMS stand-in: at /token a platform whose token endpoint refuses our assertion
    (mid key rotation), at /up/… one that takes every score."""
    app = FastAPI()

    @app.post("/token")
    async def token() -> Response:
        TOKEN_CALLS.append("/token")
        return JSONResponse({"error": "invalid_client"}, status_code=401)

    @app.post("/up/token")
    async def up_token() -> Response:
        TOKEN_CALLS.append("/up/token")
        return JSONResponse({"access_token": "t", "expires_in": 3600})

    @app.post("/up/li/{n}/scores")
    async def up_score(n: int) -> Response:
        return Response(status_code=200)

    with live_server(app) as url:
        yield url


async def test_a_token_refusal_is_not_final(tmp_path: Path, rotating: str) -> None:
    key = tmp_path / "tool.pem"
    generate_key(key)
    path = tmp_path / "lti.yaml"
    path.write_text(yaml.safe_dump({
        "tool": {"base_url": "https://forge.example.org", "private_key_file": str(key)},
        "platforms": {"lms": {"tenant": "acme", "issuer": rotating, "client_id": "c1",
                              "deployment_ids": ["d1"], "auth_login_url": f"{rotating}/auth",
                              "auth_token_url": f"{rotating}/token",
                              "key_set_url": f"{rotating}/jwks"}}}))
    reg = load_lti(path)
    async with httpx.AsyncClient() as http:
        with pytest.raises(LtiCallFailed) as failed:
            await PlatformClient(reg, http).post_score(
                reg.platforms["lms"], f"{rotating}/lineitems/1", "u1", 1.0, 1.0,
                "2026-12-01T00:00:00Z")
    assert "HTTP 401" in str(failed.value) and not failed.value.final


@pytest.fixture
def db(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def _owe(db: Database, scenario_id: str, attempts: int, age: timedelta, platform: str = "lms",
         lineitem: str = "https://lms.example.org/li/1") -> None:
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(LtiGradePost(
            scenario_id=scenario_id, platform=platform, lineitem=lineitem,
            lti_user="u1", assignment_id="asg-1", score_given=50.0, score_maximum=100.0,
            timestamp="2026-12-01T00:00:00Z", state=lti_grade_posts.PENDING, attempts=attempts,
            next_at=now, last_error=None, posted_at=None, created_at=now - age))


def test_retries_of_a_grade_are_capped(db: Database) -> None:
    _owe(db, "sc-fresh", 0, timedelta(0))
    _owe(db, "sc-many", lti_grade_posts.MAX_ATTEMPTS - 1, timedelta(hours=1))
    _owe(db, "sc-old", 3, lti_grade_posts.MAX_AGE + timedelta(minutes=1))
    for scenario_id in ("sc-fresh", "sc-many", "sc-old"):
        lti_grade_posts.grade_retry(db, scenario_id, "score post answered HTTP 503")
    states = {s: (g.state, g.attempts, g.last_error) for s in ("sc-fresh", "sc-many", "sc-old")
              if (g := lti_grade_posts.grade_of(db, s)) is not None}
    assert states == {
        "sc-fresh": ("pending", 1, "score post answered HTTP 503"),
        "sc-many": ("failed", lti_grade_posts.MAX_ATTEMPTS, "score post answered HTTP 503"),
        "sc-old": ("failed", 4, "score post answered HTTP 503")}
    assert [g.scenario_id for g in lti_grade_posts.due_grades(db, datetime.now(UTC))] == []
    assert lti_grade_posts.requeue_grade(db, "sc-many")  # the operator's `forge lti retry`
    assert lti_grade_posts.grade_of(db, "sc-many").state == "pending"  # type: ignore[union-attr]


def test_the_grade_book_gets_the_learners_best_so_far(db: Database) -> None:
    """Review CD: each graded attempt was posted as it was, and a platform keeps the latest
    score it is sent: 0.9 then 0.3 read 30 in the grade book and 90 on Forge's dashboard
    (the best). Now each post carries the best so far."""
    graded = graded_attempts(db)
    given = []
    for n, score in enumerate((0.9, 0.3, 1.0, 0.5), start=1):
        grade = lti_grade_posts.grade_of(db, graded(n, score))
        assert grade is not None
        given.append(grade.score_given)
    assert given == [90.0, 90.0, 100.0, 100.0]


async def test_a_failing_platform_is_called_once_a_round_and_holds_no_other(
        tmp_path: Path, rotating: str, db: Database) -> None:
    """Each due grade of a platform that was down or timing out was posted in turn, each
    call waiting up to its 10 s timeout: 20 due grades held the poster 200 s a round, every
    other LMS's grades behind them, and the failing LMS was called 20 times a round. Its
    first failure now defers its other grades of the round to that grade's retry (no post
    counted), and the next platform's grade is posted in the same round."""
    key = tmp_path / "tool.pem"
    generate_key(key)
    path = tmp_path / "lti.yaml"

    def platform(tenant: str, client_id: str, token: str) -> dict[str, object]:
        return {"tenant": tenant, "issuer": rotating, "client_id": client_id,
                "deployment_ids": ["d1"], "auth_login_url": f"{rotating}/auth",
                "auth_token_url": f"{rotating}{token}", "key_set_url": f"{rotating}/jwks"}

    path.write_text(yaml.safe_dump({
        "tool": {"base_url": "https://forge.example.org", "private_key_file": str(key)},
        "platforms": {"down": platform("acme", "c1", "/token"),
                      "up": platform("globex", "c2", "/up/token")}}))
    reg = load_lti(path)
    for n in (1, 2, 3):
        _owe(db, f"sc-down-{n}", 0, timedelta(minutes=n), "down", f"{rotating}/li/{n}")
    _owe(db, "sc-up", 0, timedelta(0), "up", f"{rotating}/up/li/9")
    poster = GradePoster(load_settings({"STORAGE_ROOT": str(tmp_path / "storage")}), db, reg)
    TOKEN_CALLS.clear()
    async with httpx.AsyncClient() as http:
        assert await poster.post_due(PlatformClient(reg, http)) == 1
    assert TOKEN_CALLS == ["/token", "/up/token"]  # the failing platform once
    grades = {s: g for s in ("sc-down-1", "sc-down-2", "sc-down-3", "sc-up")
              if (g := lti_grade_posts.grade_of(db, s)) is not None}
    assert grades["sc-up"].state == "posted"
    down = [grades[f"sc-down-{n}"] for n in (1, 2, 3)]
    [tried] = [g for g in down if g.attempts]  # one post made
    held = [g for g in down if g is not tried]
    assert tried.state == "pending"
    assert tried.last_error == "token endpoint answered HTTP 401"
    for grade in held:
        assert (grade.state, grade.attempts, grade.next_at) == ("pending", 0, tried.next_at)
        assert grade.last_error == ("waiting: another grade's post to platform down failed "
                                    "(token endpoint answered HTTP 401)")
    assert lti_grade_posts.due_grades(db, datetime.now(UTC)) == []
    # When they come due with it, the grades held back go first: one line item that keeps
    # failing does not hold its platform's other grades until it is given up.
    due = lti_grade_posts.due_grades(db, tried.next_at.replace(tzinfo=UTC))
    assert [g.scenario_id for g in due][-1] == tried.scenario_id and len(due) == 3
