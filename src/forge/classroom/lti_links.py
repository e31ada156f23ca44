"""What LTI launches leave in the store: an LMS course (context) is a cohort, a launched
learner is enrolled in it, their LMS user id is remembered (`lti_users`) and so is their
line item per assignment: where `lti_grade_outbox` posts their grades.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from forge.classroom import cohorts
from forge.classroom.cohort_names import clean_name
from forge.classroom.cohorts import (
    cohort_full,
    learner_count,
    lock_cohort,
    new_id,
)
from forge.classroom.staff import make_staff
from forge.errors import ForgeError
from forge.store.db import Database
from forge.store.models import (
    Assignment,
    Cohort,
    CohortStaff,
    Enrolment,
    LtiContext,
    LtiGradeLink,
    LtiUser,
)


@dataclass(frozen=True)
class CourseSeat:
    """Who launched from which course: the platform's name, the tenant, the course and
    the person (their Forge subject and whether they teach it)."""

    platform: str
    tenant_id: str
    context_id: str
    title: str
    subject: str
    teaches: bool
    memberships_url: str | None = None


@dataclass(frozen=True)
class Seated:
    """Where a launch seated its person: the course's cohort, and whether they teach it
    (a teacher's launch, or an instructor of the cohort launching as a student: their
    student view, never a learner's seat)."""

    cohort_id: str
    teaches: bool


def course_cohort(db: Database, seat: CourseSeat) -> Seated:
    """The cohort of this course (made at its first launch, named after the course), with
    the person enrolled as a learner or added as its instructor; idempotent. 409 when the
    course was recorded for another tenant than the platform's (never crossed), and 409
    `cohort_full` for a learner not enrolled yet when it holds MAX_MEMBERS learners."""
    now = datetime.now(UTC)
    for _ in range(3):
        try:
            with db.session() as sess:
                row = sess.get(LtiContext, (seat.platform, seat.context_id))
                if row is None:
                    name = (clean_name(seat.title)
                            or clean_name(f"LMS course {seat.context_id}"))
                    cohort = Cohort(cohort_id=new_id("coh"), tenant_id=seat.tenant_id,
                                    name=name, created_by=seat.subject, idp_group=None,
                                    created_at=now)
                    sess.add(cohort)
                    sess.flush()
                    row = LtiContext(platform=seat.platform, context_id=seat.context_id,
                                     tenant_id=seat.tenant_id, cohort_id=cohort.cohort_id,
                                     memberships_url=seat.memberships_url, created_at=now)
                    sess.add(row)
                elif row.tenant_id != seat.tenant_id:  # the platform moved to another tenant
                    raise ForgeError("lti_course_other_tenant", 409, "context_id: this LMS "
                                     "course belongs to another organisation in Forge",
                                     [{"field": "context_id"}])
                elif seat.memberships_url:
                    row.memberships_url = seat.memberships_url
                cohort_id = row.cohort_id
                return Seated(cohort_id, _seat(sess, cohort_id, seat.tenant_id,
                                               seat.subject, seat.teaches, now))
        except IntegrityError:
            continue  # the same course's first launch by two people at once: read it again
    raise RuntimeError("LTI course could not be recorded")


ROSTER_CHUNK = 500  # people per IN list and per bulk insert


def _seat(sess: Session, cohort_id: str, tenant_id: str, subject: str, teaches: bool,
          now: datetime) -> bool:
    """Seat one person launching from the course: a teacher as an instructor (a learner
    of the class before stops being one), a learner enrolled unless they are one of its
    instructors (their student view: never a learner of their own class); whether they
    teach it."""
    if teaches:
        make_staff(sess, cohort_id, [subject])
        return True
    lock_cohort(sess, cohort_id)  # the count and the seat: one step
    if sess.get(CohortStaff, (cohort_id, subject)) is not None:
        return True
    if sess.get(Enrolment, (cohort_id, subject)) is None:
        held = learner_count(sess, cohort_id)
        if held >= cohorts.MAX_MEMBERS:
            raise cohort_full(cohort_id, held, 1)
        sess.add(Enrolment(cohort_id=cohort_id, subject=subject, tenant_id=tenant_id,
                           via="lti", enrolled_at=now))
    return False


def link_course(db: Database, platform: str, context_id: str, tenant_id: str,
                cohort_id: str) -> None:
    """Bind an LMS course to an existing cohort (before or after its first launch, as long
    as no other cohort has it): its launches then enrol into this cohort. 409 otherwise."""
    now = datetime.now(UTC)
    try:
        with db.session() as sess:
            row = sess.get(LtiContext, (platform, context_id))
            if row is not None and row.cohort_id != cohort_id:
                raise ForgeError("lti_course_taken", 409, "context_id: this LMS course "
                                 "already belongs to another cohort",
                                 [{"field": "context_id"}])
            if row is None:
                sess.add(LtiContext(platform=platform, context_id=context_id,
                                    tenant_id=tenant_id, cohort_id=cohort_id,
                                    memberships_url=None, created_at=now))
    except IntegrityError:
        raise ForgeError("lti_course_taken", 409, "context_id: this LMS course already "
                         "belongs to another cohort", [{"field": "context_id"}]) from None


def course_of(db: Database, platform: str, context_id: str) -> LtiContext | None:
    """The recorded course (None before its first launch)."""
    with db.read() as sess:
        row = sess.get(LtiContext, (platform, context_id))
        if row is not None:
            sess.expunge(row)
        return row


def course_by_cohort(db: Database, cohort_id: str) -> LtiContext | None:
    """The LMS course a cohort came from, if any."""
    with db.read() as sess:
        row = sess.scalars(select(LtiContext).where(LtiContext.cohort_id == cohort_id)).first()
        if row is not None:
            sess.expunge(row)
        return row


def enrol_roster(db: Database, cohort_id: str, tenant_id: str,
                 people: Sequence[tuple[str, bool]]) -> int:
    """Put a course roster (subject, teaches) into the cohort; the number newly added."""
    with db.session() as sess:
        return enrol_roster_in(sess, cohort_id, tenant_id, people)


def enrol_roster_in(sess: Session, cohort_id: str, tenant_id: str,
                    people: Sequence[tuple[str, bool]]) -> int:
    """`enrol_roster` inside the caller's transaction (with the roster's role raises):
    the seats held read with a few IN queries, the missing ones inserted in bulk. Nobody
    is both: one listed as teaching (anywhere in the roster) or an instructor of the
    cohort already is never seated as a learner, and a learner made instructor here stops
    being one (``staff.make_staff``). 409 `cohort_full` before anything is inserted when
    the learners not seated yet would take the cohort past MAX_MEMBERS (teachers are not
    counted)."""
    now = datetime.now(UTC)
    lock_cohort(sess, cohort_id)  # the count and the inserts: one step
    teachers = list(dict.fromkeys(s for s, teaches in people if teaches))
    teaching = set(teachers)
    learners = [s for s in dict.fromkeys(s for s, teaches in people if not teaches)
                if s not in teaching]
    new_seats: list[dict[str, object]] = []
    for start in range(0, len(learners), ROSTER_CHUNK):
        chunk = learners[start:start + ROSTER_CHUNK]
        held = set(sess.scalars(select(Enrolment.subject).where(
            Enrolment.cohort_id == cohort_id, Enrolment.subject.in_(chunk))))
        held.update(sess.scalars(select(CohortStaff.subject).where(
            CohortStaff.cohort_id == cohort_id, CohortStaff.subject.in_(chunk))))
        new_seats += [{"cohort_id": cohort_id, "subject": s, "tenant_id": tenant_id,
                       "via": "lti", "enrolled_at": now} for s in chunk if s not in held]
    # Teachers first: a learner of the class teaching now frees a seat (one transaction:
    # a refusal below rolls this back too).
    new_staff: list[str] = []
    for start in range(0, len(teachers), ROSTER_CHUNK):
        new_staff += make_staff(sess, cohort_id, teachers[start:start + ROSTER_CHUNK])
    if new_seats:
        count = learner_count(sess, cohort_id)
        if count + len(new_seats) > cohorts.MAX_MEMBERS:
            raise cohort_full(cohort_id, count, len(new_seats))
    for start in range(0, len(new_seats), ROSTER_CHUNK):
        sess.execute(insert(Enrolment), new_seats[start:start + ROSTER_CHUNK])
    return len(new_staff) + len(new_seats)


def not_in_roster(db: Database, cohort_id: str, active: Sequence[str]) -> list[str]:
    """Learners of the cohort who came in from its LMS course (a launch or a roster sync)
    and are not among the roster's `active` members any more (they left the course, or
    the LMS marks them inactive), by subject. A roster sync only reports them: taking one
    out of the class is the instructor's call (`DELETE .../learners/<subject>`, which
    keeps their labs and results)."""
    listed = set(active)
    with db.read() as sess:
        return sorted(s for s in sess.scalars(select(Enrolment.subject).where(
            Enrolment.cohort_id == cohort_id, Enrolment.via == "lti")) if s not in listed)


def course_assignment(db: Database, cohort_id: str, assignment_id: object) -> Assignment | None:
    """The assignment if it belongs to this course's cohort (else None: never another's)."""
    if not isinstance(assignment_id, str) or len(assignment_id) > 32:
        return None
    with db.read() as sess:
        row = sess.get(Assignment, assignment_id)
        if row is None or row.cohort_id != cohort_id:
            return None
        sess.expunge(row)
        return row


def link_grade(db: Database, assignment_id: str, subject: str, platform: str, lti_user: str,
               lineitem: str) -> None:
    """Remember where this learner's score of the assignment goes (their last launch)."""
    now = datetime.now(UTC)
    for _ in range(2):
        try:
            with db.session() as sess:
                row = sess.get(LtiGradeLink, (assignment_id, subject))
                if row is None:
                    sess.add(LtiGradeLink(assignment_id=assignment_id, subject=subject,
                                          platform=platform, lti_user=lti_user,
                                          lineitem=lineitem, updated_at=now))
                else:
                    row.platform, row.lti_user, row.lineitem = platform, lti_user, lineitem
                    row.updated_at = now
            return
        except IntegrityError:
            continue


def remember_users(sess: Session, platform: str, people: Sequence[tuple[str, str]]) -> None:
    """Keep each (subject, LMS user id) of a platform (a launch, a roster): where their
    grades go. A subject is made from the user id (`lti.map_subject`), so a known pair never
    changes; only the missing ones are inserted (chunks of ROSTER_CHUNK)."""
    now = datetime.now(UTC)
    wanted = dict(people)
    subjects = list(wanted)
    for start in range(0, len(subjects), ROSTER_CHUNK):
        chunk = subjects[start:start + ROSTER_CHUNK]
        held = set(sess.scalars(select(LtiUser.subject).where(
            LtiUser.platform == platform, LtiUser.subject.in_(chunk))))
        rows = [{"platform": platform, "subject": s, "lti_user": wanted[s], "updated_at": now}
                for s in chunk if s not in held]
        if rows:
            sess.execute(insert(LtiUser), rows)


def remember_user(db: Database, platform: str, subject: str, lti_user: str) -> None:
    """`remember_users` of one launched person, in its own transaction."""
    for _ in range(2):
        try:
            with db.session() as sess:
                remember_users(sess, platform, [(subject, lti_user)])
            return
        except IntegrityError:
            continue  # the same person's other launch or a roster sync at the same moment
