"""Attempts a crash left unsettled: bound to the lab their request started, or given back.

A spawn for an assignment takes an attempt (``attempts.take_attempt``) before the lab
is requested and settles it afterwards: bound to the lab, or given back when the spawn
failed. A spawn_service that died in between left the attempt taken and bound to nothing:
the learner had lost it (with one attempt allowed, the assignment was closed to them), and
a lab started by that request counted for no assignment (its hints were judged as
outside one). Housekeeping settles such attempts once no request can still be holding
them. An attempt is bound to the lab its request id created for that learner (same
tenant and template, created after the attempt was taken) if the orchestrator launched
that lab, as an answered spawn's would have been; it is given back if the request made no
lab, or one that ended without being launched (recorded but never published: failed or
expired while pending). A lab still pending is left for a later pass. A late retry of
the request, admitted on the attempt just before it was given back, still has its lab
counted: ``attempts.settle_attempt`` takes an attempt anew for it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, select, update

from forge.lifecycle import states
from forge.store.db import Database
from forge.store.models import Assignment, AssignmentAttempt, Scenario, ScenarioTransition
from forge.store.timestamps import aware

log = logging.getLogger("forge.classroom.attempts")
# Longer than any spawn request holds its attempt (the bus confirms in seconds).
STRANDED_AFTER = timedelta(minutes=10)
# A lab's row is written after its attempt was taken (clocks of two replicas may differ a
# little); an older lab with a reused request id is not this attempt's.
CLOCK_SLACK = timedelta(minutes=1)
BATCH = 500


def settle_stranded(db: Database, taken_before: datetime) -> int:
    """Settle up to ``BATCH`` unbound attempts taken before ``taken_before``; returns how
    many were given back (the ones bound are logged)."""
    a = AssignmentAttempt
    launched = exists().where(ScenarioTransition.scenario_id == Scenario.scenario_id,
                              ScenarioTransition.to_state == states.LAUNCHING)
    with db.session() as sess:
        stranded = sess.execute(
            select(a.assignment_id, a.subject, a.attempt, a.at, Assignment.tenant_id,
                   Assignment.template_id, a.request_id)
            .join(Assignment, Assignment.assignment_id == a.assignment_id)
            .where(a.scenario_id.is_(None), a.at < taken_before)
            .order_by(a.at).limit(BATCH)).all()
        given_back = 0
        for assignment_id, subject, attempt, at, tenant_id, template_id, request_id in stranded:
            labs = sess.execute(  # its request's labs (the request id index)
                select(Scenario.scenario_id, Scenario.state, Scenario.created_at,
                       launched.label("launched"))
                .where(Scenario.request_id == request_id, Scenario.subject == subject,
                       Scenario.tenant_id == tenant_id,
                       Scenario.template_id == template_id)).all()
            mine = [lab for lab in labs if aware(lab.created_at) >= aware(at) - CLOCK_SLACK]
            if any(lab.state == states.PENDING for lab in mine):
                continue  # it may still launch; if it ends instead, a later pass gives back
            started = next((lab.scenario_id for lab in mine if lab.launched), None)
            key = and_(a.assignment_id == assignment_id, a.subject == subject,
                       a.attempt == attempt, a.scenario_id.is_(None))
            if started is not None:
                sess.execute(update(a).where(key).values(scenario_id=started))
                log.info("attempt %d of %s at %s bound to lab %s after an interrupted spawn",
                         attempt, subject, assignment_id, started)
            else:
                done = sess.execute(delete(a).where(key))
                given_back += int(getattr(done, "rowcount", 0) or 0)
        return given_back
