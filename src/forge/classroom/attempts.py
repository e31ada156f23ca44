"""A learner's attempts at an assignment: counted, taken in one store transaction (two
concurrent spawns never share or exceed one attempt), bound to the lab they started or
given back when the spawn failed. `assignments.applicable` reads the counts for the spawn
gate; `forge.services.spawn.assignment_gate` takes and settles. A lab the platform failed
before it ever ran (it could not be built, its template was not loaded) uses no attempt:
its attempt stays bound to it, for the dashboard and timeline, and is not counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, select
from sqlalchemy.exc import IntegrityError

from forge.errors import ForgeError
from forge.lifecycle import states
from forge.store.db import Database
from forge.store.idempotency import TTL as REPLAY_TTL
from forge.store.models import AssignmentAttempt, Scenario, ScenarioTransition

# An attempt counts unless its lab failed without ever running: the learner had nothing of
# a lab whose launch failed, and with one attempt allowed it had closed the assignment to
# them (only raising the whole class's attempts let them start again).
COUNTED: ColumnElement[bool] = ~exists().where(
    Scenario.scenario_id == AssignmentAttempt.scenario_id, Scenario.state == states.FAILED,
    ~exists().where(ScenarioTransition.scenario_id == Scenario.scenario_id,
                    ScenarioTransition.to_state == states.RUNNING))


def counts(state: str, ran: bool) -> bool:
    """Whether a lab in `state` that did (or did not) ever run uses its attempt: as
    `COUNTED`, for labs already read."""
    return ran or state != states.FAILED


def used_of(sess: Any, subject: str, assignment_ids: list[str]) -> dict[str, int]:
    """Attempts `subject` used of each assignment, in one grouped query."""
    if not assignment_ids:
        return {}
    rows = sess.execute(
        select(AssignmentAttempt.assignment_id, func.count())
        .where(AssignmentAttempt.subject == subject,
               AssignmentAttempt.assignment_id.in_(assignment_ids), COUNTED)
        .group_by(AssignmentAttempt.assignment_id)).all()
    return {str(aid): int(n) for aid, n in rows}


IN_FLIGHT = timedelta(seconds=60)  # a start binds its attempt to its lab well within this


def in_flight(sess: Any, assignment_id: str, subject: str) -> int:
    """Attempts taken in the last IN_FLIGHT and not bound to a lab yet (starts under way)."""
    return int(sess.scalar(select(func.count()).select_from(AssignmentAttempt).where(
        AssignmentAttempt.assignment_id == assignment_id, AssignmentAttempt.subject == subject,
        AssignmentAttempt.scenario_id.is_(None),
        AssignmentAttempt.at > datetime.now(UTC) - IN_FLIGHT)) or 0)


def used(sess: Any, assignment_id: str, subject: str) -> int:
    """Attempts `subject` used of one assignment (taken, in flight or bound to a lab; not
    one whose lab failed before it ran)."""
    return int(sess.scalar(select(func.count()).select_from(AssignmentAttempt).where(
        AssignmentAttempt.assignment_id == assignment_id,
        AssignmentAttempt.subject == subject, COUNTED)) or 0)


def _taken_by(assignment_id: str, subject: str, request_id: str) -> Select[int]:
    """The attempt a request id took, while spawn still answers that request id as a retry
    (its replay record lives `REPLAY_TTL`): an older id is a new request, judged and
    counted, or reusing an id would start a new lab after the window on an old attempt."""
    return select(AssignmentAttempt.attempt).where(
        AssignmentAttempt.assignment_id == assignment_id, AssignmentAttempt.subject == subject,
        AssignmentAttempt.request_id == request_id,
        AssignmentAttempt.at > datetime.now(UTC) - REPLAY_TTL)


def attempt_of_request(db: Database, assignment_id: str, subject: str, request_id: str
                       ) -> int | None:
    """The attempt this request id already took (a retried request), if any."""
    with db.read() as sess:
        taken: int | None = sess.scalar(_taken_by(assignment_id, subject, request_id))
        return taken


def take_attempt(db: Database, assignment_id: str, subject: str, request_id: str,
                 attempts_allowed: int) -> tuple[int, bool] | None:
    """Take the learner's next attempt: (its number, True), or (the number, False) when this
    request id already took one (a retried request); None when every attempt is used. One
    transaction, and the attempt number is part of the primary key: a concurrent request
    that counted the same attempts loses on the key and counts again. Numbers go on from
    the highest taken (an attempt given back leaves a gap, never a number taken twice)."""
    for _ in range(8):
        try:
            with db.session() as sess:
                # This request's own attempt, the count and the highest number in ONE
                # statement: under PostgreSQL's read committed each statement sees the latest
                # commits, so reading them apart let a concurrent commit fall in between (a
                # count from before it and a maximum from after gave a second attempt a
                # fresh number: two attempts of one allowed; a retry of the same request on
                # another replica missed its own attempt and was refused or took another).
                mine, used, highest = sess.execute(
                    select(func.max(case((and_(AssignmentAttempt.request_id == request_id,
                                               AssignmentAttempt.at > datetime.now(UTC)
                                               - REPLAY_TTL), AssignmentAttempt.attempt))),
                           func.count(case((COUNTED, 1))),
                           func.coalesce(func.max(AssignmentAttempt.attempt), 0))
                    .where(AssignmentAttempt.assignment_id == assignment_id,
                           AssignmentAttempt.subject == subject)).one()
                if mine is not None:
                    return int(mine), False
                if used >= attempts_allowed:
                    return None
                number = 1 + int(highest)
                sess.add(AssignmentAttempt(assignment_id=assignment_id, subject=subject,
                                           attempt=number, request_id=request_id,
                                           scenario_id=None, at=datetime.now(UTC)))
                return number, True
        except IntegrityError:
            continue
    raise ForgeError("assignment_busy", 409, "lab: other starts of this assignment were "
                     "being taken at the same moment; try again", headers={"Retry-After": "1"})


def settle_attempt(db: Database, assignment_id: str, subject: str, attempt: int,
                   scenario_id: str | None, *, request_id: str | None = None) -> None:
    """Bind the attempt to the lab it started, or (None) give it back: the spawn failed.

    With ``request_id`` (the request holding the attempt), an attempt that is no longer
    that request's is left alone: housekeeping may have given a stranded attempt back
    (``stranded_attempts``) while a late retry of its request was starting a lab, and its
    number may have been taken again since. That lab is then bound to an attempt taken
    anew for it (counted, even past the allowance: the lab runs), and nothing is given
    back."""
    for _ in range(8):
        try:
            with db.session() as sess:
                row = sess.get(AssignmentAttempt, (assignment_id, subject, attempt))
                ours = row is not None and request_id in (None, row.request_id)
                if ours and scenario_id is None:
                    sess.delete(row)
                elif ours and row is not None:
                    row.scenario_id = scenario_id
                elif scenario_id is not None and request_id is not None:
                    highest = sess.scalar(select(func.max(AssignmentAttempt.attempt)).where(
                        AssignmentAttempt.assignment_id == assignment_id,
                        AssignmentAttempt.subject == subject))
                    sess.add(AssignmentAttempt(
                        assignment_id=assignment_id, subject=subject,
                        attempt=1 + int(highest or 0), request_id=request_id,
                        scenario_id=scenario_id, at=datetime.now(UTC)))
            return
        except IntegrityError:
            continue  # a concurrent take got that number: count again
