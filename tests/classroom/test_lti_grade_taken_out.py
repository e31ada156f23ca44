"""A learner taken out of an LMS-linked class gets no grade sent for a lab graded after
that, and the grade kept says why (instructor at 200 learners): driven by the LTI platform
emulator (tests/support/lti_platform.py) against the real spawn_service and scoreboard, on
SQLite and PostgreSQL.

Before: the instructor took `lti.u004` out of the class (`DELETE
/v1/cohorts/<id>/learners/lti.u004`) while their lab ran; it was graded 0.9 and the LMS grade
book got 90 for them, while the dashboard and its CSV no longer listed them: the grade book
and the instructor's own views disagreed, and nothing said a grade had gone out. Now the
grade is kept as failed with the reason ("taken out of the class"), nothing is posted, and
`forge lti retry` sends it when the operator decides it should go.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from forge.bus import NatsServer
from forge.classroom import lti_grade_outbox, lti_links
from forge.cli import app as forge_cli
from forge.config import load_settings
from forge.entitlements.grants import grant
from forge.services.scoreboard.app import build_app as build_scoreboard

from ..services.conftest import prod_environ
from ..support.lab_catalog import lab_catalog_dir
from ..support.lti_course import add_lab, announce, course_and_forge, until
from ..support.lti_platform import INSTRUCTOR_ROLE, LEARNER_ROLE, launch_learner
from .test_lti_grades_any_start import _graded, _grades_of, _start_from_forge


def test_no_grade_goes_out_for_a_learner_taken_out(
        tmp_path: Path, nats: NatsServer, db_url: str) -> None:
    environ = prod_environ(tmp_path / "storage", **nats.client_env(), FORGE_DB_URL=db_url,
                           FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    with course_and_forge(tmp_path, environ) as (emu, forge):
        db = forge.db
        grant(db, "acme", "FREE")
        spawn_settings = load_settings(forge.environ)
        added = add_lab(forge.url, emu, attempts=3)
        assignment_id, teacher = added.assignment_id(emu), added.teacher
        course = lti_links.course_of(db, "emulator", emu.course_id)
        assert course is not None
        emu.members = [{"user_id": u, "roles": [LEARNER_ROLE], "status": "Active"}
                       for u in ("u003", "u004")]
        emu.members.append({"user_id": "tina", "roles": [INSTRUCTOR_ROLE]})
        origin = {"origin": forge.url}
        synced = teacher.post(f"/v1/cohorts/{course.cohort_id}/lti-roster", headers=origin)
        assert synced.status_code == 200, synced.text
        # u003 opens the activity: the grade column is known for every learner.
        assert launch_learner(forge.url, emu, assignment_id, "u003").status == 200

        sb_root = tmp_path / "scoreboard"
        sb_settings = load_settings({**forge.environ, "STORAGE_ROOT": str(sb_root)})
        with TestClient(build_scoreboard(sb_settings, lti_poll_s=0.2)):
            lab = _start_from_forge(forge.url, spawn_settings, "lti.u004", assignment_id)
            out = teacher.delete(f"/v1/cohorts/{course.cohort_id}/learners/lti.u004",
                                 headers=origin)
            assert out.status_code == 200, out.text
            asyncio.run(announce(sb_settings, _graded(
                db, sb_root, lab, "lti.u004", 0.9, "2026-12-01T12:00:00+00:00")))
            until(lambda: lti_grade_outbox.grade_of(db, lab) is not None, "the grade kept")
            kept = lti_grade_outbox.grade_of(db, lab)
            assert kept is not None and kept.state == "failed", kept and kept.state
            assert kept.score_given == 90.0 and kept.lti_user == "u004"
            assert "lti.u004 was taken out of the class" in (kept.last_error or "")
            assert f"forge lti retry {lab}" in (kept.last_error or "")
            assert _grades_of(emu, "u004") == []  # a failed grade is never posted
            listed = CliRunner().invoke(forge_cli, ["lti", "grades", "--state", "failed",
                                                    "--json"], env={**forge.environ})
            assert listed.exit_code == 0, listed.output
            (row,) = json.loads(listed.stdout)["grades"]
            assert row["scenario_id"] == lab and "taken out" in row["last_error"]

            # The operator decides it should go: it goes, as any grade retried.
            again = CliRunner().invoke(forge_cli, ["lti", "retry", lab], env={**forge.environ})
            assert again.exit_code == 0, again.output
            assert emu.wait_for_grade("u004", 60)["scoreGiven"] == 90.0
