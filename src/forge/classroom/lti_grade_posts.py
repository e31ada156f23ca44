"""The life of a grade owed to an LMS once it is owed: its states, the posts due now, a
post taken or refused (backoff doubling up to an hour, given up after MAX_ATTEMPTS posts or
MAX_AGE), the operator's list and requeue, and the best grade owed so far for a learner's
attempts at an assignment (what a later grade must beat). Owing a grade, and learning where
it goes, is `lti_grade_outbox`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from forge.store.db import Database
from forge.store.models import AssignmentAttempt, LtiGradePost

PENDING, POSTED, FAILED = "pending", "posted", "failed"
MAX_BACKOFF = timedelta(hours=1)
MAX_ATTEMPTS = 30  # a grade still refused after this many posts, or this old, is failed
MAX_AGE = timedelta(days=7)
FIRST_BACKOFF_S = 2.0


def best_posted(sess: Session, assignment_id: str, subject: str) -> float | None:
    """The best grade owed so far for the learner's attempts at the assignment."""
    return sess.scalar(select(func.max(LtiGradePost.score_given))
                       .join(AssignmentAttempt,
                             AssignmentAttempt.scenario_id == LtiGradePost.scenario_id)
                       .where(AssignmentAttempt.assignment_id == assignment_id,
                              AssignmentAttempt.subject == subject))


def due_grades(db: Database, now: datetime, limit: int = 20) -> list[LtiGradePost]:
    """Grades to post now (pending, where they go known, their retry time reached),
    oldest first; of those due at once, the least tried first (grades held back by another
    grade's failed post go before it: a line item that keeps failing never holds its
    platform's other grades for good)."""
    with db.read() as sess:
        rows = list(sess.scalars(select(LtiGradePost).where(
            LtiGradePost.state == PENDING, LtiGradePost.next_at <= now,
            LtiGradePost.lineitem != "", LtiGradePost.lti_user != "")
            .order_by(LtiGradePost.next_at, LtiGradePost.attempts,
                      LtiGradePost.scenario_id).limit(limit)))
        sess.expunge_all()
        return rows


def grade_posted(db: Database, scenario_id: str) -> None:
    """The platform took the grade."""
    with db.session() as sess:
        row = sess.get(LtiGradePost, scenario_id)
        if row is not None:
            row.state, row.posted_at, row.last_error = POSTED, datetime.now(UTC), None
            row.attempts += 1


def grade_retry(db: Database, scenario_id: str, error: str, *,
                final: bool = False) -> datetime | None:
    """The post failed: try again later (backoff doubling up to an hour), or give up
    (`final`: the platform refused the grade itself; or MAX_ATTEMPTS posts made; or the
    grade is older than MAX_AGE); the reason is kept for operators (`forge lti retry`).
    When it is tried again (None: not)."""
    with db.session() as sess:
        row = sess.get(LtiGradePost, scenario_id)
        if row is None:
            return None
        row.attempts += 1
        row.last_error = error[:300]
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(
            tzinfo=UTC)
        if final or row.attempts >= MAX_ATTEMPTS or datetime.now(UTC) - created > MAX_AGE:
            row.state = FAILED
            return None
        delay = min(MAX_BACKOFF, timedelta(seconds=FIRST_BACKOFF_S * 2 ** min(row.attempts, 12)))
        row.next_at = datetime.now(UTC) + delay
        return row.next_at


def grade_deferred(db: Database, scenario_id: str, until: datetime, error: str) -> None:
    """Not posted this round because its platform just failed another grade's post: tried
    again at `until` (that grade's retry), no post counted (none was made)."""
    with db.session() as sess:
        row = sess.get(LtiGradePost, scenario_id)
        if row is not None and row.state == PENDING:
            now_at = row.next_at if row.next_at.tzinfo else row.next_at.replace(tzinfo=UTC)
            row.next_at, row.last_error = max(now_at, until), error[:300]


def grade_of(db: Database, scenario_id: str) -> LtiGradePost | None:
    """The grade owed for a scenario (state, attempts, last error), if any."""
    with db.read() as sess:
        row = sess.get(LtiGradePost, scenario_id)
        if row is not None:
            sess.expunge(row)
        return row


MAX_LISTED = 1000  # grades `forge lti grades` lists unless told more (--limit)


def list_grades(db: Database, state: str | None = None,
                limit: int = MAX_LISTED) -> list[LtiGradePost]:
    """Owed grades (all, or in one state), newest first, at most `limit`, for the
    operator (who asks for `limit` + 1 to know whether the list was cut)."""
    with db.read() as sess:
        query = select(LtiGradePost).order_by(LtiGradePost.created_at.desc(),
                                              LtiGradePost.scenario_id.desc())
        if state is not None:
            query = query.where(LtiGradePost.state == state)
        rows = list(sess.scalars(query.limit(limit)))
        sess.expunge_all()
        return rows


def requeue_grade(db: Database, scenario_id: str) -> bool:
    """Post a failed grade again (after the course's line item was fixed); False when the
    scenario owes no grade or it was already posted."""
    with db.session() as sess:
        row = sess.get(LtiGradePost, scenario_id)
        if row is None or row.state == POSTED:
            return False
        # A later attempt's grade may have been posted meanwhile: this one, posted after it,
        # would be the latest the grade book keeps, so it carries the learner's best and the
        # newest time too (probe DF: a failed 30 posted again after a 90 read 30).
        subject = sess.scalar(select(AssignmentAttempt.subject).where(
            AssignmentAttempt.scenario_id == scenario_id))
        if subject is not None:
            best = best_posted(sess, row.assignment_id, subject) or 0.0
            if best > row.score_given:
                newest = sess.scalar(select(func.max(LtiGradePost.timestamp)).join(
                    AssignmentAttempt,
                    AssignmentAttempt.scenario_id == LtiGradePost.scenario_id).where(
                    AssignmentAttempt.assignment_id == row.assignment_id,
                    AssignmentAttempt.subject == subject))
                row.score_given, row.timestamp = best, max(row.timestamp, newest or "")
        row.state, row.next_at = PENDING, datetime.now(UTC)
        return True
