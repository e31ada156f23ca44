"""Spawn events become running labs, or failed scenarios with reasons; never both."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from forge.audit.log import scenario_log
from forge.config import HmacKeyring
from forge.policy import (
    Decision,
    GateDecisions,
    PolicyEngine,
    PolicyEvaluationError,
    PolicyHashMismatch,
)
from forge.services.orchestrator.app import build_app
from forge.store.consumed_tokens import SqlReplayStore
from forge.tokens import ACCESS, mint_token

from .conftest import OPERATOR, MakeOrch, Orch, collect, spawn_event

SPAWN = "forge.spawn.requested"


def audit_events(orch: Orch, scenario_id: str, until: str = "", timeout: float = 5) -> list[str]:
    """The scenario's audit lines; waits (briefly) until one contains `until`."""
    deadline = time.monotonic() + timeout
    while True:
        data = scenario_log(orch.settings.storage_root, scenario_id).read_bytes().decode()
        lines = [line for line in data.splitlines() if line]
        if any(until in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_valid_spawn_runs_lab(orch: Orch) -> None:
    event = spawn_event(orch.settings)
    orch.publish(SPAWN, event)
    row = orch.wait_state(event["scenario_id"], "running", "failed")
    assert row.state == "running", row.state_reason
    assert row.template_sha256 and row.expires_at is not None
    assert set(row.details["hosts"]) == {"learner", "router", "target"}
    assert row.details["hosts"]["learner"] == {"lan": "10.61.1.10"}
    assert row.details["policy"]["allow"] is True
    assert [i.lab_id for i in orch.runtime.list()] == [event["scenario_id"]]
    running = asyncio.run(collect(orch.nats.admin_url, "forge.scenario.running", 1))
    assert running[0]["scenario_id"] == event["scenario_id"]
    lines = audit_events(orch, event["scenario_id"], until='"to":"running"')
    assert any('"to":"launching"' in line for line in lines)
    assert any('"to":"running"' in line for line in lines)
    # The SAT is consumed in the move to launching's transaction: no separate mark (a
    # `scenario.note` and its commit and fsync) before it, and the jti is used.
    assert not any("scenario.note" in line for line in lines), lines
    assert not SqlReplayStore(orch.state.ctx.db).consume(
        _sat_jti(event), "SAT", datetime(2100, 1, 1, tzinfo=UTC))
    gc.collect()  # its transitions' lock went with them: a node does not keep one per lab
    assert event["scenario_id"] not in orch.state.locks


def test_redelivered_event_is_a_no_op(orch: Orch) -> None:
    event = spawn_event(orch.settings)
    orch.publish(SPAWN, event)
    orch.wait_state(event["scenario_id"], "running")
    orch.publish(SPAWN, event)  # a new message id: not de-duplicated by JetStream
    time.sleep(1.0)
    row = orch.row(event["scenario_id"])
    assert row.state == "running"
    assert len(orch.runtime.list()) == 1


def _pending_row(orch: Orch, event: dict[str, object]) -> None:
    """spawn_service's row, as it exists before the orchestrator sees the event."""
    from forge.store.models import Scenario

    now = datetime.now(UTC)
    with orch.state.ctx.db.session() as sess:
        sess.add(Scenario(scenario_id=event["scenario_id"], request_id="req-x", tenant_id="acme",
                          subject="alice", track="netplus", template_id="lab-netplus",
                          template_sha256=None, plan="PRO", retention_days=30, state="pending",
                          state_reason="spawn requested", sat_jti=None, et_jti=None,
                          created_at=now, updated_at=now, expires_at=None, details={}))


DEFECTS = {
    "expired": (lambda s: spawn_event(s, sat_ttl=30, sat_now=time.time() - 3600), "sat_token_expired"),
    "wrong_kid": (lambda s: spawn_event(s, sat_ring=HmacKeyring("X", current=b"z" * 40)),
                  "sat_token_unknown_key"),
    "et_mismatch": (lambda s: spawn_event(s, et_over={"sub": "mallory"}), "sat_et_mismatch"),
    "plan_mismatch": (lambda s: spawn_event(s, sat_over={"plan": "ENTERPRISE"}), "sat_et_mismatch"),
    "wrong_scenario": (lambda s: spawn_event(s, sat_over={"scenario_id": "scn-00000000000000ff"}),
                       "sat_event_mismatch"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_token_defects_fail_the_scenario_and_are_audited(orch: Orch, defect: str) -> None:
    make, code = DEFECTS[defect]
    event = make(orch.settings)
    _pending_row(orch, event)
    orch.publish(SPAWN, event)
    row = orch.wait_state(event["scenario_id"], "failed", "running")
    assert row.state == "failed"
    assert row.details["refused"] == code
    assert orch.runtime.list() == []
    lines = audit_events(orch, event["scenario_id"], until='"to":"failed"')
    assert any('"to":"failed"' in line for line in lines)


def test_a_refused_spawn_tells_its_learner_it_was_refused_and_the_operator_why(
        orch: Orch, caplog: pytest.LogCaptureFixture) -> None:
    # spawn_service signs with a SAT secret this node does not hold (a rotation done out of
    # order): the learner's lab page showed "SAT refused: … SAT_HMAC_SECRET keyring" and
    # the orchestrator's log said nothing.
    caplog.set_level(logging.WARNING, logger="forge.orchestrator.launch")
    make, code = DEFECTS["wrong_kid"]
    event = make(orch.settings)
    _pending_row(orch, event)
    orch.publish(SPAWN, event)
    row = orch.wait_state(event["scenario_id"], "failed", "running")
    assert row.state_reason == ("the lab request was refused: the error is recorded for "
                                "the operator")
    with orch.client() as client:
        view = client.get(f"/v1/scenarios/{event['scenario_id']}", headers=OPERATOR).json()
    assert view["refused"] == code
    assert "SAT_HMAC_SECRET" in view["error"], view
    assert any(event["scenario_id"] in r.getMessage() and "SAT_HMAC_SECRET" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_wrong_type_token_refused(orch: Orch) -> None:
    event = spawn_event(orch.settings)
    event["sat"] = mint_token(orch.settings.sat, ACCESS, {
        "scenario_id": event["scenario_id"], "sub": "alice", "tenant_id": "acme"})
    _pending_row(orch, event)
    orch.publish(SPAWN, event)
    row = orch.wait_state(event["scenario_id"], "failed")
    assert row.details["refused"] == "sat_token_wrong_type"


def _sat_jti(event: Mapping[str, Any]) -> str:
    """The jti of the event's SAT."""
    import base64
    import json

    return str(json.loads(base64.urlsafe_b64decode(event["sat"].split(".")[1] + "=="))["jti"])


def test_replayed_sat_refused(orch: Orch) -> None:
    event = spawn_event(orch.settings)
    jti = _sat_jti(event)
    SqlReplayStore(orch.state.ctx.db).consume(jti, "SAT", datetime(2100, 1, 1, tzinfo=UTC))
    orch.publish(SPAWN, event)
    row = orch.wait_state(event["scenario_id"], "failed")
    assert row.details["refused"] == "sat_replayed"


def test_a_pending_row_an_earlier_version_marked_consuming_still_launches(orch: Orch) -> None:
    """An earlier version marked the row, consumed the SAT, then moved, in three commits;
    a crash after the consume left a pending row marked with its own, used jti. Its
    redelivered event launches it (the jti is not a replay of another's)."""
    from forge.lifecycle.store import set_details

    event = spawn_event(orch.settings)
    _pending_row(orch, event)
    jti = _sat_jti(event)
    set_details(orch.state.ctx.db, orch.settings.storage_root, event["scenario_id"],
                {"sat_consuming": jti}, None)
    SqlReplayStore(orch.state.ctx.db).consume(jti, "SAT", datetime(2100, 1, 1, tzinfo=UTC))
    orch.publish(SPAWN, event)
    row = orch.wait_state(event["scenario_id"], "running", "failed")
    assert row.state == "running", row.state_reason


def test_forged_event_without_a_row_is_dead_lettered(orch: Orch) -> None:
    from forge.store.failed_events import list_failed_events

    event = spawn_event(orch.settings, sat_ring=HmacKeyring("X", current=b"f" * 40))
    orch.publish(SPAWN, event)
    deadline = time.monotonic() + 10
    while not list_failed_events(orch.state.ctx.db) and time.monotonic() < deadline:
        time.sleep(0.05)
    failed = list_failed_events(orch.state.ctx.db)
    assert failed and "sat_token_unknown_key" in failed[0].error
    assert failed[0].scenario_id == event["scenario_id"]


def test_policy_denies_privileged_capability(orch: Orch) -> None:
    event = spawn_event(orch.settings, template="lab-privileged")
    orch.publish(SPAWN, event)
    row = orch.wait_state(event["scenario_id"], "failed", "running")
    assert row.state == "failed"
    reasons = row.details["policy"]["reasons"]
    assert any("SYS_ADMIN" in r and "learner" in r for r in reasons), reasons
    assert "policy denied" in (row.state_reason or "")
    assert orch.runtime.list() == []


class _NoGatesEngine:
    """A policy engine whose gates entry is missing, as a remote OPA that has not loaded
    gates.rego answers (real engine for everything else)."""

    def __init__(self, inner: PolicyEngine) -> None:
        self.inner = inner
        self.policy_hash = inner.policy_hash

    def decide(self, package: str, input: Mapping[str, Any]) -> Decision:
        return self.inner.decide(package, input)

    def decide_gates(self, entry: str, input: Mapping[str, Any]) -> GateDecisions:
        raise PolicyEvaluationError(f"forge.gates.{entry} is undefined in the loaded bundle")

    def probe(self) -> None:
        self.inner.probe()


@pytest.mark.sqlite_only  # about the policy engine, not store semantics
@pytest.mark.parametrize("db_url", [pytest.param("sqlite", id="sqlite_only")], indirect=True)
def test_policy_evaluation_error_fails_the_scenario_with_a_record(orch: Orch) -> None:
    """A policy defect is not an outage: the scenario fails at once with the error and the
    input recorded, instead of being redelivered until it is dead-lettered."""
    orch.state.engine = _NoGatesEngine(orch.state.engine)
    event = spawn_event(orch.settings)
    orch.publish(SPAWN, event)
    row = orch.wait_state(event["scenario_id"], "failed", "running")
    assert row.state == "failed"
    assert row.state_reason == ("policy evaluation failed: the error is recorded for the "
                                "operator")
    assert "forge.gates.launch is undefined" in row.details["error"]  # what /ops shows
    record = row.details["policy"]
    assert "forge.gates.launch is undefined" in record["error"]
    assert record["input"]["template"]
    assert orch.runtime.list() == []


def test_wrong_policy_hash_stops_startup(orch: Orch) -> None:
    from forge.config import load_settings

    from ..services.conftest import prod_environ

    settings = load_settings(prod_environ(orch.settings.storage_root,
                                          OPA_POLICY_HASH="0" * 64, **orch.nats.client_env(),
                                          FORGE_DB_URL=orch.settings.db_url))
    with pytest.raises(PolicyHashMismatch) as err:
        build_app(settings, runtime=orch.runtime)
    assert "0" * 64 in str(err.value) and orch.state.engine.policy_hash in str(err.value)


def test_readyz_names_orchestrator_checks(orch: Orch) -> None:
    with orch.client() as client:
        body = client.get("/readyz", headers=OPERATOR).json()
    assert body["status"] == "ready", body
    assert {"policy", "nats", "runtime", "store", "storage"} <= set(body["checks"])
    assert orch.state.engine.policy_hash in body["checks"]["policy"]["detail"]


def test_reads_are_scoped(orch: Orch, make_orch: MakeOrch) -> None:
    event = spawn_event(orch.settings)
    orch.publish(SPAWN, event)
    orch.wait_state(event["scenario_id"], "running")
    sid = event["scenario_id"]
    with orch.client() as client:
        assert client.get(f"/v1/scenarios/{sid}").status_code == 401
        assert client.get("/v1/scenarios").status_code == 401
        op = client.get(f"/v1/scenarios/{sid}", headers=OPERATOR)
        assert op.status_code == 200 and op.json()["history"][-1]["to"] == "running"
        listed = client.get("/v1/scenarios", params={"state": "running"}, headers=OPERATOR)
        assert [s["scenario_id"] for s in listed.json()["items"]] == [sid]
        mine = client.get("/v1/scenarios", params={"tenant_id": "acme", "track": "netplus"},
                          headers=OPERATOR)
        assert [s["scenario_id"] for s in mine.json()["items"]] == [sid]
        for field, bad in (("tenant_id", "a\x00b"), ("tenant_id", "acme\n"), ("track", "n\x00")):
            refused = client.get("/v1/scenarios", params={field: bad}, headers=OPERATOR)
            assert refused.status_code == 422, refused.text  # a NUL was a 500 on PostgreSQL
            assert refused.json()["details"][0]["field"] == field
        from forge.identity.apikeys import create_api_key

        owner = {"x-api-key": create_api_key(orch.state.ctx.db, "acme", "alice").plaintext}
        other = {"x-api-key": create_api_key(orch.state.ctx.db, "evil", "alice").plaintext}
        assert client.get(f"/v1/scenarios/{sid}", headers=owner).status_code == 200
        assert client.get(f"/v1/scenarios/{sid}", headers=other).status_code == 404
        assert client.get("/v1/scenarios", headers=owner).status_code == 401


def test_owner_sees_every_host_the_template_opens_to_the_learner(orch: Orch) -> None:
    """The owner's view lists the hosts marked `access: learner` (both the workstation and
    the router in the two-router fixture), never the others."""
    from forge.identity.apikeys import create_api_key

    event = spawn_event(orch.settings, template="lab-ccna", track="ccna")
    orch.publish(SPAWN, event)
    sid = event["scenario_id"]
    orch.wait_state(sid, "running")
    owner = {"x-api-key": create_api_key(orch.state.ctx.db, "acme", "alice").plaintext}
    with orch.client() as client:
        hosts = client.get(f"/v1/scenarios/{sid}", headers=owner).json()["hosts"]
        everything = client.get(f"/v1/scenarios/{sid}", headers=OPERATOR).json()["hosts"]
    learner_hosts = set(orch.state.registry.get("lab-ccna").template.learner_hosts)
    assert set(hosts) == learner_hosts and len(learner_hosts) == 2
    assert set(everything) > learner_hosts
