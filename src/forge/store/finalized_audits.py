"""The shared marker that a scenario's verdict is audited (`score.finalized`), once across
scoreboard replicas.

Each scoreboard replica keeps its own copy of a scenario's audit chain; the store is what
they share. `finalized_audit_claim` inserts the scenario's row in a transaction that stays
open while the caller appends its audit entries: the row commits with them, or rolls back
when the block fails, so a later delivery can still audit. A second replica's insert waits
for the first one's transaction (PostgreSQL: the key's lock; SQLite: the write lock) and
then finds the row, so it writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from forge.store.db import Database
from forge.store.models import FinalizedAudit


def claim_finalized_audit(sess: Session, scenario_id: str, score_sha256: str) -> bool:
    """Insert the scenario's marker in `sess`'s transaction: True if it was absent (the
    caller audits), False if it is already there (someone audited the verdict)."""
    values = {"scenario_id": scenario_id, "score_sha256": score_sha256,
              "audited_at": datetime.now(UTC)}
    insert = pg_insert if sess.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(FinalizedAudit).values(**values).on_conflict_do_nothing(
        index_elements=["scenario_id"]).returning(FinalizedAudit.scenario_id)
    # RETURNING, not rowcount: psycopg reports -1 rows for INSERT ... ON CONFLICT here.
    return sess.execute(stmt).scalar_one_or_none() is not None


@contextmanager
def finalized_audit_claim(db: Database, scenario_id: str,
                          score_sha256: str) -> Iterator[bool]:
    """Yield whether this caller is the one to audit the verdict; the marker commits when the
    block ends and is rolled back if it raises."""
    with db.session() as sess:
        yield claim_finalized_audit(sess, scenario_id, score_sha256)


def record_finalized_audit(db: Database, scenario_id: str, score_sha256: str) -> None:
    """Mark the verdict audited (a no-op when it is): for an entry already in a replica's
    chain whose marker never committed (a crash between the two)."""
    with db.session() as sess:
        claim_finalized_audit(sess, scenario_id, score_sha256)


__all__ = ["claim_finalized_audit", "finalized_audit_claim", "record_finalized_audit"]
