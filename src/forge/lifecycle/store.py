"""Persisted transitions: the state row, its history, and the scenario's audit log together."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, select, update

from forge.audit.log import scenario_log
from forge.lifecycle import states
from forge.store.db import Database
from forge.store.models import Scenario, ScenarioTransition
from forge.store.prepared import Prepared

SCENARIOS: Table = Scenario.__table__  # type: ignore[assignment]
TRANSITIONS: Table = ScenarioTransition.__table__  # type: ignore[assignment]
# A lab moves 4-5 times in its life, each in a write transaction: Core statements built
# once (the ORM's load, dirty tracking and flush cost about twice as much per move), run on
# the driver (forge.store.prepared): through `Connection.execute` a move's three statements
# were about half its CPU (compiled-cache lookup, parameters and processors per call).
_LOCKED_COLUMNS = select(SCENARIOS.c.state, SCENARIOS.c.tenant_id, SCENARIOS.c.subject,
                         SCENARIOS.c.track).where(
    SCENARIOS.c.scenario_id == bindparam("sid")).with_for_update()
_LOCKED = Prepared(_LOCKED_COLUMNS)
_LOCKED_DETAILS = Prepared(_LOCKED_COLUMNS.add_columns(SCENARIOS.c.details))
_DETAILS = Prepared(select(SCENARIOS.c.details).where(
    SCENARIOS.c.scenario_id == bindparam("sid")).with_for_update())
_RECORD = Prepared(insert(TRANSITIONS), ["scenario_id", "from_state", "to_state", "reason", "at"])


@functools.lru_cache(maxsize=32)
def _update(columns: tuple[str, ...]) -> Prepared:
    """The row's UPDATE setting exactly `columns` (sorted; a move's set depends on its
    caller's updates, a handful of fixed sets in Forge), prepared once per set."""
    return Prepared(update(SCENARIOS).where(SCENARIOS.c.scenario_id == bindparam("sid")),
                    list(columns))


def _update_row(conn: Connection, scenario_id: str, values: dict[str, Any]) -> None:
    """SET `values` (column key → value) on the scenario's row."""
    _update(tuple(sorted(values))).execute(conn, {"sid": scenario_id, **values})


# Read on every status poll (the lab page polls its scenario every 50 ms until it runs):
# compiled once and run on the driver (forge.store.prepared), with Core's own bind and
# result processors; through `Connection.execute` it was ~11 % of a poll's CPU.
_ROW = Prepared(select(SCENARIOS).where(SCENARIOS.c.scenario_id == bindparam("sid")))


class ScenarioNotFound(LookupError):
    """No scenario with that id."""


@dataclass(frozen=True, slots=True)
class ScenarioRecord:
    """A read-only copy of one scenario row (the `scenarios` table's columns).

    Read with Core: a row read through the ORM (`Session.get`, then detached) cost about
    twice the CPU, and the lab page polls its scenario every few hundred milliseconds."""

    scenario_id: str
    request_id: str
    tenant_id: str
    subject: str
    track: str
    template_id: str
    template_sha256: str | None
    plan: str
    retention_days: int
    state: str
    state_reason: str | None
    sat_jti: str | None
    et_jti: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    details: dict[str, Any]
    node_id: str | None
    node_url: str | None


# A scenario row as the services read it: an ORM row (lists, queries) or a record (`load`).
ScenarioRow = Scenario | ScenarioRecord


@dataclass(frozen=True)
class Transition:
    """One completed state change, ready to publish as `forge.scenario.<to_state>`."""

    scenario_id: str
    from_state: str
    to_state: str
    reason: str
    at: datetime
    tenant_id: str
    subject: str
    track: str


def read_record(conn: Connection, scenario_id: str) -> ScenarioRecord | None:
    """The scenario row read on `conn`, or None."""
    row = _ROW.execute(conn, {"sid": scenario_id}).first()
    return None if row is None else ScenarioRecord(**row._asdict())


def load(db: Database, scenario_id: str) -> ScenarioRecord:
    """A read-only copy of the scenario row (in a `Database.reading()` block: its
    snapshot)."""
    with db.read() as sess:
        record = read_record(sess.connection(), scenario_id)
    if record is None:
        raise ScenarioNotFound(scenario_id)
    return record


def move(
    db: Database, storage_root: Path, scenario_id: str, target: str, reason: str,
    *, updates: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
    expected: str | None = None,
) -> Transition:
    """Apply one allowed transition atomically, record it, and append it to the audit log.

    With ``expected``, the move happens only from that state (IllegalTransition otherwise):
    for a service that must not overtake another, e.g. failing a spawn only while pending.
    """
    transition = record_move(db, scenario_id, target, reason, updates=updates,
                             details=details, expected=expected)
    audit_move(storage_root, transition)
    return transition


def record_move(
    db: Database, scenario_id: str, target: str, reason: str,
    *, updates: dict[str, Any] | None = None, details: dict[str, Any] | None = None,
    expected: str | None = None,
    with_move: Callable[[Connection, dict[str, Any]], dict[str, Any] | None] | None = None,
) -> Transition:
    """``move``'s store half: the row and its history, in one transaction, without the
    audit entry. For a caller overlapping the entry's fsync with other work; it must call
    ``audit_move`` before the scenario's next move, so its log stays in order.

    ``with_move(conn, details)`` runs in that transaction once the move is allowed, before
    it is written, with the row's details as they were (``{}`` unless ``details`` is given):
    a write that must happen with the move or not at all (an error it raises rolls both
    back), in one commit instead of two. What it returns, if anything, are more column
    values for the move, decided on the row as locked for it."""
    now = datetime.now(UTC)
    reason = reason[:2000]
    with db.session() as sess:
        conn = sess.connection()
        # Locked for the check and the write, so two services racing to move one scenario
        # (spawn_service failing a pending spawn, the orchestrator launching it) cannot both
        # succeed on a database with row locks; SQLite serialises writers anyway.
        locked = _LOCKED_DETAILS if details else _LOCKED
        row = locked.execute(conn, {"sid": scenario_id}).first()
        if row is None:
            raise ScenarioNotFound(scenario_id)
        current = row.state
        if expected is not None and current != expected:
            raise states.IllegalTransition(scenario_id, current, target)
        states.check(scenario_id, current, target)
        more = with_move(conn, (row.details or {}) if details else {}) if with_move else None
        values = {**(updates or {}), **(more or {}), "state": target, "state_reason": reason,
                  "updated_at": now}
        if details:
            values["details"] = {**(row.details or {}), **details}
        _update_row(conn, scenario_id, values)
        _RECORD.execute(conn, {"scenario_id": scenario_id, "from_state": current,
                               "to_state": target, "reason": reason, "at": now})
        return Transition(scenario_id, current, target, reason, now, row.tenant_id,
                          row.subject, row.track)


def audit_move(storage_root: Path, transition: Transition) -> None:
    """``move``'s audit half: the transition's entry in the scenario's log (fsynced)."""
    scenario_log(storage_root, transition.scenario_id).append(
        "scenario.state", {"from": transition.from_state, "to": transition.to_state,
                           "reason": transition.reason}, at=transition.at
    )


def set_details(db: Database, storage_root: Path, scenario_id: str, details: dict[str, Any],
                note: str | None) -> None:
    """Merge ``details`` into the row without a transition, and audit ``note`` (None: the
    store only, for a caller that wrote its note first: on a full disk nothing is stored)."""
    now = datetime.now(UTC)
    with db.session() as sess:
        conn = sess.connection()
        row = _DETAILS.execute(conn, {"sid": scenario_id}).first()
        if row is None:
            raise ScenarioNotFound(scenario_id)
        _update_row(conn, scenario_id, {"details": {**(row.details or {}), **details},
                                        "updated_at": now})
    if note is not None:
        scenario_log(storage_root, scenario_id).append("scenario.note", {"note": note[:2000]},
                                                       at=now)


def history(db: Database, scenario_id: str) -> list[dict[str, Any]]:
    """Every transition of a scenario, oldest first."""
    with db.read() as sess:
        rows = sess.scalars(
            select(ScenarioTransition).where(ScenarioTransition.scenario_id == scenario_id)
            .order_by(ScenarioTransition.id)
        ).all()
        return [{"from": r.from_state, "to": r.to_state, "reason": r.reason,
                 "at": r.at.isoformat()} for r in rows]
