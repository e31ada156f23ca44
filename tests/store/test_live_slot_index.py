"""A spawn's limit check reads the tenant's live slots only, whatever it released before.

Through the tenant index it read every slot the tenant had released in the last hour (they
are purged after one): 1.4 ms per spawn with 500 released slots per tenant, inside the
write transaction every worker queues for, so the spawn API slowed as a class went on
(232 → 165 spawns/s within one bench). The partial index of live slots covers the check.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, text

from forge.quotas.limiter import _LIVE_SLOTS, active_slots
from forge.store import Database, upgrade
from forge.store.models import QuotaSlot


def _fill(db: Database, now: datetime) -> None:
    later, earlier = now + timedelta(minutes=30), now - timedelta(minutes=5)
    rows = [dict(scenario_id=f"scn-old-{i}", tenant_id="uni", subject=f"s{i % 7}",
                 acquired_at=earlier, expires_at=later, released_at=earlier)
            for i in range(600)]
    rows += [dict(scenario_id="scn-a", tenant_id="uni", subject="ada", acquired_at=now,
                  expires_at=later, released_at=None),
             dict(scenario_id="scn-b", tenant_id="uni", subject="ada", acquired_at=now,
                  expires_at=later, released_at=None),
             dict(scenario_id="scn-c", tenant_id="uni", subject="bob", acquired_at=now,
                  expires_at=later, released_at=None),
             dict(scenario_id="scn-lapsed", tenant_id="uni", subject="ada", acquired_at=earlier,
                  expires_at=earlier, released_at=None),
             dict(scenario_id="scn-other", tenant_id="college", subject="ada",
                  acquired_at=now, expires_at=later, released_at=None)]
    with db.session() as sess:
        sess.execute(insert(QuotaSlot), rows)


def test_live_slots_are_counted_from_the_live_index(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    try:
        now = datetime.now(UTC)
        _fill(db, now)
        assert active_slots(db, "uni") == 3  # released and lapsed slots do not count
        assert active_slots(db, "uni", "ada") == 2
        with db.read() as sess:
            conn = sess.connection()
            tenant_live, subject_live = _LIVE_SLOTS.execute(
                conn, {"tenant": "uni", "subject": "ada", "now": now}).one()
            assert (tenant_live, subject_live) == (3, 2)
            if conn.dialect.name == "sqlite":
                compiled = _LIVE_SLOTS._statement.compile(dialect=conn.dialect)
                values = compiled.construct_params(
                    {"subject": "ada", "tenant": "uni", "now": now.isoformat()})
                order = compiled.positiontup or []
                plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + str(compiled), tuple(values[k] for k in order)))
                assert "COVERING INDEX ix_quota_slots_live" in plan, plan
            else:
                definition = conn.execute(text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_quota_slots_live'"
                )).scalar_one()
                assert "WHERE (released_at IS NULL)" in definition, definition
    finally:
        db.dispose()
