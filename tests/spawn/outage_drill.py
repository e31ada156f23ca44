"""One spawn across a state-store outage, for the tests that cause one (a full disk, a
PostgreSQL server stopped): refused 503 `store_unavailable` with Retry-After while it
lasts, nothing of it kept, and the same request served once the store is back."""

from __future__ import annotations

from contextlib import AbstractContextManager

from forge.entitlements.grants import grant
from forge.store.models import IdempotencyRecord, QuotaSlot, Scenario

from .conftest import SpawnEnv
from .test_spawn_api import count, key_for, spawn


def spawn_across_outage(env: SpawnEnv, outage: AbstractContextManager[object],
                        request_id: str) -> None:
    """alice's spawn `request_id` while `outage` is entered, then again after it ends."""
    grant(env.state.ctx.db, "acme", "PRO", subject="alice")
    headers = key_for(env)
    before = {model: count(env, model) for model in (Scenario, QuotaSlot, IdempotencyRecord)}
    with env.client() as client:
        with outage:
            refused = spawn(client, headers, request_id=request_id)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "store_unavailable"
            assert refused.headers["retry-after"] == "5"
        assert {model: count(env, model) for model in before} == before  # nothing kept
        again = spawn(client, headers, request_id=request_id)
        assert again.status_code in (201, 202), again.text
        assert count(env, Scenario) == before[Scenario] + 1
