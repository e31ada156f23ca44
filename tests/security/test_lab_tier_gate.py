"""Attack: a FREE learner, whose plan includes the netplus track but only its foundation
tier, starts an advanced netplus lab by naming it (`lab` in POST /v1/spawn, or a forged
`lab` field in the tracks page's form, which shows that lab locked with no Start button).

Before: spawn checked only the track, so choosing a lab would have reserved a slot, counted
the spawn and published it for the orchestrator to refuse later. After: 403
`tier_not_in_plan` before anything is reserved, the refusal in the tenant's billing ledger,
and the training gate (the orchestrator's second line) refuses that template's tier too.
Real spawn_service app, real nats-server, SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from forge.billing import ledger
from forge.billing.receipts import issue_receipt
from forge.bus import NatsServer
from forge.config import Settings, load_settings
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.policy import EmbeddedEngine, PolicyBundle, build_training_input, decide_all
from forge.services.spawn.app import build_app
from forge.store.models import IdempotencyRecord, QuotaSlot, RateCounter, Scenario
from forge.templates.registry import TemplateRegistry

from ..services.conftest import prod_environ
from ..support.lab_catalog import lab_catalog_dir

ORIGIN = "http://testserver"
COUNTED = (Scenario, QuotaSlot, RateCounter, IdempotencyRecord)


@pytest.fixture
def free_app(tmp_path: Path, nats: NatsServer, db_url: str
             ) -> Iterator[tuple[TestClient, Settings, Path]]:
    templates = lab_catalog_dir(tmp_path / "templates")
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_DB_URL=db_url,
                                          FORGE_TEMPLATE_DIR=str(templates),
                                          ORCHESTRATOR_URL="http://127.0.0.1:9",
                                          SCOREBOARD_URL="http://127.0.0.1:9"))
    with TestClient(build_app(settings), follow_redirects=False) as client:
        yield client, settings, templates


def counts(client: TestClient) -> list[int]:
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    with db.read() as sess:
        return [int(sess.scalar(select(func.count()).select_from(m)) or 0) for m in COUNTED]


def test_free_learner_cannot_start_an_advanced_lab_of_an_allowed_track(
        free_app: tuple[TestClient, Settings, Path]) -> None:
    client, settings, templates = free_app
    state = client.app.state.spawn  # type: ignore[attr-defined]
    db = state.ctx.db
    key = create_api_key(db, "acme", "alice").plaintext
    receipt = issue_receipt(settings, state.catalog, tenant_id="acme", plan="FREE",
                            subject="alice", days=30).token
    headers = {"x-api-key": key, "x-receipt-token": receipt}
    before = counts(client)
    resp = client.post("/v1/spawn", headers=headers,
                       json={"track": "netplus", "lab": "netplus-advanced",
                             "request_id": "req-tier-0001"})
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["error"] == "tier_not_in_plan"
    assert body["message"] == ("lab: netplus-advanced is of tier advanced; plan FREE allows "
                               "tiers foundation")
    assert body["details"] == [{"field": "lab", "plan": "FREE", "tier": "advanced",
                                "unlocked_by": ["TEAM", "ENTERPRISE"]}]
    assert counts(client) == before  # no scenario, slot, rate count or idempotency record
    denied = [r for r in ledger.records(db, "acme") if r["event"] == "spawn_denied"]
    assert [r["data"]["reason"] for r in denied] == ["tier_not_in_plan"]
    # The same request id still works for a lab the plan includes (nothing was kept).
    ok = client.post("/v1/spawn", headers=headers,
                     json={"track": "netplus", "lab": "basic-netplus",
                           "request_id": "req-tier-0001"})
    assert ok.status_code == 201, ok.text

    # The page offers no Start button for it; a forged form is refused the same way.
    grant(db, "uni", "FREE", "bob")
    bob = create_api_key(db, "uni", "bob").plaintext
    assert client.post("/signin", data={"api_key": bob},
                       headers={"origin": ORIGIN}).status_code == 303
    page = client.get("/tracks").text
    assert 'name="lab" value="netplus-advanced"' not in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    before = counts(client)
    forged = client.post("/spawn", headers={"origin": ORIGIN},
                         data={"csrf": csrf.group(1), "track": "netplus",
                               "lab": "netplus-advanced", "request_id": "web-forged-tier-1"})
    assert forged.status_code == 403 and "plan FREE allows tiers foundation" in forged.text
    assert counts(client) == before

    # Defence in depth: the training gate the orchestrator runs on the SAT's template gets
    # that template's tier and refuses it for FREE.
    template = TemplateRegistry.load(templates).get("netplus-advanced").template
    decision = decide_all(EmbeddedEngine(PolicyBundle.load(None)), build_training_input(
        template, plan_name="FREE", plan_tracks=["netplus"], requested_track="netplus",
        requested_template="netplus-advanced"))
    assert not decision.allow
    assert any('tier "advanced" is not allowed on plan FREE' in r for r in decision.reasons)
