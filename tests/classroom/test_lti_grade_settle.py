"""Grades waiting to learn where they go, settled for a whole class: on SQLite and
PostgreSQL.

- A launch into the course settles the cohort's waiting grades (`settle_owed`) inside the
  learner's launch request, and the scoreboard's poster does it every minute. Learners the
  LMS never named (enrolled by invite link) wait for good, so every launch looked at all of
  them again: four queries per waiting grade, in one write transaction (a class of 200 with
  three attempts each: 2,400 statements holding SQLite's write lock at each launch). It
  takes a fixed number of statements whatever the class's size, and settles what it did.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forge.classroom import assignments, cohorts, lti_grade_outbox, lti_grade_posts, lti_links
from forge.classroom.cohorts import Manager
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import AssignmentAttempt, LtiGradePost

from ..support.sql_statements import sql_statements

LINE = "https://lms.example.org/lineitems/1"
ANN = Manager("acme", "ann", "instructor")


@pytest.fixture
def db(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def _waiting_class(db: Database, name: str, course: str, learners: int,
                   tries: int = 2) -> tuple[str, str, list[str]]:
    """A cohort linked to `course` whose learners each have `tries` graded attempts with
    grades waiting (no LMS user id, no grade column known yet): cohort, assignment,
    learners."""
    cohort = cohorts.create_cohort(db, ANN, name).cohort_id
    subjects = [f"{name}.{n:03d}" for n in range(learners)]
    cohorts.enrol_subjects(db, ANN, cohort, subjects)
    now = datetime.now(UTC)
    asg = assignments.create_assignment(
        db, ANN, cohort, template_id="lab-netplus", opens_at=now,
        closes_at=now + timedelta(days=1), attempts_allowed=5, hints_allowed=True,
        known_templates={"lab-netplus"}).assignment_id
    lti_links.link_course(db, "lms", course, "acme", cohort)
    with db.session() as sess:
        for n, subject in enumerate(subjects):
            for attempt in range(1, tries + 1):
                sid = f"scn-{name}{n:03d}{attempt:02d}"
                sess.add(AssignmentAttempt(assignment_id=asg, subject=subject,
                                           attempt=attempt, request_id=f"req-{sid}",
                                           scenario_id=sid, at=now))
                sess.add(LtiGradePost(
                    scenario_id=sid, platform="lms", lineitem="", lti_user="",
                    assignment_id=asg, score_given=float(10 * attempt), score_maximum=100.0,
                    timestamp=f"2026-12-01T00:00:0{attempt}Z", state="pending", attempts=0,
                    next_at=now, last_error="waiting", posted_at=None, created_at=now))
    return cohort, asg, subjects


def test_a_class_s_waiting_grades_are_settled_in_a_fixed_number_of_statements(
        db: Database) -> None:
    cohort, asg, learners = _waiting_class(db, "inv", "course-1", 60)
    with sql_statements(db) as seen:  # nobody's LMS id known: all keep waiting
        assert lti_grade_outbox.settle_owed(db, cohort) == 0
    assert len(seen) <= 12, len(seen)  # was 4 a waiting grade: 480
    # A learner opens the activity (the grade column) and a roster sync names half the
    # class: their grades go, each with the learner's best; the others still wait.
    lti_links.link_grade(db, asg, learners[0], "lms", "u-0", LINE)
    with db.session() as sess:
        lti_links.remember_users(sess, "lms", [(s, f"u-{n}") for n, s in
                                               enumerate(learners[1:30], start=1)])
    with sql_statements(db) as seen:
        assert lti_grade_outbox.settle_owed(db, cohort) == 60  # 30 learners, 2 grades each
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 12, len(selects)
    due = lti_grade_posts.due_grades(db, datetime.now(UTC) + timedelta(seconds=1),
                                      limit=1000)
    assert sorted({g.lti_user for g in due}) == sorted(f"u-{n}" for n in range(30))
    assert {(g.lineitem, g.score_given, g.last_error) for g in due} == {(LINE, 20.0, None)}
    waiting = [g for g in lti_grade_posts.list_grades(db) if g.lti_user == ""]
    assert len(waiting) == 60
    assert all("LMS user id of inv." in (g.last_error or "") for g in waiting)


def test_one_class_of_many_waiting_grades_hides_no_other_class_from_the_poster(
        db: Database) -> None:
    """The poster settles, every minute, each cohort with a grade waiting. The cohorts were
    read as the first 1,000 waiting grades, then made distinct: a class whose 1,002 grades
    wait for good (learners the LMS never named) hid a later class's grade, which then
    waited until someone launched into that course again."""
    big, _, _ = _waiting_class(db, "inv", "course-1", 501)
    small, asg, (lea,) = _waiting_class(db, "lms", "course-2", 1, tries=1)
    assert lti_grade_outbox.waiting_cohorts(db) == sorted([big, small])
    lti_links.link_grade(db, asg, lea, "lms", "u-lea", LINE)
    assert lti_grade_outbox.settle_owed(db, small) == 1
    assert lti_grade_outbox.waiting_cohorts(db) == [big]
