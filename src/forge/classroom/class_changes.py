"""Changes of a class once it runs (issue 18's classrooms, at 200 learners): an
assignment's window, attempts or hints; one learner's extension; a learner taken out.

Each runs under the cohort's lock (`lock_cohort`), so changes of one cohort are applied one
at a time, and each leaves a log line saying who changed what (a `late` mark can move
with them). What a learner's due time then is, `assignments.due_for` says.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from forge.classroom.assignments import check_terms, check_time, iso
from forge.classroom.cohorts import Manager, case_twin, lock_cohort, managed_cohort
from forge.classroom.staff import drop_enrolment
from forge.errors import ForgeError, invalid_field
from forge.store.db import Database
from forge.store.models import Assignment, AssignmentExtension, Enrolment
from forge.store.timestamps import aware as _aware

log = logging.getLogger("forge.classroom.changes")


def managed_assignment(sess: Any, who: Manager, cohort_id: str,
                       assignment_id: str) -> Assignment:
    """An assignment of a cohort `who` manages, read under the cohort's lock (a change of
    it, a learner's due time and an unenrolment are one at a time per cohort: two valid
    changes at once could store a window that closes before it opens); 404 for any
    other (another cohort's too)."""
    managed_cohort(sess, who, cohort_id)
    lock_cohort(sess, cohort_id)
    row: Assignment | None = sess.get(Assignment, assignment_id)
    if row is None or row.cohort_id != cohort_id or row.tenant_id != who.tenant_id:
        raise ForgeError("assignment_not_found", 404,
                         "assignment_id: no such assignment in this cohort",
                         [{"field": "assignment_id"}])
    return row


CHANGEABLE = ("opens_at", "closes_at", "attempts_allowed", "hints_allowed")


def update_assignment(db: Database, who: Manager, cohort_id: str, assignment_id: str,
                      changes: Mapping[str, Any]) -> Assignment:
    """Change an assignment's window, attempts or hints (`changes`: some of CHANGEABLE).
    The new window is checked as a whole (closes after it opens); lowering the attempts
    below what a learner used leaves their labs alone and refuses them further starts.
    Learners' extensions (`set_due`) stay as they were: each still gives the later of
    its time and the new due time."""
    unknown = sorted(set(changes) - set(CHANGEABLE))
    if unknown:
        raise invalid_field(unknown[0], "not a field that can be changed")
    if not changes:
        raise invalid_field("body", f"name at least one of {', '.join(CHANGEABLE)}")
    with db.session() as sess:
        row = managed_assignment(sess, who, cohort_id, assignment_id)
        opens = changes.get("opens_at", _aware(row.opens_at))
        closes = changes.get("closes_at", _aware(row.closes_at))
        attempts = changes.get("attempts_allowed", row.attempts_allowed)
        check_terms(opens, closes, attempts)  # the whole window, as when it was made
        row.opens_at, row.closes_at = opens.astimezone(UTC), closes.astimezone(UTC)
        row.attempts_allowed = attempts
        row.hints_allowed = changes.get("hints_allowed", row.hints_allowed)
        sess.flush()
        sess.expunge(row)
    # A change of a running class leaves a line (who, what): `late` can move with it.
    log.info("assignment changed: tenant=%s cohort=%s assignment=%s by=%s %s", who.tenant_id,
             cohort_id, assignment_id, who.subject,
             " ".join(f"{k}={iso(v) if isinstance(v, datetime) else v}"
                      for k, v in sorted(changes.items())))
    return row


def member(sess: Any, who: Manager, cohort_id: str, subject: str) -> Enrolment:
    """The learner's enrolment in the cohort; 404 `learner_not_found` naming the field."""
    row: Enrolment | None = sess.get(Enrolment, (cohort_id, subject))
    if row is None or row.tenant_id != who.tenant_id:
        twin = case_twin(sess, cohort_id, subject)
        hint = (f'; its {twin[1]} "{twin[0]}" differs only in letter case (account ids are '
                "case-sensitive)" if twin is not None else "")
        raise ForgeError("learner_not_found", 404,
                         f"subject: no such learner in this cohort{hint}",
                         [{"field": "subject", **({"did_you_mean": twin[0]} if twin else {})}])
    return row


def set_due(db: Database, who: Manager, cohort_id: str, assignment_id: str, subject: str,
            closes_at: datetime) -> AssignmentExtension:
    """Give one learner of the cohort more time for an assignment: their due time is the
    later of this and the assignment's (the spawn gate, their list and the dashboard's
    `late` use it), so moving the class's due time later never leaves them with less. It
    must come after the assignment's current due time. Set again, it replaces the last."""
    with db.session() as sess:
        row = managed_assignment(sess, who, cohort_id, assignment_id)  # the cohort's lock
        member(sess, who, cohort_id, subject)
        check_time("closes_at", closes_at)
        if closes_at <= _aware(row.closes_at):
            raise invalid_field("closes_at", f"must be after the assignment's due time "
                                             f"({iso(row.closes_at)}): it gives more time")
        ext = sess.get(AssignmentExtension, (assignment_id, subject))
        if ext is None:
            ext = AssignmentExtension(assignment_id=assignment_id, subject=subject)
            sess.add(ext)
        ext.closes_at = closes_at.astimezone(UTC)
        ext.granted_by, ext.granted_at = who.subject, datetime.now(UTC)
        sess.flush()
        sess.expunge(ext)
    log.info("extension given: tenant=%s cohort=%s assignment=%s subject=%s by=%s "
             "closes_at=%s", who.tenant_id, cohort_id, assignment_id, subject, who.subject,
             iso(closes_at))
    return ext


def clear_due(db: Database, who: Manager, cohort_id: str, assignment_id: str,
              subject: str) -> None:
    """Take a learner's own due time back: the assignment's applies to them again (404
    `extension_not_found` when they had none)."""
    with db.session() as sess:
        managed_assignment(sess, who, cohort_id, assignment_id)
        ext = sess.get(AssignmentExtension, (assignment_id, subject))
        if ext is None:
            raise ForgeError("extension_not_found", 404, "subject: this learner has no due "
                             "time of their own for this assignment", [{"field": "subject"}])
        sess.delete(ext)
    log.info("extension taken back: tenant=%s cohort=%s assignment=%s subject=%s by=%s",
             who.tenant_id, cohort_id, assignment_id, subject, who.subject)


def unenrol(db: Database, who: Manager, cohort_id: str, subject: str) -> str:
    """Take a learner out of a cohort `who` manages; how they had come in. Their
    assignments of it leave their list and the dashboard and they can start none of them
    any more (a lab running goes on to its end); their own due times in it are dropped,
    their attempts, labs and results kept. 404 `learner_not_found`. One who came in by
    the cohort's identity-provider group (`via` "group") is enrolled again at their next
    sign-in while still in it; an invite link still valid lets one join again."""
    with db.session() as sess:
        managed_cohort(sess, who, cohort_id)
        lock_cohort(sess, cohort_id)  # one at a time with due times given to them
        via = member(sess, who, cohort_id, subject).via
        drop_enrolment(sess, cohort_id, subject)
    log.info("learner taken out: tenant=%s cohort=%s subject=%s by=%s was_via=%s",
             who.tenant_id, cohort_id, subject, who.subject, via)
    return via
