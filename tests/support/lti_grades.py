"""A class linked to an LMS course with one assignment, for the grade outbox's own tests
(tests/classroom/test_lti_grade_order.py, test_lti_grade_retry.py): no LMS, no services."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from forge.classroom import assignments, cohorts, lti_grade_outbox, lti_links
from forge.classroom.cohorts import Manager
from forge.store.db import Database
from forge.store.models import AssignmentAttempt


def graded_attempts(db: Database) -> Callable[[int, float], str]:
    """Make the class (lti.lea enrolled, their grade column known); returns a function
    recording lti.lea's attempt `n` graded `score` and owing its grade (its scenario id)."""
    ann = Manager("acme", "ann", "instructor")
    cohort = cohorts.create_cohort(db, ann, "Course").cohort_id
    cohorts.enrol_subjects(db, ann, cohort, ["lti.lea"])
    now = datetime.now(UTC)
    asg = assignments.create_assignment(
        db, ann, cohort, template_id="lab-netplus", opens_at=now,
        closes_at=now + timedelta(days=1), attempts_allowed=5, hints_allowed=True,
        known_templates={"lab-netplus"}).assignment_id
    lti_links.link_course(db, "lms", "course-1", "acme", cohort)
    lti_links.link_grade(db, asg, "lti.lea", "lms", "u1", "https://lms.example.org/li/1")

    def graded(n: int, score: float) -> str:
        scenario_id = f"scn-{n:016x}"
        with db.session() as sess:
            sess.add(AssignmentAttempt(assignment_id=asg, subject="lti.lea", attempt=n,
                                       request_id=f"req-{n}", scenario_id=scenario_id, at=now))
        assert lti_grade_outbox.owe_grade(db, scenario_id, score, f"2026-12-01T00:00:0{n}Z")
        return scenario_id

    return graded
