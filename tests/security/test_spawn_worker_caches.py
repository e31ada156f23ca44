"""Red team of the spawn API across worker processes (issue 19 items 4 and 5): revocations,
limits and refusals with FORGE_SPAWN_WORKERS=2.

Attacks: keep spawning on whichever worker still remembers an entitlement after the
operator downgraded the plan, revoked the API key or the learner signed out; spread a
tenant's learners over both workers to get more labs than the tenant limit, or a burst
over both to get more spawns than the minute allows; send the same
request id to both workers at once for two labs; burn quota with requests that fail.
Every one is decided in the shared store inside the request's transaction (no worker keeps
a grant, key or session in memory), so none succeeds. Real `forge serve spawn` with two
workers, real nats-server, one SQLite file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from forge.bus import NatsServer
from forge.config.settings import load_settings
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key, list_api_keys, revoke_api_key
from forge.identity.caller import SESSION_COOKIE, revoke_session, session_claims
from forge.services.spawn.web.security import learner_session
from forge.store.db import Database
from forge.store.models import IdempotencyRecord, QuotaSlot, RateCounter, Scenario

from ..services.conftest import prod_environ
from .spawn_workers import WORKERS, post_spawn, spawn_workers

NETPLUS = {"track": "netplus"}
# TINY: one lab per learner, two per tenant; BURSTY: three spawns a minute.
PLANS = """
plans:
  FREE:
    tracks: [netplus]
    tiers: [foundation]
    spawns_per_minute: 50
    tenant_spawns_per_minute: 100
    concurrent: 1
    tenant_concurrent: 20
    max_lab_minutes: 60
    retention_days: 7
  PRO:
    tracks: [netplus]
    tiers: [foundation]
    spawns_per_minute: 50
    tenant_spawns_per_minute: 100
    concurrent: 3
    tenant_concurrent: 50
    max_lab_minutes: 60
    retention_days: 7
  BURSTY:
    tracks: [netplus]
    tiers: [foundation]
    spawns_per_minute: 3
    tenant_spawns_per_minute: 3
    concurrent: 10
    tenant_concurrent: 10
    max_lab_minutes: 60
    retention_days: 7
  TINY:
    tracks: [netplus]
    tiers: [foundation]
    spawns_per_minute: 50
    tenant_spawns_per_minute: 100
    concurrent: 1
    tenant_concurrent: 2
    max_lab_minutes: 60
    retention_days: 7
"""


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite: processes sharing one file (see test_spawn_workers.py)."""
    return f"sqlite:///{tmp_path}/forge.db"


@pytest.fixture
def service(tmp_path: Path, nats: NatsServer, db_url: str) -> Iterator[tuple[str, int, Database]]:
    plans = tmp_path / "plans.yaml"
    plans.write_text(PLANS)
    with spawn_workers(tmp_path, nats, db_url, FORGE_PLANS_FILE=str(plans)) as running:
        yield running


def _key(db: Database, tenant: str, subject: str) -> dict[str, str]:
    return {"x-api-key": create_api_key(db, tenant, subject).plaintext}


def _kept(db: Database) -> dict[str, int]:
    """Rows of everything a spawn reserves."""
    with db.read() as sess:
        return {m.__tablename__: int(sess.scalar(select(func.count()).select_from(m)) or 0)
                for m in (Scenario, QuotaSlot, IdempotencyRecord, RateCounter)}


def _codes(url: str, headers: dict[str, str]) -> set[int]:
    """Status codes of one spawn per worker and one more (new connections each)."""
    return {post_spawn(url, headers, NETPLUS).status_code for _ in range(WORKERS + 1)}


@pytest.mark.usefixtures("sqlite_only_store")
def test_downgrade_key_revocation_and_sign_out_are_refused_by_every_worker_at_once(
        service: tuple[str, int, Database], tmp_path: Path, db_url: str) -> None:
    url, _, db = service
    grant(db, "acme", "PRO", "alice")  # three labs at a time
    alice = _key(db, "acme", "alice")
    assert post_spawn(url, alice, NETPLUS).status_code == 201
    grant(db, "acme", "FREE", "alice")  # downgraded by the operator: one lab at a time
    assert _codes(url, alice) == {429}
    revoke_api_key(db, create_api_key(db, "acme", "alice").key_id)  # another key: no effect
    assert _codes(url, alice) == {429}
    for key in list_api_keys(db, "acme"):
        if key.subject == "alice":
            revoke_api_key(db, key.key_id)
    assert _codes(url, alice) == {401}

    settings = load_settings(prod_environ(tmp_path / "storage", FORGE_DB_URL=db_url))
    grant(db, "acme", "PRO", "bob")
    session = learner_session(settings, "acme", "bob")
    browser = {"cookie": f"{SESSION_COOKIE}={session}", "origin": url}
    assert post_spawn(url, browser, NETPLUS).status_code == 201
    claims = session_claims(settings, session)
    assert claims is not None
    revoke_session(db, claims)  # what POST /signout does
    assert _codes(url, browser) == {401}
    assert _kept(db)["scenarios"] == 2


@pytest.mark.usefixtures("sqlite_only_store")
def test_tenant_limit_and_request_ids_hold_across_workers_and_refusals_keep_nothing(
        service: tuple[str, int, Database]) -> None:
    url, _, db = service
    grant(db, "tiny", "TINY")  # every learner of the tenant: two labs for the whole tenant
    learners = [_key(db, "tiny", f"l{i}") for i in range(6)]
    json_body = {**learners[0], "content-type": "application/json"}
    refused = {
        "nested": ("[" * 100_000 + "]" * 100_000, 400, "body"),
        "not an object": ("[]", 422, "body"),
        "track list": (json.dumps({"track": ["netplus"]}), 422, "track"),
        "long track": (json.dumps({"track": "n" * 100_000}), 422, "track"),
        "extra field": (json.dumps({"track": "netplus", "x": 1}), 422, "x"),
        "unknown lab": (json.dumps({"track": "netplus", "lab": "nope"}), 400, "lab"),
    }
    for name, (body, status, field) in refused.items():
        with httpx.Client(base_url=url, timeout=30) as client:
            answer = client.post("/v1/spawn", headers=json_body, content=body)
        assert answer.status_code == status, (name, answer.text[:300])
        assert answer.json()["details"][0]["field"] == field, (name, answer.text[:300])
    assert set(_kept(db).values()) == {0}  # no scenario, slot, request id or count

    with ThreadPoolExecutor(12) as pool:
        burst = list(pool.map(lambda i: post_spawn(url, learners[i % 6], NETPLUS), range(12)))
    codes = sorted(r.status_code for r in burst)
    assert codes == [201] * 2 + [429] * 10, codes
    assert _kept(db)["quota_slots"] == 2

    grant(db, "other", "PRO")
    carol = _key(db, "other", "carol")
    same = {"track": "netplus", "request_id": "same-request-0001"}
    with ThreadPoolExecutor(8) as pool:
        dupes = list(pool.map(lambda _: post_spawn(url, carol, same), range(8)))
    scenarios = {r.json()["scenario_id"] for r in dupes if r.status_code in (200, 201)}
    assert len(scenarios) == 1 and [r.status_code for r in dupes].count(201) == 1
    assert {r.status_code for r in dupes} <= {200, 201, 409}
    # The same id from a learner of another tenant is a request of theirs: their own lab.
    grant(db, "third", "PRO")
    theirs = post_spawn(url, _key(db, "third", "dave"), same)
    assert theirs.status_code == 201 and theirs.json()["scenario_id"] not in scenarios
    assert _kept(db)["scenarios"] == 4


@pytest.mark.usefixtures("sqlite_only_store")
def test_the_minute_allowance_holds_across_workers(service: tuple[str, int, Database]) -> None:
    url, _, db = service
    for attempt in range(3):  # a burst that straddles a minute boundary is re-run afresh
        grant(db, f"bursty-{attempt}", "BURSTY")
        learner = _key(db, f"bursty-{attempt}", "alice")
        window = int(time.time()) // 60
        with ThreadPoolExecutor(10) as pool:
            burst = list(pool.map(post_spawn, [url] * 10, [learner] * 10, [NETPLUS] * 10))
        if int(time.time()) // 60 == window:
            break
    codes = sorted(r.status_code for r in burst)
    assert codes == [201] * 3 + [429] * 7, codes
    assert {r.json()["details"][0]["kind"] for r in burst if r.status_code == 429} == {"rate"}
