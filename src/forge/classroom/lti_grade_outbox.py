"""The LMS grade outbox: a signed verdict of an assignment of a cohort linked to an LMS course
becomes a grade owed to the platform, posted and retried until the platform takes it
(issue 18 item 4); the best score of the learner's attempts is what the grade book gets.

A grade is owed for every graded attempt of such an assignment, whichever Start button
began it (the LMS activity, /tracks, the API): it goes to the learner's LMS user id
(`lti_users`: from any launch of theirs or a roster sync) and the assignment's line item
(their own last launch of it, else, when the cohort is linked to one course only, the
latest launch of it by any learner: the AGS line item of a resource link is the activity's
grade column, the same for every learner). Until both are known the grade waits in the
outbox (pending, `lineitem` or `lti_user` empty, the reason in `last_error`) and is settled
by the next launch into the course or roster sync (`settle_owed`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from forge.classroom.dashboard import Lab
from forge.classroom.lti_grade_posts import FAILED, PENDING, best_posted
from forge.store.db import Database
from forge.store.models import (
    Assignment,
    AssignmentAttempt,
    Enrolment,
    LtiContext,
    LtiGradeLink,
    LtiGradePost,
    LtiUser,
    Scenario,
)


@dataclass(frozen=True)
class GradedAttempt:
    """A verdict's lab of an assignment of an LMS-linked cohort: the learner and tenant,
    and their labs of the assignment (the dashboard's `Lab`s), to find their best score."""

    assignment_id: str
    subject: str
    tenant_id: str
    labs: list[Lab]


def graded_attempt(db: Database, scenario_id: str) -> GradedAttempt | None:
    """The attempt a verdict graded, when its assignment's cohort is linked to an LMS course
    (None otherwise: no grade is owed), with every lab of the learner for the assignment."""
    with db.read() as sess:
        attempt = sess.scalars(select(AssignmentAttempt).where(
            AssignmentAttempt.scenario_id == scenario_id)).first()
        if attempt is None:
            return None
        assignment = sess.get(Assignment, attempt.assignment_id)
        if assignment is None or not _courses_of_cohort(sess, assignment.cohort_id):
            return None
        labs = [Lab(sc.scenario_id, attempt.assignment_id, attempt.subject, n, sc.state,
                    sc.created_at)
                for n, sc in sess.execute(
                    select(AssignmentAttempt.attempt, Scenario)
                    .join(Scenario, Scenario.scenario_id == AssignmentAttempt.scenario_id)
                    .where(AssignmentAttempt.assignment_id == attempt.assignment_id,
                           AssignmentAttempt.subject == attempt.subject)
                    .order_by(AssignmentAttempt.attempt))]
        return GradedAttempt(attempt.assignment_id, attempt.subject, assignment.tenant_id,
                             labs)


def _courses_of_cohort(sess: Session, cohort_id: str) -> list[LtiContext]:
    """The LMS courses linked to a cohort (usually one; a class can take several sections)."""
    return list(sess.scalars(select(LtiContext).where(LtiContext.cohort_id == cohort_id)
                             .order_by(LtiContext.created_at, LtiContext.context_id)))


@dataclass(frozen=True)
class _Target:
    platform: str
    lti_user: str  # '' while unknown
    lineitem: str  # '' while unknown
    why: str | None  # why it cannot be posted yet (None: it can)


@dataclass(frozen=True)
class _Known:
    """What the store knows of where some learners' grades go, read for them all at once:
    their own launches' links by (assignment, subject), their LMS user ids on the first
    course's platform by subject, and each assignment's latest grade column there."""

    own: dict[tuple[str, str], LtiGradeLink]
    users: dict[str, str]
    lineitems: dict[str, str]


_CHUNK = 500  # subjects per IN list


def _known(sess: Session, courses: Sequence[LtiContext],
           pairs: Collection[tuple[str, str]]) -> _Known:
    """Where the grades of (assignment, subject) `pairs` may go, in a fixed number of
    queries whatever their number (a cohort's waiting grades are settled at each launch
    into its course: one query per grade held the write lock for seconds)."""
    platform = courses[0].platform
    assignments = sorted({a for a, _ in pairs})
    subjects = sorted({s for _, s in pairs})
    own: dict[tuple[str, str], LtiGradeLink] = {}
    users: dict[str, str] = {}
    for start in range(0, len(subjects), _CHUNK):
        chunk = subjects[start:start + _CHUNK]
        for link in sess.scalars(select(LtiGradeLink).where(
                LtiGradeLink.assignment_id.in_(assignments), LtiGradeLink.subject.in_(chunk))):
            own[(link.assignment_id, link.subject)] = link
        users.update((u.subject, u.lti_user) for u in sess.scalars(select(LtiUser).where(
            LtiUser.platform == platform, LtiUser.subject.in_(chunk))))
    lineitems: dict[str, str] = {}
    if len(courses) == 1:  # the latest launch of each assignment on the platform
        on_platform = (LtiGradeLink.assignment_id.in_(assignments),
                       LtiGradeLink.platform == platform)
        latest = (select(LtiGradeLink.assignment_id, func.max(LtiGradeLink.updated_at)
                         .label("at")).where(*on_platform)
                  .group_by(LtiGradeLink.assignment_id).subquery())
        for assignment_id, lineitem in sess.execute(
                select(LtiGradeLink.assignment_id, LtiGradeLink.lineitem)
                .join(latest, and_(latest.c.assignment_id == LtiGradeLink.assignment_id,
                                   latest.c.at == LtiGradeLink.updated_at))
                .where(*on_platform).order_by(LtiGradeLink.subject)):
            lineitems[assignment_id] = lineitem
    return _Known(own, users, lineitems)


def _target(known: _Known, courses: Sequence[LtiContext], assignment_id: str,
            subject: str) -> _Target:
    """Where a learner's grade of an assignment of a cohort linked to `courses` goes.

    Their own launch of the activity says it all. Otherwise, with one course: their LMS
    user id from any launch or roster sync (`lti_users`) and the activity's line item from
    any learner's latest launch of it (AGS names the resource link's grade column, the same
    for all its learners). With several courses (sections) linked to the class, another
    learner's line item may be another course's column: only their own launch counts."""
    own = known.own.get((assignment_id, subject))
    if own is not None:
        return _Target(own.platform, own.lti_user, own.lineitem, None)
    platform = courses[0].platform
    if len(courses) > 1:
        return _Target(platform, "", "", "waiting for the learner to open the activity from "
                       "their LMS course (this class is linked to several courses)")
    lti_user = known.users.get(subject, "")
    lineitem = known.lineitems.get(assignment_id, "")
    why = []
    if not lti_user:
        why.append(f"the LMS user id of {subject} (their launch from the course or a roster "
                   "sync)")
    if not lineitem:
        why.append("the assignment's grade column (a learner opening the activity from the "
                   "LMS)")
    return _Target(platform, lti_user, lineitem,
                   ("waiting for " + " and ".join(why)) if why else None)


def _best_posted_of(sess: Session, pairs: Collection[tuple[str, str]]
                    ) -> dict[tuple[str, str], float]:
    """`best_posted` of every (assignment, subject) of `pairs`, in one query per
    _CHUNK subjects."""
    assignments = sorted({a for a, _ in pairs})
    subjects = sorted({s for _, s in pairs})
    out: dict[tuple[str, str], float] = {}
    for start in range(0, len(subjects), _CHUNK):
        for assignment_id, subject, best in sess.execute(
                select(AssignmentAttempt.assignment_id, AssignmentAttempt.subject,
                       func.max(LtiGradePost.score_given))
                .join(LtiGradePost, LtiGradePost.scenario_id == AssignmentAttempt.scenario_id)
                .where(AssignmentAttempt.assignment_id.in_(assignments),
                       AssignmentAttempt.subject.in_(subjects[start:start + _CHUNK]))
                .group_by(AssignmentAttempt.assignment_id, AssignmentAttempt.subject)):
            if best is not None:
                out[(assignment_id, subject)] = float(best)
    return out


def owe_grade(db: Database, scenario_id: str, score: float, completed_at: str) -> bool:
    """Record the grade a signed verdict owes a platform (once per scenario): True when the
    lab was started for an assignment of a cohort linked to an LMS course (from the LMS or
    from Forge), False otherwise. `score` is the learner's best graded score of the
    assignment (`dashboard.best_result`, what the dashboard shows; the caller reads the
    results), never lower than a grade owed before for it: a platform keeps the latest
    score it is sent, while the dashboard and its CSV show the best, so a worse last attempt
    (0.9, then 0.3) read 30 in the grade book and 90 in Forge (review CD).

    Where it goes not known yet (the learner never launched and no roster sync named
    them, or no launch of the activity gave its line item): kept pending with the reason,
    not posted until `settle_owed` finds both.

    A learner taken out of the class before the verdict (their lab went on to its end):
    kept, not sent (failed, the reason saying why and how to send it: `forge lti retry`).
    They left the dashboard and its export; a grade book that got 90 for them while Forge
    listed them nowhere disagreed with the instructor's own views."""
    now = datetime.now(UTC)
    with db.session() as sess:
        if sess.get(LtiGradePost, scenario_id) is not None:
            return True
        attempt = sess.scalars(select(AssignmentAttempt).where(
            AssignmentAttempt.scenario_id == scenario_id)).first()
        if attempt is None:
            return False
        assignment = sess.get(Assignment, attempt.assignment_id)
        courses = (_courses_of_cohort(sess, assignment.cohort_id)
                   if assignment is not None else [])
        if not courses:
            return False
        # Locked (PostgreSQL; SQLite's write transactions are one at a time): two verdicts
        # of the learner at once would each read the best before the other's (review CE).
        list(sess.scalars(select(AssignmentAttempt).where(
            AssignmentAttempt.assignment_id == attempt.assignment_id,
            AssignmentAttempt.subject == attempt.subject)
            .order_by(AssignmentAttempt.attempt).with_for_update()))
        to = _target(_known(sess, courses, [(attempt.assignment_id, attempt.subject)]),
                     courses, attempt.assignment_id, attempt.subject)
        best_before = best_posted(sess, attempt.assignment_id, attempt.subject)
        given = max(round(float(score) * 100, 2), best_before or 0.0)
        assert assignment is not None  # it has courses
        if sess.get(Enrolment, (assignment.cohort_id, attempt.subject)) is None:
            sess.add(LtiGradePost(
                scenario_id=scenario_id, platform=to.platform, lineitem=to.lineitem,
                lti_user=to.lti_user, assignment_id=attempt.assignment_id,
                score_given=given, score_maximum=100.0, timestamp=completed_at,
                state=FAILED, attempts=0, next_at=now,
                last_error=f"not sent: {attempt.subject} was taken out of the class (or "
                           "made its instructor) before this lab was graded "
                           f"(`forge lti retry {scenario_id}` sends it)",
                posted_at=None, created_at=now))
            return True
        # The learner's older grades still waiting (the LMS was down: their posts back off,
        # so they may go after this one) carry this best too, with this verdict's time: the
        # grade book keeps whichever comes last (probe DF: 90, then an older 30, read 30).
        for older in sess.scalars(select(LtiGradePost).join(
                AssignmentAttempt, AssignmentAttempt.scenario_id == LtiGradePost.scenario_id)
                .where(AssignmentAttempt.assignment_id == attempt.assignment_id,
                       AssignmentAttempt.subject == attempt.subject,
                       LtiGradePost.state == PENDING, LtiGradePost.score_given < given)):
            older.score_given, older.timestamp = given, completed_at
        sess.add(LtiGradePost(
            scenario_id=scenario_id, platform=to.platform, lineitem=to.lineitem,
            lti_user=to.lti_user, assignment_id=attempt.assignment_id,
            score_given=given, score_maximum=100.0,
            timestamp=completed_at, state=PENDING, attempts=0, next_at=now,
            last_error=to.why, posted_at=None, created_at=now))
    return True


def settle_owed(db: Database, cohort_id: str) -> int:
    """Give the grades of the cohort's assignments waiting for a user id or line item the
    ones known now (after a launch into its course or a roster sync), to be posted at the
    poster's next round; the number settled. Each carries the learner's best owed so far,
    so their posts, in whatever order, leave the best in the grade book."""
    with db.read() as sess:  # most launches find none waiting: no write transaction then
        if sess.scalars(_waiting(cohort_id).with_only_columns(LtiGradePost.scenario_id)
                        .limit(1)).first() is None:
            return 0
    now = datetime.now(UTC)
    settled = 0
    with db.session() as sess:
        courses = _courses_of_cohort(sess, cohort_id)
        if not courses:
            return 0
        waiting = list(sess.execute(_waiting(cohort_id)))
        pairs = {(row.assignment_id, subject) for row, subject in waiting}
        known = _known(sess, courses, pairs)
        best = _best_posted_of(sess, pairs)
        for row, subject in waiting:
            to = _target(known, courses, row.assignment_id, subject)
            row.platform, row.lti_user, row.lineitem = to.platform, to.lti_user, to.lineitem
            row.last_error = to.why
            if to.why is None:
                row.score_given = max(row.score_given,
                                      best.get((row.assignment_id, subject)) or 0.0)
                # Postable from now: MAX_AGE counts the time spent posting it, not the
                # time it waited to learn where it goes (else a grade that waited a week
                # would be given up at its first refused post).
                row.next_at, row.created_at = now, now
                settled += 1
    return settled


def _waiting(cohort_id: str) -> Select[LtiGradePost, str]:
    """Grades of the cohort's assignments still waiting to learn where they go."""
    return (select(LtiGradePost, AssignmentAttempt.subject)
            .join(AssignmentAttempt, AssignmentAttempt.scenario_id == LtiGradePost.scenario_id)
            .join(Assignment, Assignment.assignment_id == AssignmentAttempt.assignment_id)
            .where(Assignment.cohort_id == cohort_id, LtiGradePost.state == PENDING,
                   or_(LtiGradePost.lineitem == "", LtiGradePost.lti_user == "")))


def waiting_cohorts(db: Database) -> list[str]:
    """Cohorts with a grade waiting to learn where it goes (the poster settles them each
    round too: a launch that raced the grade's recording left it waiting)."""
    # Distinct before the limit: one cohort's 1,000 grades that wait for good (learners
    # the LMS never named) hid every other cohort from the poster.
    with db.read() as sess:
        return list(sess.scalars(
            select(Assignment.cohort_id).distinct()
            .join(AssignmentAttempt, AssignmentAttempt.assignment_id == Assignment.assignment_id)
            .join(LtiGradePost, LtiGradePost.scenario_id == AssignmentAttempt.scenario_id)
            .where(LtiGradePost.state == PENDING,
                   or_(LtiGradePost.lineitem == "", LtiGradePost.lti_user == ""))
            .order_by(Assignment.cohort_id).limit(1000)))
