"""A delete asked for while the lab's node did not answer, kept in the store until the node
carries it out.

spawn_service answered such a delete `503 lab_node_unreachable` and kept nothing: a node
restarted within its grace period adopted the lab again, running, and it held the learner's
quota slot until its deadline, when it was graded as expired (a verdict for a lab the
learner had deleted), unless the learner thought of asking again. The wanted delete is
written on the row instead, with the deadline brought forward to now: the holding node's
reaper, which already looks for running labs past their deadline, reaches it at its next
pass (after a restart too) and deletes it without grading.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from forge.lifecycle import states
from forge.store.db import Database
from forge.store.models import Scenario
from forge.store.timestamps import aware

WANTED_KEY = "delete_wanted"  # in the row's details: when the delete was asked for
DELETE_REASON = "deleted on request"

_LOCKED = select(Scenario.state, Scenario.details, Scenario.expires_at).where(
    Scenario.scenario_id == bindparam("sid")).with_for_update()


def want_delete(db: Database, scenario_id: str) -> bool:
    """Keep a delete of a ``launching`` or ``running`` lab for its node to carry out; False
    (nothing kept) otherwise (a grading finishes by itself, a finished lab has nothing left
    to delete). A launch that finishes keeps the deadline of now (``RunningDeadline``).

    The row's ``updated_at`` is left alone, and a delete asked again keeps the first one's
    time: each write of it put off the reaper's "stuck launching" look (a launch that has
    not moved for STUCK_LAUNCHING), so a learner's DELETE repeated while the node did not
    answer kept a stuck launch, and its slot, from ever being resumed or ended."""
    now = datetime.now(UTC)
    with db.session() as sess:
        conn = sess.connection()
        row = conn.execute(_LOCKED, {"sid": scenario_id}).first()
        if row is None or row.state not in (states.LAUNCHING, states.RUNNING):
            return False
        deadline = now if row.expires_at is None else min(aware(row.expires_at), now)
        conn.execute(update(Scenario).where(Scenario.scenario_id == scenario_id).values(
            details={WANTED_KEY: now.isoformat(), **(row.details or {})},
            expires_at=deadline))
    return True


def wanted_among(db: Database, scenario_ids: Collection[str]) -> set[str]:
    """Those of ``scenario_ids`` whose delete was kept for their node (`want_delete`): a
    lost node's lab among them ends ``deleted``, as its learner asked, not ``failed``."""
    if not scenario_ids:
        return set()
    with db.read() as sess:
        rows = sess.execute(select(Scenario.scenario_id, Scenario.details).where(
            Scenario.scenario_id.in_(list(scenario_ids)))).all()
    return {sid for sid, details in rows if delete_wanted(details)}


def delete_wanted(details: Mapping[str, Any] | None) -> bool:
    """Was a delete of this scenario kept for its node (``want_delete``)?"""
    return details is not None and WANTED_KEY in details


class RunningDeadline:
    """`record_move`'s hook for launching -> running: the lab's deadline, or now when its
    delete was kept while it launched (the reaper then deletes it at its next pass: a lab
    built after a restart ran, and was graded, though its learner had deleted it).

    Judged on the row as locked for the move: read before it, a delete kept between that
    read and the move (spawn_service's DELETE while the node finished the build but did
    not answer) was overwritten by the full deadline, and the lab ran to it."""

    def __init__(self, deadline: datetime) -> None:
        self.deadline = deadline  # the one the move wrote, once it ran

    def __call__(self, _conn: Connection, details: Mapping[str, Any]) -> dict[str, Any]:
        """The move's ``expires_at`` (``details``: the row's, locked)."""
        if delete_wanted(details):
            self.deadline = min(self.deadline, datetime.now(UTC))
        return {"expires_at": self.deadline}
