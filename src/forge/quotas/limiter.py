"""Rate limits (fixed one-minute windows) and concurrency slots in the state DB.

Atomicity: on SQLite every write transaction starts with BEGIN IMMEDIATE (see forge.store.db),
so check-then-take cannot interleave; on PostgreSQL a transaction-scoped advisory lock per
tenant gives the same guarantee. Callers run `take` inside the transaction that also records
the scenario, so a failed request can give everything back in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from forge.plans import Plan
from forge.store.db import Database
from forge.store.models import QuotaSlot, RateCounter

WINDOW_S = 60
SLOT_GRACE = timedelta(minutes=5)
CONCURRENCY_RETRY_S = 30


class QuotaExceeded(Exception):
    """A limit is reached; `retry_after` is the seconds to wait before trying again."""

    def __init__(self, kind: str, scope: str, limit: int, retry_after: int) -> None:
        what = "spawns per minute" if kind == "rate" else "concurrent labs"
        super().__init__(f"{scope} limit of {limit} {what} reached")
        self.kind = kind
        self.scope = scope
        self.limit = limit
        self.retry_after = max(1, retry_after)


@dataclass(frozen=True)
class Taken:
    """What `take` consumed, so `give_back` can return exactly that."""

    scenario_id: str
    window_start: int
    scopes: tuple[str, ...]


def _lock_tenant(sess: Session, tenant_id: str) -> None:
    if sess.get_bind().dialect.name == "postgresql":
        sess.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": tenant_id})


def _active(sess: Session, now: datetime, *conditions: object) -> int:
    query = select(func.count()).select_from(QuotaSlot).where(
        QuotaSlot.released_at.is_(None), QuotaSlot.expires_at > now, *conditions  # type: ignore[arg-type]
    )
    return int(sess.scalar(query) or 0)


def take(
    sess: Session, *, scenario_id: str, tenant_id: str, subject: str, plan: Plan, now: datetime
) -> Taken:
    """Check every limit of `plan`, then take one spawn and one slot; raises QuotaExceeded."""
    _lock_tenant(sess, tenant_id)
    epoch = now.timestamp()
    window = int(epoch) // WINDOW_S * WINDOW_S
    rate_scopes = (
        (f"tenant:{tenant_id}", plan.tenant_spawns_per_minute, "tenant"),
        (f"subject:{tenant_id}/{subject}", plan.spawns_per_minute, "subject"),
    )
    for key, limit, label in rate_scopes:
        counter = sess.get(RateCounter, (key, window))
        if counter is not None and counter.count >= limit:
            raise QuotaExceeded("rate", label, limit, math.ceil(window + WINDOW_S - epoch))
    if _active(sess, now, QuotaSlot.tenant_id == tenant_id) >= plan.tenant_concurrent:
        raise QuotaExceeded("concurrency", "tenant", plan.tenant_concurrent, CONCURRENCY_RETRY_S)
    if _active(sess, now, QuotaSlot.tenant_id == tenant_id,
               QuotaSlot.subject == subject) >= plan.concurrent:
        raise QuotaExceeded("concurrency", "subject", plan.concurrent, CONCURRENCY_RETRY_S)
    for key, _, _ in rate_scopes:
        counter = sess.get(RateCounter, (key, window))
        if counter is None:
            sess.add(RateCounter(scope=key, window_start=window, count=1))
        else:
            counter.count += 1
    sess.add(QuotaSlot(scenario_id=scenario_id, tenant_id=tenant_id, subject=subject,
                       acquired_at=now, released_at=None,
                       expires_at=now + timedelta(minutes=plan.max_lab_minutes) + SLOT_GRACE))
    sess.flush()
    return Taken(scenario_id, window, tuple(k for k, _, _ in rate_scopes))


def give_back(sess: Session, taken: Taken) -> None:
    """Undo `take` for a request that failed after it: the slot and the spawn counts."""
    slot = sess.get(QuotaSlot, taken.scenario_id)
    if slot is not None:
        sess.delete(slot)
    for key in taken.scopes:
        counter = sess.get(RateCounter, (key, taken.window_start))
        if counter is not None and counter.count > 0:
            counter.count -= 1


def release(db: Database, scenario_id: str, at: datetime | None = None) -> bool:
    """Free a scenario's slot when it ends; False if it was already free or never taken."""
    with db.session() as sess:
        result = sess.execute(
            update(QuotaSlot)
            .where(QuotaSlot.scenario_id == scenario_id, QuotaSlot.released_at.is_(None))
            .values(released_at=at or datetime.now(UTC))
        )
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
        rows = sess.scalars(select(RateCounter).where(RateCounter.window_start < cutoff)).all()
        for row in rows:
            sess.delete(row)
        return len(rows)
