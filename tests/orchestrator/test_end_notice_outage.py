"""A lab ended while the bus refuses its notice still gets its notice, and so its slot back.

Found with two lab nodes on a 3-server NATS cluster: a learner's `DELETE` as two of the
servers were killed -9 tore the lab down and moved the row to `deleted`, then the
`forge.scenario.deleted` publish found no stream leader. The learner was answered
`502 internal_error` for a delete that had happened, and neither that notice nor
`forge.scenario.ended` was ever published again (the row had moved, so nothing took it up),
so spawn_service never released the scenario's quota slot: it stayed taken until it lapsed,
hours later. The same held for the reaper's expiries and failures. A node that stopped
before the bus came back lost the notice kept for its heartbeat, and with it the slot.

A real orchestrator and a real nats-server, stopped while the delete runs and started again
on its port and store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from forge.bus import NatsServer
from forge.lifecycle import states
from forge.services.orchestrator import end_notices, reaper
from forge.store.models import QuotaSlot, Scenario

from .conftest import OPERATOR, MakeOrch, Orch, collect, running_lab


@pytest.mark.root
@pytest.mark.sqlite_only
@pytest.mark.parametrize("db_url", [pytest.param("sqlite", id="sqlite_only")], indirect=True)
def test_a_delete_while_the_bus_is_away_is_done_and_its_notice_follows(
        orch: Orch, nats: NatsServer) -> None:
    sid = running_lab(orch, timeout=60)
    nats.stop()
    try:
        with orch.client() as client:
            resp = client.delete(f"/v1/scenarios/{sid}", headers=OPERATOR)
        # The lab is gone and the row final: that is what the caller is told.
        assert resp.status_code == 200, resp.text
        assert resp.json()["state"] == states.DELETED
        assert orch.row(sid).state == states.DELETED
        assert sid not in [i.lab_id for i in orch.runtime.list()]
    finally:
        nats.start()
    # Once the bus is back the heartbeat publishes both notices; `ended` frees the slot.
    ended = asyncio.run(collect(nats.admin_url, "forge.scenario.ended", 1, timeout=30))
    assert ended[0]["scenario_id"] == sid and ended[0]["state"] == states.DELETED
    deleted = asyncio.run(collect(nats.admin_url, "forge.scenario.deleted", 1, timeout=30))
    assert deleted[0]["scenario_id"] == sid


@pytest.mark.root
@pytest.mark.sqlite_only
@pytest.mark.parametrize("db_url", [pytest.param("sqlite", id="sqlite_only")], indirect=True)
def test_a_notice_lost_with_a_stopped_node_is_published_by_its_next_start(
        make_orch: MakeOrch, nats: NatsServer) -> None:
    orch = make_orch(FORGE_NODE_ID="n1")
    sid = running_lab(orch, timeout=60)
    now = datetime.now(UTC)
    with orch.state.ctx.db.session() as sess:  # the slot spawn_service took for it
        sess.add(QuotaSlot(scenario_id=sid, tenant_id="acme", subject="alice",
                           acquired_at=now, expires_at=now + timedelta(hours=3)))
    nats.stop()
    try:
        with orch.client() as client:
            assert client.delete(f"/v1/scenarios/{sid}", headers=OPERATOR).status_code == 200
        orch.stop()  # before the bus is back: the notice kept for the heartbeat goes too
    finally:
        nats.start()
    # Ended seconds ago: the restart publishes its own at once, however recent the end
    # (as a kill -9 mid-delete leaves it, the row moved and no notice out): its first look
    # waited for ends a minute old, the next came a minute later, and the learner's slot
    # stayed taken meanwhile.
    assert orch.row(sid).state == states.DELETED
    make_orch(FORGE_NODE_ID="n1")  # the node starts again
    ended = asyncio.run(collect(nats.admin_url, "forge.scenario.ended", 1, timeout=30))
    assert ended[0]["scenario_id"] == sid and ended[0]["state"] == states.DELETED


@pytest.mark.root
@pytest.mark.sqlite_only
@pytest.mark.parametrize("db_url", [pytest.param("sqlite", id="sqlite_only")], indirect=True)
@pytest.mark.parametrize(("action", "final"), [("fail", states.FAILED),
                                               ("destroy", states.DELETED)])
def test_an_operator_action_while_the_bus_is_away_says_it_was_done(
        orch: Orch, nats: NatsServer, action: str, final: str) -> None:
    # `forge scenarios fail ID` against a node cut off from the bus exited 1 with
    # `HTTP 500 internal_error` after failing the scenario: the operator, told it had not
    # worked, would look into a failure that had not happened.
    sid = running_lab(orch, timeout=60)
    nats.stop()
    try:
        with orch.client() as client:
            resp = client.post(f"/v1/admin/scenarios/{sid}/{action}", headers=OPERATOR,
                               json={"reason": "the bus is away"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["state"] == final and orch.row(sid).state == final
    finally:
        nats.start()
    ended = asyncio.run(collect(nats.admin_url, "forge.scenario.ended", 1, timeout=30))
    assert ended[0]["scenario_id"] == sid and ended[0]["state"] == final


def _ended_row(sid: str, node: str, at: datetime) -> list[Any]:
    """An ended scenario of `node` whose quota slot spawn_service never got back."""
    return [Scenario(scenario_id=sid, request_id="r-" + sid, tenant_id="acme",
                     subject="alice", track="netplus", template_id="lab-netplus",
                     template_sha256="0" * 64, plan="PRO", retention_days=30,
                     state=states.FAILED, state_reason="x", created_at=at, updated_at=at,
                     details={}, node_id=node),
            QuotaSlot(scenario_id=sid, tenant_id="acme", subject="alice", acquired_at=at,
                      expires_at=at + timedelta(hours=3))]


@pytest.mark.root
@pytest.mark.sqlite_only
@pytest.mark.parametrize("db_url", [pytest.param("sqlite", id="sqlite_only")], indirect=True)
def test_other_nodes_lost_notices_do_not_crowd_out_this_nodes_own(
        make_orch: MakeOrch, nats: NatsServer) -> None:
    # Each look republishes at most MAX_UNNOTICED notices, and this node publishes only its
    # own: the rows were cut to MAX_UNNOTICED before they were filtered by node, so another
    # node's ended labs with their slots still taken (a node gone for good, whose own
    # restart would have published them) filled every look, and this node's own lost
    # notice was never published: its learner's slot stayed taken until it lapsed.
    first = make_orch(FORGE_NODE_ID="n1")
    first.stop()
    ended_at = datetime.now(UTC) - timedelta(minutes=5)
    with first.state.ctx.db.session() as sess:
        for n in range(end_notices.MAX_UNNOTICED):
            sess.add_all(_ended_row(f"scn-{n:016x}", "n2", ended_at))
    own = "scn-" + "f" * 16
    with first.state.ctx.db.session() as sess:
        sess.add_all(_ended_row(own, "n1", ended_at))
    make_orch(FORGE_NODE_ID="n1")  # the node starts again: it looks at once
    ended = asyncio.run(collect(nats.admin_url, "forge.scenario.ended", 1, timeout=30))
    assert ended[0]["scenario_id"] == own and ended[0]["state"] == states.FAILED


@pytest.mark.root
@pytest.mark.sqlite_only
@pytest.mark.parametrize("db_url", [pytest.param("sqlite", id="sqlite_only")], indirect=True)
def test_a_lost_nodes_lost_notices_are_published_by_the_lease_holder_in_one_line(
        make_orch: MakeOrch, nats: NatsServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # Ended scenarios of a node gone for good whose `ended` notices were lost with it (the
    # bus refused them, then the node died): only that node's own restart published them
    # again, so their learners' quota slots stayed taken until they lapsed, hours later.
    # The lease holder publishes them. And a look logs one line however many it publishes
    # (one per scenario was up to 200 lines a minute), each counted in a metric.
    #
    # A first notice the bus stored that freed nothing (spawn_service dead-lettered it):
    # the republish had its message id, so the bus dropped it as a duplicate for its whole
    # ten-minute window while each look counted and logged it as published. A republish is
    # a new message; later looks' duplicates are said as such, and counted nowhere.
    monkeypatch.setattr(reaper, "UNNOTICED_EVERY_S", 0.2)
    caplog.set_level(logging.INFO, logger="forge.orchestrator.reaper")
    orch = make_orch(FORGE_NODE_ID="n1")
    ended_at = datetime.now(UTC) - timedelta(minutes=7)
    gone = [f"scn-{n:016x}" for n in range(3)]
    for sid in gone:  # the first notices, stored
        orch.publish("forge.scenario.ended", {"scenario_id": sid, "state": states.FAILED},
                     msg_id=f"{sid}-ended-{states.FAILED}")
    with orch.state.ctx.db.session() as sess:  # n9 never heartbeats again (no record)
        for sid in gone:
            sess.add_all(_ended_row(sid, "n9", ended_at))
    ended = asyncio.run(collect(nats.admin_url, "forge.scenario.ended", 6, timeout=30))
    assert sorted(e["scenario_id"] for e in ended) == sorted(gone * 2)

    def lines() -> list[str]:
        return [r.getMessage() for r in list(caplog.records)
                if r.name == "forge.orchestrator.reaper" and "ended notice" in r.getMessage()]
    deadline = time.monotonic() + 30
    while len(lines()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    first, *later = lines()
    assert first.startswith("3 ended scenario(s)") and "published again" in first
    assert first.endswith("lost nodes among them: n9"), first
    assert later and all(line.startswith("3 ended scenario(s)") and "already on the bus" in line
                         and "published again" not in line for line in later), later
    counted = orch.state.ctx.metrics.registry.get_sample_value(
        "forge_ended_notices_republished_total")
    assert counted == 3
