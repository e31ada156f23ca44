"""Rate limits (fixed one-minute windows) and concurrency slots in the state DB.

Atomicity: on SQLite every write transaction starts with BEGIN IMMEDIATE (see
forge.store.db_engine), so check-then-take cannot interleave; on PostgreSQL a
transaction-scoped advisory lock per tenant gives the same guarantee. Callers run `take`
inside the transaction that also records the scenario, so a failed request can give
everything back in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from forge.plans import Plan
from forge.store.db import Database
from forge.store.models import QuotaSlot, RateCounter, Scenario
from forge.store.prepared import Prepared
from forge.store.row_locks import lock_name
from forge.store.timestamps import aware

SLOTS: Table = QuotaSlot.__table__  # type: ignore[assignment]
SCENARIOS: Table = Scenario.__table__  # type: ignore[assignment]
RATES: Table = RateCounter.__table__  # type: ignore[assignment]
WINDOW_S = 60
# Prebuilt statements: compiled once per dialect, run through the driver on every spawn.
_LIVE_SLOTS = Prepared(select(
    func.count(),
    func.coalesce(func.sum(case((SLOTS.c.subject == bindparam("subject"), 1), else_=0)), 0),
).where(SLOTS.c.tenant_id == bindparam("tenant"), SLOTS.c.released_at.is_(None),
        SLOTS.c.expires_at > bindparam("now")))


# Both rate windows (tenant, subject) counted in one upsert that returns the new counts: a
# spawn over a limit raises, and its transaction rolls the count back. Text, because the
# same SQL serves SQLite and PostgreSQL and, unlike the dialects' upsert constructs, is
# compiled once (those carry no cache key: compiled on every spawn, slower than the three
# statements this replaces).
_COUNT_SPAWN = Prepared(text(
    "INSERT INTO rate_counters (scope, window_start, count) "
    "VALUES (:tenant_key, :window, 1), (:subject_key, :window, 1) "
    "ON CONFLICT (scope, window_start) DO UPDATE SET count = rate_counters.count + 1 "
    "RETURNING scope, count"))
_INSERT_SLOT = Prepared(insert(SLOTS), [c.name for c in SLOTS.c])
# Every lab's end frees its slot twice over (the node that tore it down, then spawn_service
# on the ended notice, which finds it free): a Core update through the driver, not the ORM's
# bulk update, which evaluates the criteria against the session for each call.
_RELEASE_SLOT = Prepared(update(SLOTS).where(SLOTS.c.scenario_id == bindparam("scenario_id"),
                                             SLOTS.c.released_at.is_(None))
                         .values(released_at=bindparam("at")))
SLOT_GRACE = timedelta(minutes=5)
CONCURRENCY_RETRY_S = 30
# Retry-After of a concurrency refusal: when the first live lab of the scope ends, at most this.
CONCURRENCY_RETRY_MAX_S = 24 * 3600


class QuotaExceeded(Exception):
    """A limit is reached; `retry_after` is the seconds to wait before trying again."""

    def __init__(self, kind: str, scope: str, limit: int, retry_after: int,
                 running: str | None = None) -> None:
        what = "spawns per minute" if kind == "rate" else "concurrent labs"
        super().__init__(f"{scope} limit of {limit} {what} reached")
        self.kind = kind
        self.scope = scope
        self.limit = limit
        self.retry_after = max(1, retry_after)
        # The caller's own live lab that ends first (a concurrency refusal only), if any.
        self.running = running


@dataclass(frozen=True)
class Taken:
    """What `take` consumed, so `give_back` can return exactly that."""

    scenario_id: str
    window_start: int
    scopes: tuple[str, ...]


def _live(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (SLOTS.c.released_at.is_(None), SLOTS.c.expires_at > now)


def _active(sess: Session, now: datetime, *conditions: ColumnElement[bool]) -> int:
    query = select(func.count()).select_from(SLOTS).where(*_live(now), *conditions)
    return int(sess.connection().execute(query).scalar() or 0)


def take(
    sess: Session, *, scenario_id: str, tenant_id: str, subject: str, plan: Plan, now: datetime
) -> Taken:
    """Check every limit of `plan`, then take one spawn and one slot; raises QuotaExceeded,
    after which the caller's transaction must roll back (it does when the exception leaves
    `Database.session()`): the spawn counts are written before they are checked.

    Plain SQL statements (no ORM unit of work): this runs inside the spawn hot path.
    """
    conn = sess.connection()
    lock_name(conn, tenant_id)
    epoch = now.timestamp()
    window = int(epoch) // WINDOW_S * WINDOW_S
    tenant_key, subject_key = f"tenant:{tenant_id}", f"subject:{tenant_id}/{subject}"
    rate_scopes = (
        (tenant_key, plan.tenant_spawns_per_minute, "tenant"),
        (subject_key, plan.spawns_per_minute, "subject"),
    )
    # Counted first, checked after: one statement instead of a read and two writes. A
    # refusal raises inside the caller's transaction, which rolls the counts back (as
    # `take`'s contract already required of the slot).
    counted = _COUNT_SPAWN.execute(conn, {
        "tenant_key": tenant_key, "subject_key": subject_key, "window": window}).all()
    counts = {str(scope): int(count) for scope, count in counted}
    for key, limit, label in rate_scopes:
        if counts[key] > limit:
            raise QuotaExceeded("rate", label, limit, math.ceil(window + WINDOW_S - epoch))
    tenant_live, subject_live = _LIVE_SLOTS.execute(
        conn, {"tenant": tenant_id, "subject": subject, "now": now}
    ).one()
    if tenant_live >= plan.tenant_concurrent:
        retry, _ = _first_to_end(conn, now, tenant_id, None)
        raise QuotaExceeded("concurrency", "tenant", plan.tenant_concurrent, retry,
                            _first_to_end(conn, now, tenant_id, subject)[1])
    if subject_live >= plan.concurrent:
        retry, running = _first_to_end(conn, now, tenant_id, subject)
        raise QuotaExceeded("concurrency", "subject", plan.concurrent, retry, running)
    _INSERT_SLOT.execute(conn, {
        "scenario_id": scenario_id, "tenant_id": tenant_id, "subject": subject,
        "acquired_at": now, "released_at": None,
        "expires_at": now + timedelta(minutes=plan.max_lab_minutes) + SLOT_GRACE,
    })
    return Taken(scenario_id, window, (tenant_key, subject_key))


def _first_to_end(conn: Connection, now: datetime, tenant_id: str,
                  subject: str | None) -> tuple[int, str | None]:
    """(seconds until the first live lab of the scope ends, that lab's id) among the tenant's
    (or one subject's) live slots: a running lab ends at its deadline, one not yet running
    at the latest when its slot lapses. (CONCURRENCY_RETRY_S, None) when none is found."""
    ends = func.coalesce(SCENARIOS.c.expires_at, SLOTS.c.expires_at)
    query = (select(SLOTS.c.scenario_id, SCENARIOS.c.expires_at, SLOTS.c.expires_at)
             .select_from(SLOTS.outerjoin(SCENARIOS,
                                          SCENARIOS.c.scenario_id == SLOTS.c.scenario_id))
             .where(SLOTS.c.tenant_id == tenant_id, *_live(now))
             .order_by(ends).limit(1))
    if subject is not None:
        query = query.where(SLOTS.c.subject == subject)
    row = conn.execute(query).first()
    if row is None:
        return CONCURRENCY_RETRY_S, None
    deadline = min(aware(row[1]), aware(row[2])) if row[1] is not None else aware(row[2])
    wait = math.ceil((deadline - now).total_seconds())
    return max(1, min(CONCURRENCY_RETRY_MAX_S, wait)), str(row[0])


def give_back(sess: Session, taken: Taken) -> None:
    """Undo `take` for a request that failed after it: the slot and the spawn counts."""
    conn = sess.connection()
    conn.execute(delete(SLOTS).where(SLOTS.c.scenario_id == taken.scenario_id))
    conn.execute(update(RATES).where(RATES.c.scope.in_(taken.scopes),
                                     RATES.c.window_start == taken.window_start,
                                     RATES.c.count > 0)
                 .values(count=RATES.c.count - 1))


def release(db: Database, scenario_id: str, at: datetime | None = None) -> bool:
    """Free a scenario's slot when it ends; False if it was already free or never taken."""
    with db.session() as sess:
        result = _RELEASE_SLOT.execute(sess.connection(), {
            "scenario_id": scenario_id, "at": at or datetime.now(UTC)})
        return bool(getattr(result, "rowcount", 0))


def active_slots(db: Database, tenant_id: str, subject: str | None = None) -> int:
    """Live slots of a tenant (or one subject of it) now."""
    now = datetime.now(UTC)
    with db.session() as sess:
        if subject is None:
            return _active(sess, now, QuotaSlot.tenant_id == tenant_id)
        return _active(sess, now, QuotaSlot.tenant_id == tenant_id, QuotaSlot.subject == subject)


def purge_windows(db: Database, before: datetime) -> int:
    """Drop rate windows older than `before` (housekeeping)."""
    cutoff = int(before.timestamp()) // WINDOW_S * WINDOW_S
    with db.session() as sess:
        result = sess.execute(delete(RateCounter).where(RateCounter.window_start < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)


def purge_slots(db: Database, before: datetime) -> int:
    """Drop slots released, or expired unreleased, before `before` (housekeeping): neither
    counts against any quota any more."""
    with db.session() as sess:
        result = sess.execute(delete(QuotaSlot).where(
            (QuotaSlot.released_at < before)
            | (QuotaSlot.released_at.is_(None) & (QuotaSlot.expires_at < before))))
        return int(getattr(result, "rowcount", 0) or 0)
