"""The LMS grade book gets the learner's best graded score of an LTI-linked assignment,
whichever Start button began the lab (outside pass): driven by the LTI platform emulator
(tests/support/lti_platform.py) against the real spawn_service and scoreboard, on SQLite
and PostgreSQL.

Before: the grade link was recorded only by a learner's launch from the LMS, and the grade
owed was the best of earlier *posts*. So a learner enrolled by the roster sync who started
the lab from Forge (POST /v1/spawn, the /tracks "Start this lab for <class>" button) got
nothing in the grade book (`forge lti grades` had no row); after a worse attempt started
from the LMS the grade book read 0 while the dashboard showed the best (1.0); and a synced
learner who never launched never got a grade at all. Now every graded attempt of an
assignment of an LMS-linked cohort owes a grade: where it goes not known yet, it waits
(pending, with the reason) until a launch or a roster sync tells, and it is the best of the
learner's graded attempts (the dashboard's computation).

A learner taken out of the class gets no grade sent for a lab graded after that, and the
grade kept says why (instructor at 200 learners). Before: the instructor took `lti.u005` out
of the class (`DELETE /v1/cohorts/<id>/learners/lti.u005`) while their lab ran; it was graded
0.9 and the LMS grade book got 90 for them, while the dashboard and its CSV no longer listed
them: the grade book and the instructor's own views disagreed, and nothing said a grade had
gone out. Now the grade is kept as failed with the reason ("taken out of the class"),
nothing is posted, and `forge lti retry` sends it when the operator decides it should go.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from forge.bus import NatsServer
from forge.bus.contracts import ScoreFinalizedV1
from forge.classroom import lti_grade_posts, lti_links
from forge.cli import app as forge_cli
from forge.config import Settings, load_settings
from forge.entitlements.grants import grant
from forge.identity.caller import SESSION_COOKIE
from forge.lifecycle import states
from forge.quotas.limiter import release
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.services.spawn.web.security import learner_session
from forge.store.db import Database
from forge.store.models import Scenario

from ..services.conftest import prod_environ
from ..support.lab_catalog import lab_catalog_dir
from ..support.lti_course import (
    add_lab,
    announce,
    course_and_forge,
    start_from_landing,
)
from ..support.lti_platform import (
    INSTRUCTOR_ROLE,
    LEARNER_ROLE,
    LtiPlatformEmulator,
    launch_learner,
)
from ..support.polling import until

SHA = "a" * 64


def _graded(db: Database, sb_root: Path, scenario_id: str, subject: str, score: float,
            when: str) -> ScoreFinalizedV1:
    """What the scoreboard leaves of a graded lab: the lab completed in the store, its
    score.json among the results, and the `forge.score.finalized` it announces."""
    with db.session() as sess:
        row = sess.get(Scenario, scenario_id)
        assert row is not None
        row.state = states.COMPLETED
    release(db, scenario_id)  # the lab ended: its concurrency slot is free
    results = sb_root / "scenarios" / scenario_id / "results"
    results.mkdir(parents=True)
    (results / "score.json").write_text(json.dumps({
        "scenario_id": scenario_id, "tenant_id": "acme", "subject": subject,
        "track": "netplus", "score": score, "passed": int(score * 10), "total": 10,
        "completed_at": when, "criteria": [], "retention_days": 30}))
    return ScoreFinalizedV1(
        scenario_id=scenario_id, run_id="run-1", track="netplus", tenant_id="acme",
        subject=subject, plan="FREE", score=score, passed=int(score * 10), total=10,
        completed_at=when, score_sha256=SHA, bundle="evidence.tar.zst", bundle_sha256=SHA,
        verdict_sha256=SHA, verdict_pub_sha256=SHA, key_id="k1")


def _grades_of(emu: LtiPlatformEmulator, user: str) -> list[float]:
    return [s["body"]["scoreGiven"] for s in list(emu.scores)
            if s["body"].get("userId") == user]


def _start_from_forge(forge_url: str, settings: Settings, subject: str,
                      assignment_id: str) -> str:
    """A learner signed in to Forge (never through the LMS) starts the assignment's lab
    with the API the /tracks "Start this lab for <class>" button calls."""
    web = httpx.Client(base_url=forge_url, timeout=30)
    web.cookies.set(SESSION_COOKIE, learner_session(settings, "acme", subject))
    started = web.post("/v1/spawn", json={"track": "netplus", "assignment_id": assignment_id},
                       headers={"origin": forge_url})
    assert started.status_code in (200, 201, 202), started.text
    return str(started.json()["scenario_id"])


def test_grades_of_labs_started_anywhere_reach_the_grade_book_unless_taken_out(
        tmp_path: Path, nats: NatsServer, db_url: str) -> None:
    environ = prod_environ(tmp_path / "storage", **nats.client_env(), FORGE_DB_URL=db_url,
                           FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    with course_and_forge(tmp_path, environ) as (emu, forge):
        db = forge.db
        grant(db, "acme", "FREE")
        spawn_settings = load_settings(forge.environ)
        # The instructor adds the lab to the course: 3 attempts.
        added = add_lab(forge.url, emu, attempts=3)
        assignment_id, teacher = added.assignment_id(emu), added.teacher
        course = lti_links.course_of(db, "emulator", emu.course_id)
        assert course is not None

        # The roster comes in (NRPS): u003 and u004 are enrolled, never launched.
        emu.members = [{"user_id": u, "roles": [LEARNER_ROLE], "status": "Active"}
                       for u in ("u003", "u004", "u005")]
        emu.members.append({"user_id": "tina", "roles": [INSTRUCTOR_ROLE]})
        synced = teacher.post(f"/v1/cohorts/{course.cohort_id}/lti-roster",
                              headers={"origin": forge.url})
        assert synced.status_code == 200, synced.text

        sb_root = tmp_path / "scoreboard"
        sb_settings = load_settings({**forge.environ, "STORAGE_ROOT": str(sb_root)})
        with TestClient(build_scoreboard(sb_settings, lti_poll_s=0.2)):
            # u003 starts from Forge and solves it (1.0) before anyone opened the
            # activity in the LMS: its grade column is not known yet, so the grade
            # waits, shown as pending with the reason.
            first = _start_from_forge(forge.url, spawn_settings, "lti.u003",
                                      assignment_id)
            asyncio.run(announce(sb_settings, _graded(
                db, sb_root, first, "lti.u003", 1.0, "2026-12-01T10:00:00+00:00")))
            until(lambda: lti_grade_posts.grade_of(db, first) is not None, "u003's grade owed")
            waiting = lti_grade_posts.grade_of(db, first)
            assert waiting is not None and waiting.state == "pending"
            assert waiting.lti_user == "u003" and waiting.lineitem == ""
            assert "grade column" in (waiting.last_error or "")
            listed = CliRunner().invoke(forge_cli, ["lti", "grades", "--json"],
                                        env={**forge.environ})
            assert listed.exit_code == 0, listed.output
            (row,) = json.loads(listed.output)["grades"]
            assert row["scenario_id"] == first and row["state"] == "pending"
            assert row["waiting"] and "grade column" in row["last_error"]
            time.sleep(0.6)  # a few poster rounds: nothing is posted nowhere
            assert emu.scores == []

            # u003 opens the activity from the LMS: the grade column is known, the
            # waiting grade goes. Then a worse attempt (0.0) started from the LMS: the
            # grade book keeps the best, 100, as the dashboard does.
            landing = launch_learner(forge.url, emu, assignment_id, "u003")
            assert landing.status == 200
            until(lambda: _grades_of(emu, "u003") == [100.0], "u003's Forge-started 1.0")
            assert emu.scores[-1]["lineitem"] == assignment_id
            second = start_from_landing(forge.url, landing, assignment_id, "lti-start-u003-2")
            asyncio.run(announce(sb_settings, _graded(
                db, sb_root, second, "lti.u003", 0.0, "2026-12-01T11:00:00+00:00")))
            until(lambda: len(_grades_of(emu, "u003")) == 2, "u003's second grade")
            assert _grades_of(emu, "u003") == [100.0, 100.0]

            # u004 never launches: enrolled by the sync, starts from Forge, 0.9. The
            # grade column is known from u003's launch: posted to u004's LMS id.
            third = _start_from_forge(forge.url, spawn_settings, "lti.u004",
                                      assignment_id)
            asyncio.run(announce(sb_settings, _graded(
                db, sb_root, third, "lti.u004", 0.9, "2026-12-01T12:00:00+00:00")))
            grade = emu.wait_for_grade("u004", 60)
            assert grade["scoreGiven"] == 90.0 and grade["userId"] == "u004"
            until(lambda: getattr(lti_grade_posts.grade_of(db, third), "state", "") == "posted",
                   "u004's grade recorded as posted")

            # u005 (enrolled by the sync, never launched) starts from Forge and is taken
            # out of the class while the lab runs: its 0.9 is kept as failed, not posted.
            lab = _start_from_forge(forge.url, spawn_settings, "lti.u005", assignment_id)
            out = teacher.delete(f"/v1/cohorts/{course.cohort_id}/learners/lti.u005",
                                 headers={"origin": forge.url})
            assert out.status_code == 200, out.text
            asyncio.run(announce(sb_settings, _graded(
                db, sb_root, lab, "lti.u005", 0.9, "2026-12-01T13:00:00+00:00")))
            until(lambda: lti_grade_posts.grade_of(db, lab) is not None, "the grade kept")
            kept = lti_grade_posts.grade_of(db, lab)
            assert kept is not None and kept.state == "failed", kept and kept.state
            assert kept.score_given == 90.0 and kept.lti_user == "u005"
            assert "lti.u005 was taken out of the class" in (kept.last_error or "")
            assert f"forge lti retry {lab}" in (kept.last_error or "")
            assert _grades_of(emu, "u005") == []  # a failed grade is never posted
            listed = CliRunner().invoke(forge_cli, ["lti", "grades", "--state", "failed",
                                                    "--json"], env={**forge.environ})
            assert listed.exit_code == 0, listed.output
            (row,) = json.loads(listed.stdout)["grades"]
            assert row["scenario_id"] == lab and "taken out" in row["last_error"]

            # The operator decides it should go: it goes, as any grade retried.
            again = CliRunner().invoke(forge_cli, ["lti", "retry", lab], env={**forge.environ})
            assert again.exit_code == 0, again.output
            assert emu.wait_for_grade("u005", 60)["scoreGiven"] == 90.0
