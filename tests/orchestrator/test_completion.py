"""Grading, completion, TTL, extend, delete, and what survives an orchestrator restart."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import nats as nats_client

from forge.bus.contracts import ScenarioSubmitV1, payload
from forge.bus.evidence_pack import INLINE_PACK_LIMIT, MAX_PACK_BYTES, decode_pack
from forge.bus.object_buckets import get_object
from forge.bus.permissions import EVIDENCE_BUCKET
from forge.bus.ports import free_port
from forge.identity.apikeys import create_api_key
from forge.store.models import Scenario

from .conftest import OPERATOR, MakeOrch, Orch, collect, spawn_event

SPAWN = "forge.spawn.requested"


def running(orch: Orch, **kw: object) -> str:
    event = spawn_event(orch.settings, **kw)  # type: ignore[arg-type]
    orch.publish(SPAWN, event)
    orch.wait_state(event["scenario_id"], "running")
    return str(event["scenario_id"])


def test_operator_completion_grades_and_tears_down(orch: Orch) -> None:
    sid = running(orch)
    row = orch.row(sid)
    secret = row.details["variables"]["secret"]
    # Solve one criterion as the learner would: save what the target serves.
    orch.runtime.exec(sid, "learner", shell=f"echo 'token {secret}' > /workspace/answer.txt")
    with orch.client() as client:
        assert client.post(f"/internal/scenarios/{sid}/complete").status_code == 401
        resp = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
        assert resp.status_code == 200 and resp.json()["state"] == "completed"
        again = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
        assert again.json()["state"] == "completed"
    assert orch.runtime.list() == []
    done = asyncio.run(collect(orch.nats.admin_url, "forge.scenario.completed", 1))[0]
    assert done["scenario_id"] == sid and done["completion_reason"] == "operator"
    by_criterion = {r["criterion_id"]: r["passed"] for r in done["results"]}
    assert by_criterion["saved-page"] is True
    assert done["sat"] and done["et"] and done["template"]["sha256"] == row.template_sha256
    # The evidence rides inline (a small pack): outputs and the log through completion;
    # the node's own copy is gone once the event is on the bus.
    pack = decode_pack(base64.b64decode(done["evidence_pack"]), sid)
    assert done["evidence_object"] is None
    assert set(done["evidence"]) == set(pack.outputs)
    assert f"token {secret}".encode() in pack.outputs["saved-page.0.stdout"]
    assert not (orch.settings.storage_root / "scenarios" / sid / "evidence").exists()
    assert pack.audit_log.endswith(b"\n") and b'"event":"scenario.completed"' in \
        pack.audit_log.splitlines()[-1]


def test_untouched_lab_fails_the_work_criterion(orch: Orch) -> None:
    sid = running(orch)
    with orch.client() as client:
        client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    done = asyncio.run(collect(orch.nats.admin_url, "forge.scenario.completed", 1))[0]
    saved = next(r for r in done["results"] if r["criterion_id"] == "saved-page")
    assert saved["passed"] is False and saved["exit_code"] != 0


def test_submit_event_completes(orch: Orch) -> None:
    sid = running(orch)
    row = orch.row(sid)
    submit = ScenarioSubmitV1(scenario_id=sid, tenant_id=row.tenant_id, subject=row.subject)
    orch.publish(submit.bus_subject(), payload(submit))
    row = orch.wait_state(sid, "completed", "failed")
    assert row.state == "completed"


def test_delete_tears_down_without_grading(orch: Orch) -> None:
    sid = running(orch)
    owner = {"x-api-key": create_api_key(orch.state.ctx.db, "acme", "alice").plaintext}
    with orch.client() as client:
        resp = client.delete(f"/v1/scenarios/{sid}", headers=owner)
        assert resp.status_code == 200 and resp.json()["state"] == "deleted"
        assert client.delete(f"/v1/scenarios/{sid}", headers=owner).json()["state"] == "deleted"
    assert orch.runtime.list() == []
    deleted = asyncio.run(collect(orch.nats.admin_url, "forge.scenario.deleted", 1))
    assert deleted[0]["scenario_id"] == sid


def _set_deadline(orch: Orch, sid: str, when: datetime) -> None:
    with orch.state.ctx.db.session() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None
        row.expires_at = when


def test_extend_only_in_last_ten_minutes_and_capped(orch: Orch) -> None:
    sid = running(orch)
    with orch.client() as client:
        early = client.post(f"/v1/scenarios/{sid}/extend", headers=OPERATOR, json={"minutes": 5})
        assert early.status_code == 409 and early.json()["error"] == "too_early"
        soon = datetime.now(UTC) + timedelta(minutes=5)
        _set_deadline(orch, sid, soon)
        ok = client.post(f"/v1/scenarios/{sid}/extend", headers=OPERATOR, json={"minutes": 15})
        assert ok.status_code == 200, ok.text
        new = datetime.fromisoformat(ok.json()["expires_at"])
        assert abs((new - soon).total_seconds() - 900) < 2
        # PRO caps a lab at 180 minutes from creation.
        created = orch.row(sid).created_at.replace(tzinfo=UTC)
        _set_deadline(orch, sid, created + timedelta(minutes=175))
        capped = client.post(f"/v1/scenarios/{sid}/extend", headers=OPERATOR, json={"minutes": 30})
        if (created + timedelta(minutes=175)) - datetime.now(UTC) <= timedelta(minutes=10):
            assert capped.status_code == 200 and capped.json()["capped"] is True
        _set_deadline(orch, sid, created + timedelta(minutes=180))
        at_cap = client.post(f"/v1/scenarios/{sid}/extend", headers=OPERATOR, json={"minutes": 5})
        assert at_cap.status_code == 409
        bad = client.post(f"/v1/scenarios/{sid}/extend", headers=OPERATOR, json={"minutes": 0})
        assert bad.status_code == 422
        for lax in ("5", True, 5.0):  # a number, not something that converts to one
            coerced = client.post(f"/v1/scenarios/{sid}/extend", headers=OPERATOR,
                                  json={"minutes": lax})
            assert coerced.status_code == 422, (lax, coerced.text)
        # Past its end (before the reaper's next round), a lab is not given more time.
        _set_deadline(orch, sid, datetime.now(UTC) - timedelta(minutes=5))
        late = client.post(f"/v1/scenarios/{sid}/extend", headers=OPERATOR, json={"minutes": 5})
        assert late.status_code == 409 and late.json()["error"] == "not_running", late.text


def test_reaper_expires_on_time(orch: Orch) -> None:
    sid = running(orch)
    _set_deadline(orch, sid, datetime.now(UTC) - timedelta(seconds=1))
    row = orch.wait_state(sid, "completed", timeout=30)
    done = asyncio.run(collect(orch.nats.admin_url, "forge.scenario.completed", 1))[0]
    assert done["completion_reason"] == "expired" and row.state == "completed"


def test_deadline_passed_while_down_is_reaped_after_restart(make_orch: MakeOrch) -> None:
    first = make_orch(reaper_interval_s=3600)
    sid = running(first)
    keep = running(first)
    _set_deadline(first, sid, datetime.now(UTC) - timedelta(minutes=1))
    # A restart: a second orchestrator on the same DB and runtime state adopts the labs
    # (the first stops first: two live processes never share a node id).
    first.stop()
    second = make_orch()
    row = second.wait_state(sid, "completed", timeout=30)
    assert row.state == "completed"
    assert second.row(keep).state == "running"
    assert keep in {i.lab_id for i in second.runtime.list()}


def test_crash_between_create_and_running_is_adopted(make_orch: MakeOrch) -> None:
    from forge.services.orchestrator.labspec import lab_spec
    from forge.templates.variables import generate_values, render

    first = make_orch(reaper_interval_s=3600)
    event = spawn_event(first.settings)
    sid = str(event["scenario_id"])
    loaded = first.state.registry.get("lab-netplus")
    now = datetime.now(UTC)
    with first.state.ctx.db.session() as sess:
        sess.add(Scenario(scenario_id=sid, request_id="r", tenant_id="acme", subject="alice",
                          track="netplus", template_id="lab-netplus", template_sha256=loaded.sha256,
                          plan="PRO", retention_days=30, state="launching", state_reason="x",
                          sat_jti=None, et_jti=None, created_at=now, updated_at=now,
                          expires_at=None, details={}))
    values = generate_values(loaded.template)
    first.runtime.create(lab_spec(sid, render(loaded.template, values)))
    first.stop()  # a restart (two live processes never share a node id)
    second = make_orch()
    row = second.wait_state(sid, "running", timeout=20)
    assert row.expires_at is not None and set(row.details["hosts"]) == {"learner", "router",
                                                                        "target"}


def test_orphan_lab_destroyed_at_start(make_orch: MakeOrch) -> None:
    first = make_orch(reaper_interval_s=3600)
    sid = running(first)
    with first.state.ctx.db.session() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None
        row.state = "failed"  # the DB says it ended, but the lab is still there
    first.stop()  # a restart (two live processes never share a node id)
    second = make_orch()
    deadline = time.monotonic() + 60  # a teardown (sandboxes, namespace, cgroups) under load
    while sid in {i.lab_id for i in second.runtime.list()} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sid not in {i.lab_id for i in second.runtime.list()}




def test_opa_outage_keeps_pending_then_launches(make_orch: MakeOrch) -> None:
    from forge.policy import EmbeddedEngine
    from forge.policy.opa_server import OpaServer

    port = free_port()
    orch = make_orch(OPA_URL=f"http://127.0.0.1:{port}")
    event = spawn_event(orch.settings)
    orch.publish(SPAWN, event)
    time.sleep(2.5)
    row = orch.row(event["scenario_id"]) if _exists(orch, event["scenario_id"]) else None
    assert row is None or row.state == "pending"
    with orch.client() as client:
        ready = client.get("/readyz").json()
    assert "policy" in ready["failed"]
    server = OpaServer(EmbeddedEngine(orch.settings.policies_dir), "127.0.0.1", port)
    server.start_background()
    try:
        row = orch.wait_state(event["scenario_id"], "running", "failed", timeout=30)
        assert row.state == "running", row.state_reason
    finally:
        server.shutdown()
        server.server_close()


def _exists(orch: Orch, sid: str) -> bool:
    try:
        orch.row(sid)
    except LookupError:
        return False
    return True


def test_completed_event_is_json_serialisable_and_bounded(orch: Orch) -> None:
    sid = running(orch)
    orch.runtime.exec(sid, "learner", shell="head -c 3000000 /dev/zero | tr '\\0' x > /workspace/answer.txt")
    with orch.client() as client:
        client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    done = asyncio.run(collect(orch.nats.admin_url, "forge.scenario.completed", 1))[0]
    assert len(json.dumps(done)) < 512 * 1024
    saved = next(r for r in done["results"] if r["criterion_id"] == "saved-page")
    assert saved["stdout"]["size"] == 3000000 and saved["stdout"]["truncated"] is True
    # Too large to ride inline: the pack is in the Object Store under its content hash.
    ref = done["evidence_object"]
    assert done["evidence_pack"] is None and ref["size"] > INLINE_PACK_LIMIT
    data = asyncio.run(_object(orch.nats.admin_url, ref["name"]))
    assert hashlib.sha256(data).hexdigest() == ref["sha256"] and len(data) == ref["size"]
    pack = decode_pack(data, sid)
    assert len(pack.outputs["saved-page.0.stdout"]) == 1 << 20  # the grader's cap


async def _object(admin_url: str, name: str) -> bytes:
    nc = await nats_client.connect(admin_url)
    try:
        return await get_object(nc.jetstream(), EVIDENCE_BUCKET, name, max_bytes=MAX_PACK_BYTES)
    finally:
        await nc.close()


def test_a_clock_stepped_back_during_the_lab_still_completes_after_it_started(
        orch: Orch) -> None:
    """The node's wall clock stepped back 5 minutes after the lab started (NTP correcting a
    fast clock, a VM restored from a snapshot): grading stamped completed_at before
    started_at, which the scoreboard and every verifier refuse, so the learner's verdict
    was lost for good (crash drill CK). The completion now ends no earlier than it began."""
    sid = running(orch)
    ahead = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    with orch.state.ctx.db.session() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None
        row.details = {**row.details, "started_at": ahead}  # what the step leaves behind
    with orch.client() as client:
        resp = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    assert resp.json()["state"] == "completed"
    done = asyncio.run(collect(orch.nats.admin_url, "forge.scenario.completed", 1))[0]
    assert done["started_at"] == ahead
    assert datetime.fromisoformat(done["completed_at"]) >= datetime.fromisoformat(ahead)
