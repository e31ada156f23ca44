"""Who teaches a cohort: its instructors, and the rule that nobody is both an instructor and
a learner of one class (a learner of their own class would be counted on its dashboard
and take its assignments). Every path that makes an instructor (the API, an LMS launch or
roster) goes through ``make_staff``; every enrolment path leaves instructors out under
the cohort's lock (``cohorts``, ``lti_links``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from forge.classroom.cohorts import Manager, lock_cohort, managed_cohort
from forge.store.db import Database
from forge.store.models import Assignment, AssignmentExtension, CohortStaff, Enrolment

log = logging.getLogger("forge.classroom.staff")


def add_instructor(db: Database, who: Manager, cohort_id: str, subject: str) -> None:
    """Let another person of the tenant manage this cohort too; one of its learners stops
    being one (``make_staff``)."""
    with db.session() as sess:
        managed_cohort(sess, who, cohort_id)
        make_staff(sess, cohort_id, [subject])


def make_staff(sess: Session, cohort_id: str, subjects: Sequence[str]) -> list[str]:
    """Make ``subjects`` instructors of the cohort (those not yet); the ones newly made.
    Nobody is both an instructor and a learner of one class (a learner of their own class
    would be counted on its dashboard and take its assignments): an enrolled one's
    enrolment ends as ``drop_enrolment`` ends it. Under the cohort's lock, like every
    enrolment, so a roster read before this commits cannot seat them again."""
    lock_cohort(sess, cohort_id)
    wanted = list(dict.fromkeys(subjects))
    held = set(sess.scalars(select(CohortStaff.subject).where(
        CohortStaff.cohort_id == cohort_id, CohortStaff.subject.in_(wanted)))) if wanted \
        else set()
    new = [s for s in wanted if s not in held]
    for subject in new:
        sess.add(CohortStaff(cohort_id=cohort_id, subject=subject))
    enrolled = set(sess.scalars(select(Enrolment.subject).where(
        Enrolment.cohort_id == cohort_id, Enrolment.subject.in_(wanted)))) if wanted \
        else set()
    for subject in (s for s in wanted if s in enrolled):  # also one both before this rule
        drop_enrolment(sess, cohort_id, subject)
        log.info("learner made instructor: cohort=%s subject=%s (enrolment ended)",
                 cohort_id, subject)
    return new


def drop_enrolment(sess: Session, cohort_id: str, subject: str) -> str | None:
    """End a learner's enrolment in the cohort, with their own due times in it (enrolled
    again, they start afresh); how they had come in, None when they were not enrolled.
    Their attempts, labs and results are kept. The caller holds the cohort's lock."""
    row = sess.get(Enrolment, (cohort_id, subject))
    if row is None:
        return None
    via = row.via
    sess.delete(row)
    sess.execute(delete(AssignmentExtension).where(
        AssignmentExtension.subject == subject,
        AssignmentExtension.assignment_id.in_(
            select(Assignment.assignment_id).where(Assignment.cohort_id == cohort_id))))
    return via
