"""The orchestrator's consumers decode through the event contracts: an unknown version or
an invalid body is refused with its reason code, never guessed."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from forge.bus.subjects import SCENARIO_SUBMIT, SPAWN_REQUESTED
from forge.store.failed_events import list_failed_events
from forge.store.models import Scenario

from .conftest import Orch, spawn_event


def _failed_events(orch: Orch, count: int) -> list[object]:
    deadline = time.monotonic() + 10
    while len(list_failed_events(orch.state.ctx.db)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(list_failed_events(orch.state.ctx.db))


def test_unknown_version_spawn_fails_its_pending_scenario_with_the_reason(orch: Orch) -> None:
    event = {**spawn_event(orch.settings), "v": 2}
    now = datetime.now(UTC)
    with orch.state.ctx.db.session() as sess:
        sess.add(Scenario(scenario_id=event["scenario_id"], request_id="req-x", tenant_id="acme",
                          subject="alice", track="netplus", template_id="lab-netplus",
                          template_sha256=None, plan="PRO", retention_days=30, state="pending",
                          state_reason="spawn requested", sat_jti=None, et_jti=None,
                          created_at=now, updated_at=now, expires_at=None, details={}))
    orch.publish(SPAWN_REQUESTED, event)
    row = orch.wait_state(event["scenario_id"], "failed", "running")
    assert row.state == "failed" and row.details["refused"] == "unknown_version"
    assert orch.runtime.list() == []
    failed = _failed_events(orch, 1)
    assert failed and "unknown_version" in failed[0].error  # type: ignore[attr-defined]
    assert event["sat"] not in failed[0].error  # type: ignore[attr-defined]


def test_invalid_submit_is_dead_lettered_naming_the_field(orch: Orch) -> None:
    orch.publish(SCENARIO_SUBMIT, {"scenario_id": "scn-00000000000000aa", "tenant_id": "acme",
                                   "subject": "alice", "reason": "submitted", "force": True})
    failed = _failed_events(orch, 1)
    assert failed, "the invalid submit must be kept as a failed event"
    error = failed[0].error  # type: ignore[attr-defined]
    assert "invalid_event" in error and "force" in error
