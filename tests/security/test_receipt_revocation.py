"""Attack: keep spawning with a receipt after the operator revoked the learner's plan.

Red-team finding: `resolve_entitlement` honoured any valid receipt before the store, so after
`forge entitlements revoke` (a refund, a chargeback, or a downgrade done as revoke + grant)
the learner who kept the receipt (`x-receipt-token`, or the browser's receipt cookie) went on
spawning with its plan until it expired (30 days), and a learner whose only entitlement was a
receipt (`forge receipt mint`, no grant row) could not be revoked at all ("no live grant").
Now a revoke records its moment for the learner (or the whole tenant) even without a grant,
a receipt issued at or before it grants no plan on every worker, and the store decides
(a newer grant applies; else 403 `entitlement_not_found`). A receipt bought after the revoke
works; the receipt still proves who the learner is (identity is not revoked).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from forge.billing.receipts import issue_receipt
from forge.bus import NatsServer
from forge.config import Settings, load_settings
from forge.entitlements.grants import TENANT_WIDE, grant, list_grants, receipt_revoked, revoke
from forge.entitlements.resolve import EntitlementError, resolve_entitlement
from forge.identity.caller import Caller
from forge.plans import load_plans
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Entitlement as GrantRow

from ..services.conftest import prod_environ
from ..spawn.conftest import MakeSpawn, SpawnEnv, make_spawn  # noqa: F401 (fixture)
from .spawn_workers import WORKERS, post_spawn, spawn_workers
from .test_checkout_signin import ORIGIN, app, complete, start, store  # noqa: F401 (fixtures)

REVOKED = [{"field": "receipt", "revoked": True}]


def _receipt(settings: Settings, plan: str, tenant: str, subject: str | None) -> str:
    return issue_receipt(settings, load_plans(settings.plans_file), tenant_id=tenant,
                         plan=plan, subject=subject, days=30).token


def _after(at: datetime) -> None:
    """Wait until the second after `at` (a receipt issued then is a new purchase)."""
    while time.time() < int(at.timestamp()) + 1:
        time.sleep(0.05)


def _spawn(url: str, receipt: str, request_id: str, track: str = "netplus") -> httpx.Response:
    return post_spawn(url, {"x-receipt-token": receipt},
                      {"track": track, "request_id": request_id})


def _cli_revoke(tmp_path: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "SAT_", "ET_"))}
    env.update(prod_environ(tmp_path / "storage", FORGE_DB_URL=db_url))
    return subprocess.run([sys.executable, "-m", "forge", "entitlements", "revoke", *args],
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_only_store: str) -> str:
    """Processes sharing one SQLite file (as tests/security/test_spawn_workers.py)."""
    return f"sqlite:///{tmp_path}/forge.db"


def test_revoked_receipts_are_refused_by_every_worker(
        tmp_path: Path, nats: NatsServer, sqlite_url: str) -> None:
    with spawn_workers(tmp_path, nats, sqlite_url) as (url, _, db):
        settings = load_settings(prod_environ(tmp_path / "storage", FORGE_DB_URL=sqlite_url))
        grant(db, "acme", "PRO", "alice")  # checkout: the grant and the receipt
        alice = _receipt(settings, "PRO", "acme", "alice")
        bob = _receipt(settings, "PRO", "acme", "bob")  # receipt only (an offline payment)
        carol = _receipt(settings, "TEAM", "uni", "carol")
        erin = _receipt(settings, "PRO", "acme", "erin")  # same tenant, not revoked
        for who, receipt in (("alice", alice), ("bob", bob), ("carol", carol), ("erin", erin)):
            first = _spawn(url, receipt, f"{who}-first")
            assert first.status_code == 201, first.text

        assert revoke(db, "acme", "alice").plan == "PRO"  # the operator's CLI, another process
        only = _cli_revoke(tmp_path, sqlite_url, "--tenant", "acme", "--subject", "bob")
        assert only.returncode == 0, only.stderr
        assert "no live grant for acme/bob (revoke recorded)" in only.stdout
        assert "receipts of acme/bob issued at or before" in only.stdout
        whole = _cli_revoke(tmp_path, sqlite_url, "--tenant", "uni")  # tenant-wide
        assert whole.returncode == 0 and "every learner of uni" in whole.stdout, whole.stderr

        for who, receipt in (("alice", alice), ("bob", bob), ("carol", carol)):
            refused = [_spawn(url, receipt, f"{who}-after-{i}") for i in range(2 * WORKERS)]
            assert {r.status_code for r in refused} == {403}, [r.text for r in refused]
            assert {r.json()["error"] for r in refused} == {"entitlement_not_found"}
            assert all(r.json()["details"] == REVOKED for r in refused)
            tracks = httpx.get(f"{url}/v1/tracks", headers={"x-receipt-token": receipt})
            assert tracks.status_code == 403 and tracks.json()["details"] == REVOKED
        kept = _spawn(url, erin, "erin-second")  # another learner's receipt is untouched
        assert kept.status_code == 201, kept.text

        listed = {g.subject: g for g in list_grants(db, "acme")}
        assert listed["bob"].plan == "-" and listed["bob"].receipts_revoked_at is not None


def test_a_new_purchase_or_grant_after_the_revoke_applies(
        make_spawn: MakeSpawn) -> None:  # noqa: F811
    env: SpawnEnv = make_spawn()
    db = env.state.ctx.db
    old_alice = _receipt(env.settings, "PRO", "acme", "alice")
    old_bob = _receipt(env.settings, "PRO", "acme", "bob")
    with env.client() as client:
        def spawn(receipt: str, rid: str, track: str = "netplus") -> httpx.Response:
            return client.post("/v1/spawn", headers={"x-receipt-token": receipt},
                               json={"track": track, "request_id": rid})

        assert spawn(old_bob, "req-bob-0001", "ccna").status_code == 201
        revoked = revoke(db, "acme", "bob")
        assert revoked.plan is None  # receipt only: the revoke is recorded all the same
        assert spawn(old_bob, "req-bob-0002", "ccna").json()["details"] == REVOKED
        _after(revoked.at)
        new_bob = _receipt(env.settings, "PRO", "acme", "bob")  # bought again
        assert spawn(new_bob, "req-bob-0003", "ccna").status_code == 201
        assert spawn(old_bob, "req-bob-0004", "ccna").status_code == 403  # the old one stays ended

        # A downgrade done as revoke + grant: the old PRO receipt does not outrank FREE.
        revoke(db, "acme", "alice")
        grant(db, "acme", "FREE", "alice")
        down = spawn(old_alice, "req-alice-0001", "ccna")
        assert down.status_code == 403 and down.json()["error"] == "track_not_in_plan"
        assert "plan FREE" in down.json()["message"]
        grant(db, "acme", "PRO", "alice")  # and a new PRO grant works with it
        assert spawn(old_alice, "req-alice-0002", "ccna").status_code == 201


# ------------------------------------------------------------------ the time comparison


@pytest.fixture
def store_db(db_url: str) -> Iterator[Database]:
    upgrade(db_url)
    db = Database(db_url)
    try:
        yield db
    finally:
        db.dispose()


def _revoked_at(db: Database, tenant: str, subject: str, at: datetime) -> None:
    """A revoke recorded at exactly `at`."""
    revoke(db, tenant, subject)
    with db.session() as sess:
        row = sess.scalars(select(GrantRow).where(GrantRow.tenant_id == tenant,
                                                  GrantRow.subject == subject)).one()
        row.receipts_revoked_at = at


def test_a_receipt_of_the_revokes_second_is_refused_and_of_the_next_honoured(
        store_db: Database) -> None:
    # iat is whole seconds: a receipt of second 12:00:00 may predate a revoke at 12:00:00.9.
    noon = int(datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC).timestamp())
    _revoked_at(store_db, "acme", "alice", datetime(2026, 12, 1, 12, 0, 0, 999999, tzinfo=UTC))
    assert receipt_revoked(store_db, "acme", "alice", noon - 1)
    assert receipt_revoked(store_db, "acme", "alice", noon)
    assert not receipt_revoked(store_db, "acme", "alice", noon + 1)
    # A revoke at the very start of a second still refuses that second's receipts.
    _revoked_at(store_db, "acme", "bob", datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC))
    assert receipt_revoked(store_db, "acme", "bob", noon)
    assert not receipt_revoked(store_db, "acme", "bob", noon + 1)
    # Another learner, another tenant, a learner named like the tenant-wide key: untouched.
    assert not receipt_revoked(store_db, "acme", "carol", noon)
    assert not receipt_revoked(store_db, "acme2", "alice", noon)
    # The tenant-wide revoke covers every learner of the tenant, and only of it.
    _revoked_at(store_db, "uni", TENANT_WIDE, datetime(2026, 12, 1, 12, 0, 0, 500, tzinfo=UTC))
    assert receipt_revoked(store_db, "uni", "dave", noon)
    assert not receipt_revoked(store_db, "uni", "dave", noon + 1)
    assert not receipt_revoked(store_db, "unix", "dave", noon)


def test_resolution_skips_a_revoked_receipt_for_the_store(
        store_db: Database, tmp_path: Path) -> None:
    settings = load_settings(prod_environ(tmp_path / "storage"))
    catalog = load_plans(settings.plans_file)
    now = int(time.time())

    def resolve(subject: str, claims: dict[str, Any]) -> str:
        ent = resolve_entitlement(Caller("acme", subject, "api_key"), settings=settings,
                                  catalog=catalog, db=store_db, receipt_claims=claims)
        return f"{ent.plan.name}/{ent.source}"

    def claims(iat: int, sub: str | None = None) -> dict[str, Any]:
        found = {"tenant_id": "acme", "plan": "TEAM", "retention_days": 365, "jti": "j",
                 "iat": iat}
        return found | ({"sub": sub} if sub else {})

    assert resolve("alice", claims(now, "alice")) == "TEAM/receipt"
    _revoked_at(store_db, "acme", "alice", datetime.fromtimestamp(now, UTC))
    with pytest.raises(EntitlementError) as refused:
        resolve("alice", claims(now, "alice"))
    assert refused.value.code == "entitlement_not_found" and refused.value.details == REVOKED
    assert "revoked" in refused.value.message
    grant(store_db, "acme", "FREE", "alice")
    assert resolve("alice", claims(now, "alice")) == "FREE/store"
    assert resolve("alice", claims(now + 1, "alice")) == "TEAM/receipt"  # bought after it
    # A receipt naming no learner (used with an API key): revoked for alice, not for erin.
    assert resolve("alice", claims(now)) == "FREE/store"
    assert resolve("erin", claims(now)) == "TEAM/receipt"


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_browser_purchase_is_revoked_but_still_signs_in(app: TestClient) -> None:  # noqa: F811
    db = app.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    assert complete(app, start(app, "PRO")).status_code == 303  # type: ignore[attr-defined]
    assert "plan PRO" in app.get("/tracks").text
    bought = list_grants(db)
    assert len(bought) == 1 and bought[0].plan == "PRO"
    revoke(db, bought[0].tenant_id, bought[0].subject)  # refund

    tracks = app.get("/tracks")
    assert tracks.status_code == 403 and "revoked" in tracks.text
    assert "on the no plan" in app.get("/account").text
    out = app.post("/signout", data={"csrf": _csrf(app.get("/account").text)},
                   headers={"origin": ORIGIN})
    assert out.status_code == 303 and app.get("/tracks").status_code == 303  # signed out
    signin = app.get("/signin")
    assert "Continue with your purchase" in signin.text
    assert "PRO" not in re.sub(r"<[^>]+>", " ", signin.text)  # the visible text: not the CSRF token
    assert "withdrawn" in signin.text
    back = app.post("/signin/continue", data={"csrf": _csrf(signin.text)},
                    headers={"origin": ORIGIN})
    assert back.status_code == 303  # identity is not revoked: the same learner again
    assert app.get("/tracks").status_code == 403  # but with no plan


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_a_tenant_wide_revoke_names_the_learners_grants_it_leaves(
        tmp_path: Path, sqlite_url: str) -> None:
    # A tenant-wide revoke ends the tenant's grant and its learners' receipt plans; a
    # learner's own grant (a checkout makes one) stays theirs to revoke, and the operator
    # is told which are still live instead of believing the whole tenant is cut off.
    upgrade(sqlite_url)
    db = Database(sqlite_url)
    try:
        grant(db, "uni", "TEAM")
        grant(db, "uni", "PRO", "carol")
        grant(db, "uni", "PRO", "dave")
        revoke(db, "uni", "dave")
    finally:
        db.dispose()
    whole = _cli_revoke(tmp_path, sqlite_url, "--tenant", "uni")
    assert whole.returncode == 0, whole.stderr
    assert "still live: the PRO grant of uni/carol" in whole.stderr
    assert "dave" not in whole.stderr  # already revoked
    one = _cli_revoke(tmp_path, sqlite_url, "--tenant", "uni", "--subject", "carol")
    assert one.returncode == 0 and "still live" not in one.stderr, one.stderr
