"""POST /v1/spawn and friends against a live spawn_service with real NATS and SQLite."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import nats as nats_client
import pytest
from sqlalchemy import event, func, select, update

from forge.billing import ledger
from forge.billing.receipts import issue_receipt
from forge.bus import Publisher
from forge.bus.contracts import ScenarioEndedV1, publish_event
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key, revoke_api_key
from forge.identity.roles import record_role
from forge.lifecycle.store import move
from forge.quotas.limiter import active_slots, release
from forge.store import idempotency
from forge.store.db import Database
from forge.store.models import IdempotencyRecord, QuotaSlot, RateCounter, Scenario
from forge.store.timestamps import aware
from forge.tokens import SAT, verify_token

from ..services.conftest import SECRETS
from .conftest import MakeSpawn, SpawnEnv

OPERATOR = {"Authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}


def key_for(env: SpawnEnv, tenant: str = "acme", subject: str = "alice") -> dict[str, str]:
    issued = create_api_key(env.state.ctx.db, tenant, subject)
    return {"x-api-key": issued.plaintext}


def receipt_for(env: SpawnEnv, plan: str, tenant: str = "acme", subject: str | None = "alice",
                ttl_days: int = 30) -> str:
    return issue_receipt(env.settings, env.state.catalog, tenant_id=tenant, plan=plan,
                         subject=subject, days=ttl_days).token


def count(env: SpawnEnv, model: type) -> int:
    with env.state.ctx.db.session() as sess:
        return int(sess.scalar(select(func.count()).select_from(model)) or 0)


def spawn(client: httpx.Client, headers: dict[str, str], track: str = "netplus",
          request_id: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"track": track}
    if request_id:
        body["request_id"] = request_id
    return client.post("/v1/spawn", json=body, headers=headers)


async def fetch_spawn_events(url: str, expected: int) -> list[dict[str, Any]]:
    nc = await nats_client.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe("forge.spawn.requested", durable=None)
    msgs = await sub.fetch(expected, timeout=5)
    await nc.close()
    return [json.loads(m.data) for m in msgs]


# ------------------------------------------------------------------ entitlements


def test_receipt_spawn_publishes_verified_event(spawn_env: SpawnEnv) -> None:
    headers = {**key_for(spawn_env), "x-receipt-token": receipt_for(spawn_env, "PRO")}
    with spawn_env.client() as client:
        resp = spawn(client, headers, track="ccna", request_id="req-ccna-0001")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) == {"request_id", "scenario_id", "status", "access_url", "expires_at"}
    assert body["status"] == "pending" and body["request_id"] == "req-ccna-0001"
    assert body["scenario_id"].startswith("scn-") and len(body["scenario_id"]) == 20
    events = asyncio.run(fetch_spawn_events(spawn_env.nats.admin_url, 1))
    event = events[0]
    assert event["scenario_id"] == body["scenario_id"]
    sat = verify_token(spawn_env.settings.sat, SAT, event["sat"])
    assert sat["scenario_id"] == body["scenario_id"] and sat["track"] == "ccna"
    assert sat["template_id"] == "lab-ccna" and sat["plan"] == "PRO"
    assert sat["sub"] == "alice" and sat["tenant_id"] == "acme"
    assert ledger.verify(spawn_env.state.ctx.db, "acme") == []
    assert [r["event"] for r in ledger.records(spawn_env.state.ctx.db, "acme")] == ["spawn_accepted"]


def test_receipt_identifies_the_learner_without_other_credentials(spawn_env: SpawnEnv) -> None:
    """A receipt that names its learner signs them in on every learner route, as the
    401's message and the runbook say: not only on spawn and tracks (status, delete,
    assignments answered 401 to a receipt-only client)."""
    receipt = {"x-receipt-token": receipt_for(spawn_env, "FREE")}
    with spawn_env.client() as client:
        resp = spawn(client, receipt)
        assert resp.status_code == 201, resp.text
        sid = resp.json()["scenario_id"]
        status = client.get(f"/v1/scenarios/{sid}", headers=receipt)
        assert status.status_code == 200 and status.json()["state"] == "pending", status.text
        assert client.get("/v1/assignments", headers=receipt).status_code == 200
        bob = {"x-receipt-token": receipt_for(spawn_env, "FREE", subject="bob")}
        assert client.get(f"/v1/scenarios/{sid}", headers=bob).status_code == 404
        assert client.delete(f"/v1/scenarios/{sid}", headers=bob).status_code == 404
        # A stale receipt sent along with a valid key never locks the key out: the key
        # signs the request in first, and the receipt is not even read.
        keyed = {**key_for(spawn_env), "x-receipt-token": "garbage"}
        assert client.get(f"/v1/scenarios/{sid}", headers=keyed).status_code == 200
        assert client.get("/v1/assignments", headers=keyed).status_code == 200
        alone = client.get(f"/v1/scenarios/{sid}", headers={"x-receipt-token": "garbage"})
        assert alone.status_code == 401 and alone.json()["error"] == "invalid_receipt"
        mine = client.delete(f"/v1/scenarios/{sid}", headers=receipt)
        assert mine.status_code not in (401, 404), mine.text  # hers: on to the orchestrator


def test_a_delete_the_orchestrator_did_not_answer_is_kept_on_the_row(
        spawn_env: SpawnEnv) -> None:
    """The orchestrator down (restarting), a delete of a running lab is kept for it to do
    once back (its reaper: `tests/security/test_node_routing_input.py`), and the answer
    says so; before, nothing was kept and the lab, adopted running by the restart, held
    its slot until its deadline and was graded then."""
    db = spawn_env.state.ctx.db
    grant(db, "acme", "FREE")
    headers = key_for(spawn_env)
    with spawn_env.client() as client:
        sid = spawn(client, headers).json()["scenario_id"]
        # pending: the spawn is not built yet, nothing to keep (it settles by itself)
        assert client.delete(f"/v1/scenarios/{sid}", headers=headers).status_code == 502
        assert "delete_wanted" not in _row(spawn_env, sid).details
        # launching, stuck for 3 minutes (its node gone quiet): a delete is kept, and a
        # delete asked again (every one answered 502) moves neither its update time nor
        # the first delete's: each pushed the reaper's "stuck launching" look back, so a
        # learner repeating the delete kept the stuck launch, and its slot, alive
        root = spawn_env.settings.storage_root
        move(db, root, sid, "launching", "taken")
        stuck = datetime.now(UTC) - timedelta(minutes=3)
        with db.session() as sess:
            sess.execute(update(Scenario).where(Scenario.scenario_id == sid)
                         .values(updated_at=stuck))
        kept = []
        for _ in range(2):
            assert client.delete(f"/v1/scenarios/{sid}", headers=headers).status_code == 502
            launching = _row(spawn_env, sid)
            assert aware(launching.updated_at) == stuck
            kept.append(launching.details["delete_wanted"])
        assert kept[0] == kept[1]
        # running (the orchestrator's move), its deadline an hour away
        move(db, root, sid, "running", "lab running",
             updates={"expires_at": datetime.now(UTC) + timedelta(hours=1)})
        resp = client.delete(f"/v1/scenarios/{sid}", headers=headers)
        assert resp.status_code == 502 and resp.json()["error"] == "backend_unreachable"
        assert "the delete is kept" in resp.json()["message"], resp.text
    row = _row(spawn_env, sid)
    assert row.state == "running" and "delete_wanted" in row.details
    assert row.expires_at is not None
    assert aware(row.expires_at) <= datetime.now(UTC)  # due at the reaper's next pass


def _row(env: SpawnEnv, scenario_id: str) -> Scenario:
    with env.state.ctx.db.read() as sess:
        found = sess.get(Scenario, scenario_id)
        assert found is not None
        sess.expunge(found)
        return found


def test_no_entitlement_is_403(spawn_env: SpawnEnv) -> None:
    with spawn_env.client() as client:
        resp = spawn(client, key_for(spawn_env))
    assert resp.status_code == 403
    assert resp.json()["error"] == "entitlement_not_found"
    assert count(spawn_env, Scenario) == 0


def test_store_grant_used_and_subject_grant_beats_tenant_grant(spawn_env: SpawnEnv) -> None:
    db = spawn_env.state.ctx.db
    grant(db, "acme", "FREE")  # tenant-wide
    headers = key_for(spawn_env)
    with spawn_env.client() as client:
        assert spawn(client, headers, track="ccna").json()["error"] == "track_not_in_plan"
        grant(db, "acme", "PRO", subject="alice")
        assert spawn(client, headers, track="ccna").status_code == 201


def test_receipt_takes_precedence_over_store(spawn_env: SpawnEnv) -> None:
    grant(spawn_env.state.ctx.db, "acme", "TEAM", subject="alice")
    headers = {**key_for(spawn_env), "x-receipt-token": receipt_for(spawn_env, "FREE")}
    with spawn_env.client() as client:
        resp = spawn(client, headers, track="cissp")
    assert resp.status_code == 403
    assert "plan FREE" in resp.json()["message"]


def test_xplan_and_free_default_only_in_dev(make_spawn: MakeSpawn) -> None:
    dev = make_spawn("dev", DEV_ALLOW_XPLAN="true", ALLOW_FREE_DEFAULT="true",
                     DEV_ALLOW_HEADERS="true")
    dev_headers = {"x-client-id": "bob", "x-tenant-id": "uni"}
    with dev.client() as client:
        assert spawn(client, {**dev_headers, "x-plan": "team"}, track="cissp").status_code == 201
        carol = {"x-client-id": "carol", "x-tenant-id": "uni"}
        free = spawn(client, carol, track="ccna")  # falls to FREE: netplus only
        assert free.json()["error"] == "track_not_in_plan"
        assert spawn(client, carol, track="netplus").status_code == 201
        bad = spawn(client, {**dev_headers, "x-plan": "PLATINUM"})
        assert bad.status_code == 400 and "x-plan" in bad.json()["message"]


def test_prod_ignores_dev_headers_and_xplan(spawn_env: SpawnEnv) -> None:
    with spawn_env.client() as client:
        resp = spawn(client, {"x-client-id": "bob", "x-tenant-id": "uni", "x-plan": "TEAM"})
        assert resp.status_code == 401 and resp.json()["error"] == "credentials_required"
        resp = spawn(client, {**key_for(spawn_env), "x-plan": "TEAM"})
        assert resp.status_code == 403 and resp.json()["error"] == "entitlement_not_found"


def test_entitlement_file_source(make_spawn: MakeSpawn, tmp_path: Any) -> None:
    path = tmp_path / "grants.json"
    path.write_text(json.dumps({"grants": [{"tenant_id": "acme", "plan": "PRO"}]}))
    env = make_spawn(ENTITLEMENTS_FILE=str(path))
    with env.client() as client:
        assert spawn(client, key_for(env), track="ccna").status_code == 201


@pytest.mark.parametrize("content", ["grants: [", '{"grants": {"acme": "PRO"}}'])
def test_a_broken_entitlement_file_fails_readiness_and_spawns_answer_503(
        make_spawn: MakeSpawn, tmp_path: Any, content: str) -> None:
    """Runbook: "Validate entitlement sources (receipt/store) and retry /readyz". A file
    that is there but not the grants JSON fails `entitlement_store` naming the file (it
    was "reachable" and every spawn relying on it a 500), and a spawn is 503, not 500."""
    path = tmp_path / "grants.json"
    path.write_text(content)
    env = make_spawn(ENTITLEMENTS_FILE=str(path))
    with env.client() as client:
        ready = client.get("/readyz", headers=OPERATOR)
        resp = spawn(client, key_for(env), track="ccna")
        assert ready.status_code == 503 and "entitlement_store" in ready.json()["failed"]
        assert str(path) in ready.json()["checks"]["entitlement_store"]["detail"]
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"] == "entitlement_store_unavailable"
        path.write_text(json.dumps({"grants": [{"tenant_id": "acme", "plan": "PRO"}]}))
        assert client.get("/readyz", headers=OPERATOR).status_code == 200
        assert spawn(client, key_for(env), track="ccna").status_code == 201


def test_the_entitlement_file_is_never_read_on_the_event_loop(
        make_spawn: MakeSpawn, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A spawn's store reads run on the event loop with SQLite (they never wait); reading and
    # parsing ENTITLEMENTS_FILE (large, or on a slow mount) would stall every request there.
    from forge.entitlements import resolve

    path = tmp_path / "grants.json"
    path.write_text(json.dumps({"grants": [{"tenant_id": "acme", "plan": "PRO"}]}))
    on_loop: list[bool] = []
    real = resolve.lookup_file_grant

    def spy(*args: Any) -> str | None:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(*args)

    monkeypatch.setattr(resolve, "lookup_file_grant", spy)
    env = make_spawn(ENTITLEMENTS_FILE=str(path))
    with env.client() as client:
        assert spawn(client, key_for(env), track="ccna").status_code == 201
    assert on_loop and not any(on_loop)


# ------------------------------------------------------------------ receipts


def test_checkout_then_spawn(make_spawn: MakeSpawn) -> None:
    env = make_spawn("dev")  # stub billing is a configuration error outside dev
    with env.client() as client:
        bought = client.post("/v1/billing/checkout", json={"plan": "pro", "tenant_id": "acme"})
        assert bought.status_code == 201, bought.text
        assert bought.json()["plan"] == "PRO"
        assert bought.json()["new_subject"] is True
        assert bought.json()["subject"].startswith("learner-")
        assert bought.json()["charge_id"].startswith("ch_stub_")
        resp = spawn(client, {"x-receipt-token": bought.json()["receipt"]}, track="ccna")
    assert resp.status_code == 201


def test_checkout_validation_and_disabled_outside_dev(make_spawn: MakeSpawn) -> None:
    env = make_spawn("prod")
    with env.client() as client:
        resp = client.post("/v1/billing/checkout", json={"plan": "PRO", "tenant_id": "acme"})
        assert resp.status_code == 403 and "billing mode" in resp.json()["message"]
    dev = make_spawn("dev")
    with dev.client() as client:
        resp = client.post("/v1/billing/checkout", json={"plan": "GOLD", "tenant_id": "acme"})
        assert resp.status_code == 400 and resp.json()["details"] == [{"field": "plan"}]
        resp = client.post("/v1/billing/checkout", json={"plan": "PRO", "tenant_id": "a b"})
        assert resp.status_code == 400 and resp.json()["details"] == [{"field": "tenant_id"}]


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
def test_malformed_receipt_401(spawn_env: SpawnEnv, token: str) -> None:
    with spawn_env.client() as client:
        resp = spawn(client, {**key_for(spawn_env), "x-receipt-token": token})
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_receipt"


def test_expired_receipt_401(spawn_env: SpawnEnv) -> None:
    from forge.tokens import RECEIPT, mint_token

    token = mint_token(spawn_env.settings.receipt, RECEIPT,
                       {"tenant_id": "acme", "sub": "alice", "plan": "PRO", "retention_days": 9},
                       ttl_s=10, now=time.time() - 3600)
    with spawn_env.client() as client:
        resp = spawn(client, {**key_for(spawn_env), "x-receipt-token": token})
    assert resp.status_code == 401 and "expired" in resp.json()["message"]


def test_receipt_for_other_tenant_403(spawn_env: SpawnEnv) -> None:
    headers = {**key_for(spawn_env, "acme"), "x-receipt-token": receipt_for(spawn_env, "PRO", "evil")}
    with spawn_env.client() as client:
        resp = spawn(client, headers)
    assert resp.status_code == 403 and resp.json()["error"] == "receipt_tenant_mismatch"
    assert [r["event"] for r in ledger.records(spawn_env.state.ctx.db, "acme")] == []


# ------------------------------------------------------------------ validation


def test_unknown_track_400_lists_allowed(spawn_env: SpawnEnv) -> None:
    with spawn_env.client() as client:
        resp = spawn(client, key_for(spawn_env), track="ctf")
    assert resp.status_code == 400
    assert resp.json()["details"][0]["allowed"] == ["ccna", "cissp", "netplus"]
    assert "track" in resp.json()["message"]


@pytest.mark.parametrize("rid", ["short", "x" * 65, "has space!", "../../etc"])
def test_bad_request_id_422_naming_the_field(spawn_env: SpawnEnv, rid: str) -> None:
    """As every other malformed field of the request (a too-long one was a 400, its
    neighbours' 422): nothing reserved, no lab."""
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    with spawn_env.client() as client:
        resp = spawn(client, key_for(spawn_env), request_id=rid)
    assert resp.status_code == 422 and resp.json()["error"] == "validation_error"
    assert resp.json()["details"][0]["field"] == "request_id"
    assert resp.json()["message"].startswith("request_id: ")


def test_invalid_or_revoked_api_key_401(spawn_env: SpawnEnv) -> None:
    issued = create_api_key(spawn_env.state.ctx.db, "acme", "alice")
    revoke_api_key(spawn_env.state.ctx.db, issued.key_id)
    with spawn_env.client() as client:
        for key in (issued.plaintext, "fgk_0000000000000000_" + "x" * 40, "nonsense"):
            resp = spawn(client, {"x-api-key": key})
            assert resp.status_code == 401 and resp.json()["error"] == "invalid_api_key"


# ------------------------------------------------------------------ idempotency


def test_same_request_id_replays_and_conflicts(spawn_env: SpawnEnv) -> None:
    grant(spawn_env.state.ctx.db, "acme", "TEAM")
    alice = key_for(spawn_env, subject="alice")
    bob = key_for(spawn_env, subject="bob")
    with spawn_env.client() as client:
        first = spawn(client, alice, request_id="idem-0000001")
        again = spawn(client, alice, request_id="idem-0000001")
        other_track = spawn(client, alice, track="ccna", request_id="idem-0000001")
        other_caller = spawn(client, bob, request_id="idem-0000001")
        header_id = client.post("/v1/spawn", json={"track": "netplus"},
                                headers={**alice, "x-request-id": "idem-0000001"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert header_id.status_code == 200 and header_id.json() == first.json()
    assert other_track.status_code == 409
    assert other_track.json()["error"] == "request_id_conflict"
    # A request id is the caller's own: another learner's same id is a request of theirs.
    assert other_caller.status_code == 201, other_caller.text
    assert other_caller.json()["scenario_id"] != first.json()["scenario_id"]
    assert count(spawn_env, Scenario) == 2
    assert active_slots(spawn_env.state.ctx.db, "acme") == 2


def _cut_off(env: SpawnEnv, request_id: str, seconds_ago: float) -> None:
    """Make a recorded spawn look like one whose replica died before answering (its answer,
    stored by group commit, is stored first, then taken back)."""
    assert env.state.answers.drain()
    with env.state.ctx.db.session() as sess:
        row = sess.scalars(select(Scenario).where(Scenario.request_id == request_id)).one()
        record = sess.get(IdempotencyRecord,
                          idempotency.record_key(row.tenant_id, row.subject, request_id))
        assert record is not None
        record.status_code = 0
        record.response = {}
        record.created_at = datetime.now(UTC) - timedelta(seconds=seconds_ago)


@pytest.mark.parametrize(("timeout", "settled"), [("8", True), ("30", False)])
def test_cut_off_spawn_is_settled_after_the_configured_pending_timeout(
        make_spawn: MakeSpawn, timeout: str, settled: bool) -> None:
    """FORGE_SPAWN_PENDING_TIMEOUT_S decides when a retry may take an unanswered request
    for cut off: after it, the never-launched scenario fails and its slot is freed; before
    it, the retry is told to wait (the first attempt may still be running)."""
    env = make_spawn(FORGE_SPAWN_PENDING_TIMEOUT_S=timeout)
    grant(env.state.ctx.db, "acme", "TEAM")
    alice = key_for(env)
    with env.client() as client:
        first = spawn(client, alice, request_id="cutoff-00001")
        assert first.status_code == 201, first.text
        _cut_off(env, "cutoff-00001", seconds_ago=10)
        retry = spawn(client, alice, request_id="cutoff-00001")
    with env.state.ctx.db.session() as sess:
        old = sess.get(Scenario, first.json()["scenario_id"])
        assert old is not None
        old_state = old.state
    if settled:
        assert retry.status_code == 201, retry.text
        assert retry.json()["scenario_id"] != first.json()["scenario_id"]
        assert old_state == "failed"
        assert active_slots(env.state.ctx.db, "acme") == 1  # the new one only
    else:
        assert retry.status_code == 409 and retry.json()["error"] == "request_in_progress"
        assert old_state == "pending"
        assert active_slots(env.state.ctx.db, "acme") == 1


# ------------------------------------------------------------------ limits


def test_concurrency_limit_holds_under_a_burst(spawn_env: SpawnEnv) -> None:
    grant(spawn_env.state.ctx.db, "acme", "PRO")  # 3 concurrent per subject
    headers = key_for(spawn_env)

    def one(_: int) -> httpx.Response:
        with spawn_env.client() as client:
            return spawn(client, headers)

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, range(12)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 3, codes
    assert codes.count(429) == 9
    limited = next(r for r in results if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["details"][0]["kind"] == "concurrency"
    assert active_slots(spawn_env.state.ctx.db, "acme", "alice") == 3


RATE_PLANS = """
plans:
  BURSTY:
    tracks: [netplus]
    tiers: [foundation]
    spawns_per_minute: 7
    tenant_spawns_per_minute: 7
    concurrent: 100
    tenant_concurrent: 100
    max_lab_minutes: 30
    retention_days: 7
"""


def test_rate_limit_holds_under_a_burst(make_spawn: MakeSpawn, tmp_path: Any) -> None:
    plans = tmp_path / "plans.yaml"
    plans.write_text(RATE_PLANS)
    env = make_spawn(FORGE_PLANS_FILE=str(plans))
    for attempt in range(3):  # a burst that straddles a minute boundary is re-run afresh
        tenant = f"acme-{attempt}"  # new tenant and subject: counters start at zero
        grant(env.state.ctx.db, tenant, "BURSTY")
        headers = key_for(env, tenant=tenant)

        def one(_: int, headers: dict[str, str] = headers) -> httpx.Response:
            with env.client() as client:
                return spawn(client, headers)

        window = int(time.time()) // 60
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(30)))
        if int(time.time()) // 60 == window:
            break
    codes = [r.status_code for r in results]
    assert codes.count(201) == 7, codes
    limited = [r for r in results if r.status_code == 429]
    assert len(limited) == 23
    assert all(r.json()["details"][0]["kind"] == "rate" for r in limited)
    assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in limited)


ONE_AT_A_TIME = """
plans:
  SINGLE:
    tracks: [netplus]
    tiers: [foundation]
    spawns_per_minute: 2
    tenant_spawns_per_minute: 2
    concurrent: 1
    tenant_concurrent: 1
    max_lab_minutes: 30
    retention_days: 7
"""


def test_a_refused_spawn_uses_none_of_the_minute_allowance(make_spawn: MakeSpawn,
                                                            tmp_path: Any) -> None:
    """Spawns refused for a running lab do not count against spawns per minute (the counts
    are written before the limits are checked and roll back with the refusal)."""
    plans = tmp_path / "plans.yaml"
    plans.write_text(ONE_AT_A_TIME)
    env = make_spawn(FORGE_PLANS_FILE=str(plans))
    for attempt in range(3):  # a run that straddles a minute boundary is re-run afresh
        tenant = f"solo-{attempt}"
        grant(env.state.ctx.db, tenant, "SINGLE")
        headers = key_for(env, tenant=tenant)
        window = int(time.time()) // 60
        with env.client() as client:
            first = spawn(client, headers)
            assert first.status_code == 201, first.text
            refused = [spawn(client, headers) for _ in range(4)]
            assert {r.json()["details"][0]["kind"] for r in refused} == {"concurrency"}
            assert release(env.state.ctx.db, first.json()["scenario_id"])
            second = spawn(client, headers)
        if int(time.time()) // 60 == window:
            break
    assert second.status_code == 201, second.text  # the second of 2 per minute
    with env.state.ctx.db.read() as sess:
        counts = {c.scope: c.count for c in sess.scalars(
            select(RateCounter).where(RateCounter.window_start == window * 60))
            if tenant in c.scope}  # an attempt that straddled into this minute counted there
    assert counts == {f"tenant:{tenant}": 2, f"subject:{tenant}/alice": 2}


@contextmanager
def store_threads(db: Database) -> Iterator[list[str]]:
    """The names of the threads that took a connection of `db` (its read or write engine)
    inside the block: which threads a request's reads and writes ran on."""
    seen: list[str] = []
    engines = {db.engine, getattr(db, "_read_engine", None) or db.engine}

    def note(*_: object) -> None:
        seen.append(threading.current_thread().name)

    for engine in engines:
        event.listen(engine, "checkout", note)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "checkout", note)


def test_slot_released_on_terminal_event(spawn_env: SpawnEnv) -> None:
    grant(spawn_env.state.ctx.db, "acme", "FREE")  # 1 concurrent
    headers = key_for(spawn_env)
    with spawn_env.client() as client:
        first = spawn(client, headers)
        assert first.status_code == 201
        assert spawn(client, headers).status_code == 429

        async def complete() -> None:
            async with Publisher(spawn_env.nats.admin_url) as pub:
                await pub.connection.wait_ready(5)
                ended = ScenarioEndedV1(scenario_id=first.json()["scenario_id"],
                                        state="completed")
                await publish_event(pub, ended, msg_id="done-" + ended.scenario_id)

        with store_threads(spawn_env.state.ctx.db) as used:
            asyncio.run(complete())
            deadline = time.monotonic() + 10
            while active_slots(spawn_env.state.ctx.db, "acme") and time.monotonic() < deadline:
                time.sleep(0.05)
        assert active_slots(spawn_env.state.ctx.db, "acme") == 0
        # The release is written on the store's writer thread, as the service's other
        # writes, not on an AnyIO worker (this test's own slot reads: its main thread).
        assert any(name.startswith("db-write") for name in used), used
        assert not [name for name in used if "AnyIO" in name], used
        assert spawn(client, headers).status_code == 201


def test_nats_down_503_and_nothing_kept(spawn_env: SpawnEnv) -> None:
    receipt = receipt_for(spawn_env, "PRO")
    spawn_env.nats.stop()
    with spawn_env.client() as client:
        resp = spawn(client, {"x-receipt-token": receipt}, request_id="outage-000001")
    assert resp.status_code == 503 and resp.json()["error"] == "bus_unavailable"
    assert "Retry-After" in resp.headers
    # Not connected: the event certainly was not stored, so nothing at all is kept (a lost
    # acknowledgement keeps a tombstone instead: tests/security/test_spawn_ack_lost.py).
    for model in (Scenario, QuotaSlot, IdempotencyRecord):
        assert count(spawn_env, model) == 0, model
    assert not (spawn_env.settings.storage_root / "scenarios").exists()
    with spawn_env.state.ctx.db.session() as sess:
        assert all(c.count == 0 for c in sess.scalars(select(RateCounter)))
    assert ledger.records(spawn_env.state.ctx.db, "acme") == []
    with spawn_env.client() as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503 and "nats" in ready.json()["failed"]


# ------------------------------------------------------------------ access and reads


def test_access_token_exchanged_once_for_cookie(spawn_env: SpawnEnv) -> None:
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    with spawn_env.client() as client:
        # The link is never built from the caller's Host (a client or a proxy forwarding
        # any Host chose the site it led to, token and all): with no public URL configured
        # it is relative, to be joined to the address the client called.
        created = spawn(client, {**key_for(spawn_env), "host": "evil.example"}).json()
    assert created["access_url"].startswith(f"/v1/access/{created['scenario_id']}?token=")
    url = urlparse(created["access_url"])
    assert parse_qs(url.query)["token"]
    db = spawn_env.state.ctx.db
    with spawn_env.client() as browser, store_threads(db) as used:
        resp = browser.get(f"{url.path}?{url.query}")
        assert resp.status_code == 303
        # The exchange's reads (is the key that started the lab still live?) run inline on
        # SQLite, as every request's reads, and its one write (the token used up) on the
        # store's writer thread: no AnyIO worker hop for either.
        assert any(name.startswith("db-write") for name in used), used
        if db.reads_inline:  # elsewhere (PostgreSQL) a read waits on a worker thread
            assert not [name for name in used if "AnyIO" in name], used
        assert resp.headers["location"] == f"/lab/{created['scenario_id']}"
        cookie = resp.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert "Secure" not in cookie  # plain http on loopback
        status = browser.get(f"/v1/scenarios/{created['scenario_id']}")
        assert status.status_code == 200 and status.json()["state"] == "pending"
        page = browser.get(resp.headers["location"])
        assert page.status_code == 200 and created["scenario_id"] in page.text
        again = browser.get(f"{url.path}?{url.query}")
        assert again.status_code == 401 and again.json()["error"] == "token_replayed"
    with spawn_env.client() as other:
        wrong = other.get(f"/v1/access/scn-0000000000000000?{url.query}")
        assert wrong.status_code == 401
        https = other.get(f"{url.path}?{url.query}", headers={"x-forwarded-proto": "https"})
        assert https.status_code == 401  # still single-use


def test_secure_cookie_behind_https(spawn_env: SpawnEnv) -> None:
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    with spawn_env.client() as client:
        created = spawn(client, key_for(spawn_env)).json()
        url = urlparse(created["access_url"])
        resp = client.get(f"{url.path}?{url.query}", headers={"x-forwarded-proto": "https"})
    assert resp.status_code == 303 and "Secure" in resp.headers["set-cookie"]


def test_status_reads_are_owner_only(spawn_env: SpawnEnv) -> None:
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    grant(spawn_env.state.ctx.db, "evil", "PRO")
    alice = key_for(spawn_env, "acme", "alice")
    with spawn_env.client() as client:
        sid = spawn(client, alice).json()["scenario_id"]
        own = client.get(f"/v1/scenarios/{sid}", headers=alice)
        assert own.status_code == 200
        # Times carry their zone (probe AT: naive, which a browser reads as local time).
        created = datetime.fromisoformat(own.json()["created_at"])
        assert created.utcoffset() == timedelta(0)
        assert abs(created - datetime.now(UTC)) < timedelta(minutes=5)
        for intruder in (key_for(spawn_env, "evil", "alice"), key_for(spawn_env, "acme", "bob")):
            resp = client.get(f"/v1/scenarios/{sid}", headers=intruder)
            assert resp.status_code == 404 and resp.json()["error"] == "not_found"
        assert client.get(f"/v1/scenarios/{sid}").status_code == 401
        assert client.get("/v1/scenarios/../../etc", headers=alice).status_code == 404


def test_submit_requires_running_and_owner(spawn_env: SpawnEnv) -> None:
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    alice = key_for(spawn_env)
    with spawn_env.client() as client:
        sid = spawn(client, alice).json()["scenario_id"]
        assert client.post(f"/v1/scenarios/{sid}/submit", headers=alice).status_code == 409
        with spawn_env.state.ctx.db.session() as sess:
            row = sess.get(Scenario, sid)
            assert row is not None
            row.state, row.updated_at = "running", datetime.now(UTC)
        other = key_for(spawn_env, "acme", "bob")
        assert client.post(f"/v1/scenarios/{sid}/submit", headers=other).status_code == 404
        resp = client.post(f"/v1/scenarios/{sid}/submit", headers=alice)
    assert resp.status_code == 202 and resp.json()["status"] == "grading_requested"


def test_a_retried_submit_of_a_lab_grading_for_it_is_accepted(spawn_env: SpawnEnv) -> None:
    """A submit retried after a 503 (its event reached the bus, the answer did not) or a
    double click finds the lab grading for that submit: it is accepted again, not refused.
    A lab grading for another reason (expiry), or finished, still refuses a submit."""
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    alice = key_for(spawn_env)

    def put(sid: str, state: str, reason: str) -> None:
        with spawn_env.state.ctx.db.session() as sess:
            row = sess.get(Scenario, sid)
            assert row is not None
            row.state, row.state_reason, row.updated_at = state, reason, datetime.now(UTC)

    with spawn_env.client() as client:
        sid = spawn(client, alice).json()["scenario_id"]
        url = f"/v1/scenarios/{sid}/submit"
        put(sid, "grading", "submitted")
        again = client.post(url, headers=alice)
        assert again.status_code == 202, again.text
        assert again.json() == {"scenario_id": sid, "status": "grading_requested"}
        assert client.post(url, headers=key_for(spawn_env, "acme", "bob")).status_code == 404
        put(sid, "grading", "expired")
        refused = client.post(url, headers=alice)
        assert refused.status_code == 409 and refused.json()["error"] == "not_running"
        put(sid, "completed", "submitted")
        assert client.post(url, headers=alice).status_code == 409


def test_a_retried_late_submit_graded_as_the_expiry_is_accepted(
        spawn_env: SpawnEnv) -> None:
    """A submit made after the lab's end time is graded as its expiry: the node records
    ('grading', 'expired') with the submit's time in the details (grade_lab.graded_reason).
    Its retry (after a 503 whose event reached the bus, or a double click) was refused 409
    not_running as if no submit had been applied; it is answered as the submit it is. The
    reaper's own expiry (no submit time) still refuses a submit."""
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    alice = key_for(spawn_env)

    def put(sid: str, details: dict[str, str]) -> None:
        with spawn_env.state.ctx.db.session() as sess:
            row = sess.get(Scenario, sid)
            assert row is not None
            row.state, row.state_reason, row.updated_at = ("grading", "expired",
                                                           datetime.now(UTC))
            row.details = {**(row.details or {}), **details}

    with spawn_env.client() as client:
        late, reaped = (spawn(client, alice).json()["scenario_id"] for _ in range(2))
        put(late, {"submitted_at": datetime.now(UTC).isoformat()})
        again = client.post(f"/v1/scenarios/{late}/submit", headers=alice)
        assert again.status_code == 202, again.text
        assert again.json() == {"scenario_id": late, "status": "grading_requested"}
        put(reaped, {})
        refused = client.post(f"/v1/scenarios/{reaped}/submit", headers=alice)
        assert refused.status_code == 409 and refused.json()["error"] == "not_running"


def test_readyz_names_spawn_checks(spawn_env: SpawnEnv) -> None:
    with spawn_env.client() as client:
        body = client.get("/readyz", headers=OPERATOR).json()
    assert body["status"] == "ready"
    assert {"entitlement_store", "receipt_key", "nats", "plans", "policy"} <= set(body["checks"])
    engine = spawn_env.state.policy
    assert engine is not None
    assert body["checks"]["policy"]["detail"] == f"policy hash {engine.policy_hash} (not pinned)"
    spawn_env.state.policy = None  # no bundle loaded: not ready, and the check says so
    try:
        with spawn_env.client() as client:
            down = client.get("/readyz", headers=OPERATOR)
    finally:
        spawn_env.state.policy = engine
    assert down.status_code == 503 and "policy" in down.json()["failed"]
    assert down.json()["checks"]["policy"]["detail"] == "policy bundle not loaded"


@pytest.mark.parametrize("value", ["asg-\x00", "asg-0123456789abcdeg", "x" * 32, "asg-1 OR 1=1"])
def test_a_malformed_assignment_id_is_422_naming_it_and_takes_nothing(
        spawn_env: SpawnEnv, value: str) -> None:
    """An id that cannot exist never reaches the store: a NUL in it was a 500 on
    PostgreSQL (its text cannot hold one); now 422 naming the field, on both stores,
    with nothing reserved or counted."""
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    key = key_for(spawn_env)
    with spawn_env.client() as client:
        resp = client.post("/v1/spawn", headers=key,
                           json={"track": "netplus", "assignment_id": value})
        assert resp.status_code == 422, resp.text
        assert resp.json()["details"][0]["field"] == "assignment_id"
        record_role(spawn_env.state.ctx.db, "acme", "ann", "instructor", source="test")
        ann = key_for(spawn_env, "acme", "ann")
        cohort = client.post("/v1/cohorts", json={"name": "c"}, headers=ann).json()["cohort_id"]
        revoke = client.delete(f"/v1/cohorts/{cohort}/invites/inv-%00", headers=ann)
        assert revoke.status_code == 422 and "invite_id" in revoke.json()["message"]
    assert count(spawn_env, Scenario) == 0 and count(spawn_env, QuotaSlot) == 0
    assert count(spawn_env, RateCounter) == 0


def test_a_body_that_is_not_json_says_so(spawn_env: SpawnEnv) -> None:
    """Malformed JSON was 422 "invalid request: 9" (a character position as the field);
    JSON sent as text/plain or a form was 422 "Input should be a valid dictionary". Now
    400 `invalid_body` saying where, and 415 naming the Content-Type; nothing reserved."""
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    key = key_for(spawn_env)
    with spawn_env.client() as client:
        broken = client.post("/v1/spawn", content=b'{"track": netplus}',
                             headers={**key, "content-type": "application/json"})
        assert broken.status_code == 400, broken.text
        assert broken.json()["error"] == "invalid_body"
        assert broken.json()["message"].startswith("body: not valid JSON at character 10")
        # Which of the parser's two give-ups, not "nested too deeply, or not UTF-8 text".
        deep = client.post("/v1/spawn", content=b"[" * 100_000 + b"]" * 100_000,
                           headers={**key, "content-type": "application/json"})
        assert (deep.status_code, deep.json()["details"]) == (
            400, [{"field": "body", "problem": "nested too deeply"}]), deep.text
        assert deep.json()["message"].startswith("body: JSON nested too deeply (")
        latin = client.post("/v1/spawn", content='{"track": "né"}'.encode("latin-1"),
                            headers={**key, "content-type": "application/json"})
        assert latin.status_code == 400, latin.text
        assert latin.json()["message"] == "body: not UTF-8 text (byte 12)", latin.text
        long = client.post("/v1/spawn", content=b'{"track": "netplus", "n": ' + b"9" * 5000
                           + b"}", headers={**key, "content-type": "application/json"})
        assert long.status_code == 400, long.text
        assert long.json()["details"] == [{"field": "body", "problem": "number too long"}]
        for kind in ("text/plain", "application/x-www-form-urlencoded"):
            typed = client.post("/v1/spawn", content=b'{"track": "netplus"}',
                                headers={**key, "content-type": kind})
            assert typed.status_code == 415, typed.text
            assert typed.json()["error"] == "unsupported_media_type"
            assert typed.json()["details"] == [{"field": "content-type"}]
        # No Content-Type at all (probe AT: 422 "Input should be a valid dictionary").
        untyped = client.post("/v1/spawn", content=b'{"track": "netplus"}', headers=key)
        assert untyped.request.headers.get("content-type") is None
        assert (untyped.status_code, untyped.json()["error"]) == (415,
                                                                  "unsupported_media_type")
        missing = client.post("/v1/spawn", json={"lab": "netplus"}, headers=key)
        assert missing.status_code == 422 and missing.json()["details"][0]["field"] == "track"
    assert count(spawn_env, Scenario) == 0 and count(spawn_env, RateCounter) == 0
