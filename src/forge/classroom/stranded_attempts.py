"""Attempts a crash left unsettled: bound to the lab their request started, or given back.

A spawn for an assignment takes an attempt (``assignments.take_attempt``) before the lab
is requested and settles it afterwards: bound to the lab, or given back when the spawn
failed. A spawn_service that died in between left the attempt taken and bound to nothing:
the learner had lost it (with one attempt allowed, the assignment was closed to them), and
a lab started by that request counted for no assignment (its hints were judged as
outside one). Housekeeping settles such attempts once no request can still be holding
them: it binds each to the lab its request id created for that learner, if any, and gives
the others back.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, select, update

from forge.store.db import Database
from forge.store.models import Assignment, AssignmentAttempt, Scenario

log = logging.getLogger("forge.classroom.attempts")
# Longer than any spawn request holds its attempt (the bus confirms in seconds).
STRANDED_AFTER = timedelta(minutes=10)
BATCH = 500


def settle_stranded(db: Database, taken_before: datetime) -> int:
    """Settle up to ``BATCH`` unbound attempts taken before ``taken_before``; returns how
    many were given back (the ones bound are logged)."""
    attempts = AssignmentAttempt
    with db.session() as sess:
        rows = sess.execute(
            select(attempts.assignment_id, attempts.subject, attempts.attempt,
                   Scenario.scenario_id)
            .join(Assignment, Assignment.assignment_id == attempts.assignment_id)
            .outerjoin(Scenario, and_(Scenario.request_id == attempts.request_id,
                                      Scenario.subject == attempts.subject,
                                      Scenario.tenant_id == Assignment.tenant_id,
                                      Scenario.template_id == Assignment.template_id))
            .where(attempts.scenario_id.is_(None), attempts.at < taken_before)
            .limit(BATCH)).all()
        given_back = 0
        for assignment_id, subject, attempt, scenario_id in rows:
            key = and_(attempts.assignment_id == assignment_id,
                       attempts.subject == subject, attempts.attempt == attempt,
                       attempts.scenario_id.is_(None))
            if scenario_id is not None:
                sess.execute(update(attempts).where(key).values(scenario_id=scenario_id))
                log.info("attempt %d of %s at %s bound to lab %s after an interrupted spawn",
                         attempt, subject, assignment_id, scenario_id)
            else:
                done = sess.execute(delete(attempts).where(key))
                given_back += int(getattr(done, "rowcount", 0) or 0)
        return given_back
