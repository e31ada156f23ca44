"""Who teaches a cohort: its instructors, and the rule that nobody is both an instructor and
a learner of one class (a learner of their own class would be counted on its dashboard
and take its assignments). Every path that makes an instructor (the API, an LMS launch or
roster) goes through ``make_staff``; every enrolment path leaves instructors out under
the cohort's lock (``cohorts``, ``lti_links``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from forge.classroom.cohorts import Manager, case_twin, lock_cohort, managed_cohort
from forge.errors import ForgeError, invalid_field
from forge.store.db import Database
from forge.store.models import (
    Assignment,
    AssignmentAttemptGrant,
    AssignmentExtension,
    CohortStaff,
    Enrolment,
)

log = logging.getLogger("forge.classroom.staff")


def add_instructor(db: Database, who: Manager, cohort_id: str, subject: str,
                   confirm: bool = False) -> None:
    """Let another person of the tenant manage this cohort too. One of its learners stops
    being one (``make_staff``), which leaves them off its dashboard and its grade export:
    only when ``confirm`` says the caller meant that (409 ``enrolled_learner`` otherwise;
    review CD: a learner added by mistake vanished from the grades, with no way back)."""
    with db.session() as sess:
        managed_cohort(sess, who, cohort_id)
        lock_cohort(sess, cohort_id)
        already = sess.get(CohortStaff, (cohort_id, subject)) is not None  # both: mended
        twin = None if already else case_twin(sess, cohort_id, subject)
        if twin is not None:  # as a roster line: a second person who never signs in
            raise invalid_field("subject", f'"{subject}" is the class\'s {twin[1]} '
                                f'"{twin[0]}" in other letter case: account ids are '
                                "case-sensitive, write it as their account is spelled")
        if not confirm and not already \
                and sess.get(Enrolment, (cohort_id, subject)) is not None:
            raise ForgeError(
                "enrolled_learner", 409,
                f"subject: {subject} is a learner of this cohort; as an instructor they stop "
                "being one and leave its dashboard and grade export (their labs and results "
                'stay): send "confirm": true to do that', [{"field": "subject"}])
        make_staff(sess, cohort_id, [subject])


def remove_instructor(db: Database, who: Manager, cohort_id: str, subject: str) -> None:
    """Stop ``subject`` managing this cohort (404 when they do not; 409 for its last
    instructor, as a class nobody teaches is left to operators). They are not enrolled
    again: an instructor made from a learner is enrolled anew by the usual ways."""
    with db.session() as sess:
        managed_cohort(sess, who, cohort_id)
        lock_cohort(sess, cohort_id)
        row = sess.get(CohortStaff, (cohort_id, subject))
        if row is None:
            raise ForgeError("not_found", 404,
                             f"subject: {subject} is not an instructor of this cohort",
                             [{"field": "subject"}])
        others = sess.scalar(select(func.count()).select_from(CohortStaff).where(
            CohortStaff.cohort_id == cohort_id, CohortStaff.subject != subject))
        if not others:
            raise ForgeError("last_instructor", 409,
                             f"subject: {subject} is this cohort's only instructor; add "
                             "another first", [{"field": "subject"}])
        sess.delete(row)
        log.info("instructor removed: cohort=%s subject=%s by=%s", cohort_id, subject,
                 who.subject)


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
    """End a learner's enrolment in the cohort, with their own due times and extra
    attempts in it (enrolled again, they start afresh); how they had come in, None when
    they were not enrolled. Their attempts, labs and results are kept. The caller holds
    the cohort's lock."""
    row = sess.get(Enrolment, (cohort_id, subject))
    if row is None:
        return None
    via = row.via
    sess.delete(row)
    of_cohort = select(Assignment.assignment_id).where(Assignment.cohort_id == cohort_id)
    for own in (AssignmentExtension, AssignmentAttemptGrant):  # due times, extra attempts
        sess.execute(delete(own).where(own.subject == subject,
                                       own.assignment_id.in_(of_cohort)))
    return via
