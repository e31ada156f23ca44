"""The shared marker that a scenario's verdict is audited (`score.finalized`), once across
scoreboard replicas.

Each scoreboard replica keeps its own copy of a scenario's audit chain; the store is what
they share. `finalized_audit_claim` inserts the scenario's row in a transaction that stays
open while the caller appends its chain entry: the row commits with it, or rolls back when
the block fails, so a later delivery can still audit. A second replica's insert waits for
the first one's transaction (PostgreSQL: the key's lock, for at most LOCK_TIMEOUT_MS;
SQLite: the write lock, for its busy timeout), then finds the row and the verdict hash it
records. A wait that runs out is `sqlalchemy.exc.OperationalError` (retry later). The
insert uses `INSERT ... RETURNING` (SQLite 3.35 or later).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from forge.store.db import Database
from forge.store.db_engine import SQLITE_BUSY_TIMEOUT_MS
from forge.store.models import FinalizedAudit

# How long a PostgreSQL claim waits for another replica's open claim (a hung or partitioned
# replica must not pin this one): as long as SQLite's busy timeout.
LOCK_TIMEOUT_MS = SQLITE_BUSY_TIMEOUT_MS


def claim_finalized_audit(sess: Session, scenario_id: str, score_sha256: str) -> str | None:
    """Insert the scenario's marker in `sess`'s transaction: None if it was absent (the
    caller audits), else the `score_sha256` recorded by whoever audited the verdict."""
    values = {"scenario_id": scenario_id, "score_sha256": score_sha256,
              "audited_at": datetime.now(UTC)}
    postgres = sess.get_bind().dialect.name == "postgresql"
    if postgres:  # the transaction's waits for a row lock are bounded, not for ever
        sess.execute(text(f"SET LOCAL lock_timeout = {int(LOCK_TIMEOUT_MS)}"))
    insert = pg_insert if postgres else sqlite_insert
    stmt = insert(FinalizedAudit).values(**values).on_conflict_do_nothing(
        index_elements=["scenario_id"]).returning(FinalizedAudit.scenario_id)
    # RETURNING, not rowcount: psycopg reports -1 rows for INSERT ... ON CONFLICT here.
    if sess.execute(stmt).scalar_one_or_none() is not None:
        return None
    return sess.execute(select(FinalizedAudit.score_sha256).where(
        FinalizedAudit.scenario_id == scenario_id)).scalar_one()


@contextmanager
def finalized_audit_claim(db: Database, scenario_id: str,
                          score_sha256: str) -> Iterator[str | None]:
    """Yield None when this caller is the one to audit the verdict (else the verdict hash
    recorded); the marker commits when the block ends and is rolled back if it raises."""
    with db.session() as sess:
        yield claim_finalized_audit(sess, scenario_id, score_sha256)


def finalized_among(db: Database, scenario_ids: list[str]) -> set[str]:
    """Those of `scenario_ids` whose verdict is finalized (by any replica)."""
    if not scenario_ids:
        return set()
    with db.read() as sess:
        return set(sess.scalars(select(FinalizedAudit.scenario_id).where(
            FinalizedAudit.scenario_id.in_(scenario_ids))))


def record_finalized_audit(db: Database, scenario_id: str, score_sha256: str) -> None:
    """Mark the verdict audited (a no-op when it is): for an entry already in a replica's
    chain whose marker never committed (a crash in between)."""
    with db.session() as sess:
        claim_finalized_audit(sess, scenario_id, score_sha256)


__all__ = ["LOCK_TIMEOUT_MS", "claim_finalized_audit", "finalized_among",
           "finalized_audit_claim", "record_finalized_audit"]
