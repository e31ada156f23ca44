"""Extra attempts for one learner (an instructor's attempt grant): a learner who used the
last attempt of an assignment (a crash of their own making, a misunderstanding) can be
given N more without raising the attempts of the whole class.

A grant replaces the last one for that learner and assignment (it is the number of extra
attempts they have, not a sum); it is stored with its reason and who gave it, and leaves a
log line saying so. The learner's allowance (`allowed`) is then the assignment's
`attempts_allowed` plus the grant: the spawn gate (`assignments.applicable`), their list
and the dashboard and its CSV use it. Run under the cohort's lock, as `class_changes`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from forge.classroom.assignments import iso
from forge.classroom.class_changes import managed_assignment, member
from forge.classroom.cohort_names import writable
from forge.classroom.cohorts import Manager, managed_cohort
from forge.errors import ForgeError, invalid_field
from forge.store.db import Database
from forge.store.models import Assignment, AssignmentAttemptGrant

log = logging.getLogger("forge.classroom.changes")

MAX_EXTRA = 20  # extra attempts one learner may be given at once (per assignment)
MAX_REASON = 200  # characters of the reason
GRANTS_PAGE = 200  # grants listed per page (a class holds at most 2,000 learners)


def check_grant(extra: int, reason: str) -> str:
    """The reason, trimmed, or 422 naming the field: `extra_attempts` 1-MAX_EXTRA, a
    `reason` of 1-MAX_REASON characters with no control or bidi character."""
    if isinstance(extra, bool) or not isinstance(extra, int) or not 1 <= extra <= MAX_EXTRA:
        raise invalid_field("extra_attempts", f"a whole number from 1 to {MAX_EXTRA}")
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise invalid_field("reason", "say why this learner gets more attempts")
    if len(text) > MAX_REASON:
        raise invalid_field("reason", f"at most {MAX_REASON} characters")
    if not writable(text):
        raise invalid_field("reason", "no control or bidi characters")
    return text


def grant_attempts(db: Database, who: Manager, cohort_id: str, assignment_id: str,
                   subject: str, extra: int, reason: str) -> AssignmentAttemptGrant:
    """Give one learner of the cohort `extra` attempts of the assignment on top of the
    class's (replacing a grant they had). 404 for a cohort `who` does not manage, an
    assignment not of it or a learner not in it; 422 naming the field for bad values."""
    with db.session() as sess:
        managed_assignment(sess, who, cohort_id, assignment_id)  # the cohort's lock
        member(sess, who, cohort_id, subject)
        text = check_grant(extra, reason)
        row = sess.get(AssignmentAttemptGrant, (assignment_id, subject))
        if row is None:
            row = AssignmentAttemptGrant(assignment_id=assignment_id, subject=subject)
            sess.add(row)
        row.extra, row.reason = extra, text
        row.granted_by, row.granted_at = who.subject, datetime.now(UTC)
        sess.flush()
        sess.expunge(row)
    log.info("attempts given: tenant=%s cohort=%s assignment=%s subject=%s by=%s extra=%d "
             "reason=%s", who.tenant_id, cohort_id, assignment_id, subject, who.subject,
             extra, ascii(text))
    return row


def clear_grant(db: Database, who: Manager, cohort_id: str, assignment_id: str,
                subject: str) -> None:
    """Take a learner's extra attempts back: the class's allowance applies to them again
    (404 `attempt_grant_not_found` naming `subject` when they had none)."""
    with db.session() as sess:
        managed_assignment(sess, who, cohort_id, assignment_id)
        row = sess.get(AssignmentAttemptGrant, (assignment_id, subject))
        if row is None:
            raise ForgeError("attempt_grant_not_found", 404, "subject: this learner has no "
                             "extra attempts of this assignment", [{"field": "subject"}])
        sess.delete(row)
    log.info("attempts taken back: tenant=%s cohort=%s assignment=%s subject=%s by=%s",
             who.tenant_id, cohort_id, assignment_id, subject, who.subject)


def extra_of(sess: Any, assignment_ids: Collection[str],
             subject: str | None = None) -> dict[tuple[str, str], int]:
    """Extra attempts given per (assignment, learner) for these assignments (one learner's
    when `subject` is given), in one query."""
    if not assignment_ids:
        return {}
    query = select(AssignmentAttemptGrant.assignment_id, AssignmentAttemptGrant.subject,
                   AssignmentAttemptGrant.extra).where(
        AssignmentAttemptGrant.assignment_id.in_(list(assignment_ids)))
    if subject is not None:
        query = query.where(AssignmentAttemptGrant.subject == subject)
    return {(str(a), str(s)): int(n) for a, s, n in sess.execute(query)}


def grants_of(db: Database, who: Manager, cohort_id: str, assignment_id: str,
              after: str | None = None, limit: int = GRANTS_PAGE
              ) -> tuple[list[dict[str, Any]], str | None]:
    """Who has extra attempts of an assignment of a cohort `who` manages, by account id
    (at most `limit`, those after `after`), each with how many, the reason, who gave them
    and when; and the `after` of the next page (None on the last). 404 for a cohort `who`
    does not manage or an assignment not of it, as the changes."""
    with db.read() as sess:
        managed_cohort(sess, who, cohort_id)
        row = sess.get(Assignment, assignment_id)
        if row is None or row.cohort_id != cohort_id or row.tenant_id != who.tenant_id:
            raise ForgeError("assignment_not_found", 404,
                             "assignment_id: no such assignment in this cohort",
                             [{"field": "assignment_id"}])
        grant = AssignmentAttemptGrant
        query = select(grant).where(grant.assignment_id == assignment_id)
        if after is not None:
            query = query.where(grant.subject > after)
        rows = list(sess.scalars(query.order_by(grant.subject).limit(limit + 1)))
        shown: list[dict[str, Any]] = [
            {"subject": g.subject, "extra_attempts": g.extra, "reason": g.reason,
             "granted_by": g.granted_by, "granted_at": iso(g.granted_at)}
            for g in rows[:limit]]
    return shown, str(shown[-1]["subject"]) if len(rows) > limit else None
