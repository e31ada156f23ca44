"""A spawn event that breaks its contract cannot fail someone else's pending lab.

Such an event's token is never checked (it cannot be read), so the orchestrator fails the
pending scenario it names only when the event also names that scenario's own tenant and
subject. Before, any contract-breaking event naming a pending scenario id failed it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from forge.bus.subjects import SPAWN_REQUESTED
from forge.store.failed_events import list_failed_events
from forge.store.models import Scenario

from ..orchestrator.conftest import MakeOrch, make_orch, spawn_event  # noqa: F401  (fixture)


def test_broken_event_naming_another_tenants_scenario_leaves_it_pending(
        make_orch: MakeOrch) -> None:  # noqa: F811
    orch = make_orch()
    victim = spawn_event(orch.settings, tenant="globex", subject="grace")
    now = datetime.now(UTC)
    with orch.state.ctx.db.session() as sess:
        sess.add(Scenario(scenario_id=victim["scenario_id"], request_id="req-victim",
                          tenant_id="globex", subject="grace", track="netplus",
                          template_id="lab-netplus", template_sha256=None, plan="PRO",
                          retention_days=30, state="pending", state_reason="spawn requested",
                          sat_jti=None, et_jti=None, created_at=now, updated_at=now,
                          expires_at=None, details={}))
    forged = {**spawn_event(orch.settings, tenant="acme", subject="mallory"),
              "scenario_id": victim["scenario_id"], "v": 2}
    orch.publish(SPAWN_REQUESTED, forged)
    deadline = time.monotonic() + 15
    while not list_failed_events(orch.state.ctx.db) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list_failed_events(orch.state.ctx.db), "the broken event was never refused"
    assert orch.row(victim["scenario_id"]).state == "pending"
