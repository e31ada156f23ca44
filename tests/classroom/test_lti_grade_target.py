"""Where an owed LMS grade goes and what it says, in the store (outside pass; the whole
course against the LMS emulator is tests/classroom/test_lti_grades_any_start.py). On SQLite
and PostgreSQL.

- The grade is the best of the learner's graded attempts as the dashboard computes it
  (`dashboard.best_result` over the scoreboard's results), not only of the grades posted
  before: an attempt graded before the class was linked to its LMS course still counts.
- With several LMS courses linked to one class, another learner's grade column may be
  another course's: only the learner's own launch tells where their grade goes.
- A grade waiting for the learner's LMS user id goes once a roster sync names them.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forge.bus.contracts import ScoreFinalizedV1
from forge.classroom import assignments, cohorts, lti_grade_outbox, lti_grade_posts, lti_links
from forge.classroom.cohorts import Manager
from forge.evidence.artifact_store import FilesystemArtifactStore
from forge.lifecycle import states
from forge.services.scoreboard.lti_grades import owe_best
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import AssignmentAttempt, LtiGradePost, Scenario

SHA = "a" * 64
LINE = "https://lms.example.org/lineitems/1"


@pytest.fixture
def db(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def _class(db: Database, learners: list[str]) -> tuple[str, str]:
    ann = Manager("acme", "ann", "instructor")
    cohort = cohorts.create_cohort(db, ann, "Course").cohort_id
    cohorts.enrol_subjects(db, ann, cohort, learners)
    now = datetime.now(UTC)
    asg = assignments.create_assignment(
        db, ann, cohort, template_id="lab-netplus", opens_at=now,
        closes_at=now + timedelta(days=1), attempts_allowed=5, hints_allowed=True,
        known_templates={"lab-netplus"}).assignment_id
    return cohort, asg


def _graded(db: Database, root: Path, asg: str, subject: str, n: int, score: float
            ) -> ScoreFinalizedV1:
    """A completed lab of attempt `n` with its result stored; its `score.finalized`."""
    sid = f"scn-{uuid.uuid4().hex[:16]}"
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Scenario(scenario_id=sid, request_id=f"req-{sid}", tenant_id="acme",
                          subject=subject, track="netplus", template_id="lab-netplus",
                          plan="FREE", state=states.COMPLETED, created_at=now, updated_at=now))
        sess.add(AssignmentAttempt(assignment_id=asg, subject=subject, attempt=n,
                                   request_id=f"req-{sid}", scenario_id=sid, at=now))
    when = f"2026-12-01T10:00:0{n}+00:00"
    results = root / "scenarios" / sid / "results"
    results.mkdir(parents=True)
    (results / "score.json").write_text(json.dumps({
        "scenario_id": sid, "tenant_id": "acme", "subject": subject, "track": "netplus",
        "score": score, "passed": 1, "total": 2, "completed_at": when, "criteria": []}))
    return ScoreFinalizedV1(
        scenario_id=sid, run_id="run-1", track="netplus", tenant_id="acme", subject=subject,
        plan="FREE", score=score, passed=1, total=2, completed_at=when, score_sha256=SHA,
        bundle="evidence.tar.zst", bundle_sha256=SHA, verdict_sha256=SHA,
        verdict_pub_sha256=SHA, key_id="k1")


def test_the_best_graded_attempt_counts_not_only_grades_posted(db: Database,
                                                                 tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    cohort, asg = _class(db, ["lti.lea"])
    before = _graded(db, tmp_path, asg, "lti.lea", 1, 0.9)
    assert not owe_best(db, store, before)  # not linked to an LMS course yet: owes nothing
    assert lti_grade_posts.grade_of(db, before.scenario_id) is None
    lti_links.link_course(db, "lms", "course-1", "acme", cohort)
    lti_links.link_grade(db, asg, "lti.lea", "lms", "u1", LINE)
    worse = _graded(db, tmp_path, asg, "lti.lea", 2, 0.3)
    assert owe_best(db, store, worse)
    grade = lti_grade_posts.grade_of(db, worse.scenario_id)
    assert grade is not None and grade.score_given == 90.0  # was 30.0 (only posts counted)
    assert (grade.lti_user, grade.lineitem, grade.last_error) == ("u1", LINE, None)


def test_with_several_courses_only_the_learners_own_launch_says_where(
        db: Database, tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    cohort, asg = _class(db, ["lti.a", "lti.b"])
    lti_links.link_course(db, "lms", "section-1", "acme", cohort)
    lti_links.link_course(db, "lms", "section-2", "acme", cohort)
    lti_links.link_grade(db, asg, "lti.a", "lms", "a", LINE)  # a's section's column
    lti_links.remember_user(db, "lms", "lti.b", "b")
    done = _graded(db, tmp_path, asg, "lti.b", 1, 1.0)
    assert owe_best(db, store, done)
    grade = lti_grade_posts.grade_of(db, done.scenario_id)
    assert grade is not None and grade.state == "pending" and grade.lineitem == ""
    assert "several courses" in (grade.last_error or "")
    assert lti_grade_posts.due_grades(db, datetime.now(UTC) + timedelta(hours=2)) == []
    # b opens the activity from their own section: their grade goes to its column.
    lti_links.link_grade(db, asg, "lti.b", "lms", "b", LINE + "-s2")
    assert lti_grade_outbox.settle_owed(db, cohort) == 1
    (due,) = lti_grade_posts.due_grades(db, datetime.now(UTC) + timedelta(seconds=1))
    assert (due.lti_user, due.lineitem, due.score_given) == ("b", LINE + "-s2", 100.0)


def test_a_grade_waiting_for_the_learner_goes_after_a_roster_sync(db: Database,
                                                                   tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path)
    cohort, asg = _class(db, ["lti.a", "lti.c"])
    lti_links.link_course(db, "lms", "course-1", "acme", cohort)
    lti_links.link_grade(db, asg, "lti.a", "lms", "a", LINE)
    done = _graded(db, tmp_path, asg, "lti.c", 1, 0.75)
    assert owe_best(db, store, done)
    grade = lti_grade_posts.grade_of(db, done.scenario_id)
    assert grade is not None and grade.lti_user == "" and grade.lineitem == LINE
    assert "LMS user id of lti.c" in (grade.last_error or "")
    with db.session() as sess:  # it waited longer than a grade is retried
        row = sess.get(LtiGradePost, done.scenario_id)
        assert row is not None
        row.created_at = datetime.now(UTC) - lti_grade_posts.MAX_AGE - timedelta(days=1)
    with db.session() as sess:  # what the roster sync stores beside the enrolments
        lti_links.remember_users(sess, "lms", [("lti.c", "c-lms-id")])
    assert lti_grade_outbox.settle_owed(db, cohort) == 1
    (due,) = lti_grade_posts.due_grades(db, datetime.now(UTC) + timedelta(seconds=1))
    assert (due.lti_user, due.lineitem, due.score_given, due.last_error) == (
        "c-lms-id", LINE, 75.0, None)
    # a first refused post is retried: the week it waited does not count as posting time
    lti_grade_posts.grade_retry(db, done.scenario_id, "score post answered HTTP 503")
    assert getattr(lti_grade_posts.grade_of(db, done.scenario_id), "state", "") == "pending"
