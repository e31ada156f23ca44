"""Forge as an LTI 1.3 tool, driven by the local LTI platform emulator (no LMS runs here;
tests/support/lti_platform.py), against the real spawn_service (uvicorn), a real
nats-server and SQLite and PostgreSQL.

One course from start to grade: the instructor adds a Forge lab by deep linking (the
signed LtiDeepLinkingResponse verifies with the key set Forge publishes, and names the new
assignment with a 100-point line item); a learner's resource-link launch lands signed in
on that assignment with its Start button; the course roster is read into the cohort
(Names and Role Provisioning); the learner starts the lab through the assignment gate, and
when the verdict is announced (`forge.score.finalized` on the bus, as the scoreboard does
once it has signed) the scoreboard (real app, same LTI file) owes the grade, keeps it while the
platform is down, and posts it (scoreGiven/scoreMaximum, Completed, FullyGraded) with a
client-credentials token once the platform is back.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.bus.contracts import ScoreFinalizedV1
from forge.classroom import lti_grade_posts, lti_links
from forge.classroom.cohorts import enrolled_cohorts
from forge.config import load_settings
from forge.entitlements.grants import grant
from forge.identity.roles import role_of
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.store.models import LtiGradePost

from ..services.conftest import prod_environ
from ..support.lab_catalog import lab_catalog_dir
from ..support.lti_course import (
    DL,
    add_lab,
    announce,
    course_and_forge,
    start_from_landing,
)
from ..support.lti_platform import INSTRUCTOR_ROLE, LEARNER_ROLE, landing_of, launch_learner
from ..support.polling import until

SHA = "a" * 64


def _finalized(scenario_id: str, subject: str) -> ScoreFinalizedV1:
    return ScoreFinalizedV1(
        scenario_id=scenario_id, run_id="run-1", track="netplus", tenant_id="acme",
        subject=subject, plan="FREE", score=0.5, passed=1, total=2,
        completed_at="2026-12-01T10:00:00+00:00", score_sha256=SHA, bundle="evidence.tar.zst",
        bundle_sha256=SHA, verdict_sha256=SHA, verdict_pub_sha256=SHA, key_id="k1")


def test_deep_link_launch_roster_and_grade_passback(tmp_path: Path, nats: NatsServer,
                                                          db_url: str) -> None:
    environ = prod_environ(tmp_path / "storage", **nats.client_env(), FORGE_DB_URL=db_url,
                           FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    with course_and_forge(tmp_path, environ) as (emu, forge):
        db = forge.db
        grant(db, "acme", "FREE")

        # The instructor adds a lab to the course (deep linking).
        added = add_lab(forge.url, emu, attempts=2)
        teacher, answer, pick, back = added.teacher, added.launch, added.pick, added.back
        assert answer.status_code == 200, answer.text
        assert landing_of(answer) == "/lti/deep-link"
        assert role_of(db, "acme", "lti.tina") == "instructor"
        assert pick.status_code == 200 and "Add a Forge lab" in pick.text
        assert back.status_code == 200, back.text
        assert f'action="{emu.issuer}/deep-link-return"' in back.text
        assert f"form-action 'self' {emu.issuer}" in back.headers["content-security-policy"]
        claims = added.claims(emu)
        assert claims["iss"] == emu.client_id
        assert claims["https://purl.imsglobal.org/spec/lti/claim/message_type"] == \
            "LtiDeepLinkingResponse"
        assert claims[DL + "data"] == "emu-dl-data"
        (item,) = claims[DL + "content_items"]
        assert item["type"] == "ltiResourceLink" and item["url"] == forge.url + "/lti/launch"
        assert item["lineItem"]["scoreMaximum"] == 100
        assignment_id = item["custom"]["forge_assignment"]
        course = lti_links.course_of(db, "emulator", emu.course_id)
        assert course is not None
        cohort_id = course.cohort_id

        # A learner opens the activity: signed in, on the assignment, ready to start.
        landing = launch_learner(forge.url, emu, assignment_id, "lena")
        assert landing.status == 200 and landing.url == f"/lti/assignment/{assignment_id}"
        assert "<h1>Find the server</h1>" in landing.page and "Start this lab" in landing.page
        assert "0 of 2 attempts" in landing.page
        assert enrolled_cohorts(db, "acme", "lti.lena") == [cohort_id]

        # The roster of the course comes into the cohort (NRPS).
        emu.members = [
            {"user_id": "lena", "roles": [LEARNER_ROLE], "status": "Active"},
            {"user_id": "liam", "roles": [LEARNER_ROLE], "status": "Active"},
            {"user_id": "gone", "roles": [LEARNER_ROLE], "status": "Inactive"},
            {"user_id": "tina", "roles": [INSTRUCTOR_ROLE]}]
        synced = teacher.post(f"/v1/cohorts/{cohort_id}/lti-roster",
                              headers={"origin": forge.url})
        assert synced.status_code == 200, synced.text
        assert synced.json() == {"cohort_id": cohort_id, "members": 3, "added": 1,
                                 "not_in_course": []}
        assert enrolled_cohorts(db, "acme", "lti.liam") == [cohort_id]
        assert enrolled_cohorts(db, "acme", "lti.gone") == []
        # A link Forge hands out is under the LTI file's base_url, the site's configured
        # public URL, whatever site the request's Host named.
        evil = {"origin": "http://evil.example", "host": "evil.example"}
        invite = teacher.post(f"/v1/cohorts/{cohort_id}/invites", json={}, headers=evil)
        assert invite.status_code == 201, invite.text
        assert invite.json()["url"] == f"{forge.url}/join/{invite.json()['invite']}"
        # liam leaves the course: a re-sync names him and takes nobody out (the instructor
        # does, keeping his results); lena, who launched, is still listed.
        emu.members[1]["status"] = "Inactive"
        resynced = teacher.post(f"/v1/cohorts/{cohort_id}/lti-roster",
                                headers={"origin": forge.url})
        assert resynced.json() == {"cohort_id": cohort_id, "members": 2, "added": 0,
                                   "not_in_course": ["lti.liam"]}
        assert enrolled_cohorts(db, "acme", "lti.liam") == [cohort_id]

        # The learner starts the lab from the landing page (the assignment gate).
        scenario_id = start_from_landing(forge.url, landing, assignment_id, "lti-start-0001")

        # The verdict is announced (as the scoreboard does once it signed) to a scoreboard
        # with the same LTI file; the platform is down at first: the grade is kept.
        emu.down = True
        sb_env = {**forge.environ, "STORAGE_ROOT": str(tmp_path / "scoreboard")}
        settings = load_settings(sb_env)
        with TestClient(build_scoreboard(settings, lti_poll_s=0.2)):
            asyncio.run(announce(settings, _finalized(scenario_id, "lti.lena")))

            def failed_once() -> bool:
                row = lti_grade_posts.grade_of(db, scenario_id)
                return row is not None and row.attempts >= 1

            until(failed_once, "a first post refused by the platform")
            row = lti_grade_posts.grade_of(db, scenario_id)
            assert row is not None and row.state == "pending"
            assert row.last_error == "score post answered HTTP 503" and not emu.scores

            emu.down = False
            with db.session() as sess:  # what waiting out the backoff does
                kept = sess.get(LtiGradePost, scenario_id)
                assert kept is not None
                kept.next_at = datetime.now(UTC)
            grade = emu.wait_for_grade("lena", 60)

            def posted_once() -> bool:  # the platform answered; the post is recorded
                row = lti_grade_posts.grade_of(db, scenario_id)
                return row is not None and row.state == "posted"

            # before the scoreboard stops: a stop between the platform's answer and the
            # record leaves the grade pending, to be posted again (at least once)
            until(posted_once, "the grade recorded as posted")
        assert grade == {"scoreGiven": 50.0, "scoreMaximum": 100.0,
                         "activityProgress": "Completed",
                         "gradingProgress": "FullyGraded",
                         "timestamp": "2026-12-01T10:00:00+00:00", "userId": "lena"}
        assert emu.scores[-1]["lineitem"] == assignment_id
        posted = lti_grade_posts.grade_of(db, scenario_id)
        assert posted is not None and posted.state == "posted"
