"""Housekeeping purges what only grows, and only what is no longer needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import generate_latest

from forge.config.settings import load_settings
from forge.quotas.limiter import purge_slots, purge_windows
from forge.services.common.app import make_context
from forge.services.common.housekeeping import Housekeeping
from forge.store import idempotency
from forge.store.consumed_tokens import SqlReplayStore
from forge.store.migrate import upgrade
from forge.store.models import IdempotencyRecord, QuotaSlot, RateCounter, ReplayJti

from .conftest import prod_environ


async def test_purges_expired_and_resolved_rows_and_counts_them(
    tmp_path: Path, db_url: str
) -> None:
    settings = load_settings(prod_environ(tmp_path, FORGE_DB_URL=db_url))
    upgrade(settings.db_url)
    ctx = make_context("spawn", settings)
    now = datetime.now(UTC)
    old, fresh = now - timedelta(days=2), now + timedelta(hours=1)
    with ctx.db.session() as sess:
        sess.add_all([
            ReplayJti(jti="gone", kind="SAT", expires_at=old),
            ReplayJti(jti="kept", kind="SAT", expires_at=fresh),
            IdempotencyRecord(request_id="done-old", fingerprint="f", status_code=201,
                              response={}, created_at=old, expires_at=old),
            IdempotencyRecord(request_id="pending-old", fingerprint="f", status_code=0,
                              response={}, created_at=old, expires_at=old),
            IdempotencyRecord(request_id="done-new", fingerprint="f", status_code=201,
                              response={}, created_at=now, expires_at=fresh),
            RateCounter(scope="t:acme", window_start=int(old.timestamp()) // 60 * 60, count=3),
            RateCounter(scope="t:acme", window_start=int(now.timestamp()) // 60 * 60, count=1),
            QuotaSlot(scenario_id="scn-a", tenant_id="acme", subject="a", acquired_at=old,
                      released_at=old, expires_at=fresh),
            QuotaSlot(scenario_id="scn-b", tenant_id="acme", subject="b", acquired_at=now,
                      released_at=None, expires_at=fresh),
        ])
    keeper = Housekeeping(ctx, {
        "replay_jtis": SqlReplayStore(ctx.db).purge_expired,
        "idempotency_records": lambda t: idempotency.purge(ctx.db, t),
        "rate_windows": lambda t: purge_windows(ctx.db, t - timedelta(minutes=10)),
        "quota_slots": lambda t: purge_slots(ctx.db, t - timedelta(hours=1)),
    })
    done = await keeper.run_once(now)
    assert done == {"replay_jtis": 1, "idempotency_records": 1, "rate_windows": 1,
                    "quota_slots": 1}
    with ctx.db.read() as sess:
        assert [r.jti for r in sess.query(ReplayJti)] == ["kept"]
        # A pending record is settled by its retry (never purged under a request in flight).
        assert sorted(r.request_id for r in sess.query(IdempotencyRecord)) == [
            "done-new", "pending-old"]
        assert [s.scenario_id for s in sess.query(QuotaSlot)] == ["scn-b"]
    assert await keeper.run_once(now) == dict.fromkeys(done, 0)
    metrics = generate_latest(ctx.metrics.registry).decode()
    assert 'forge_housekeeping_purged_total{service="spawn",table="replay_jtis"} 1.0' in metrics
    assert "forge_housekeeping_last_success_timestamp_seconds" in metrics
    ctx.db.dispose()
