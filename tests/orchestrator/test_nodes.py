"""Many lab nodes behind one spawn_service: placement by free capacity through JetStream,
routing to the node holding a lab, drain, and a lost node's labs failed exactly once.

Three real orchestrator nodes (own FORGE_NODE_ID, URL and runtime prefix each; real
LocalRuntime labs), one real spawn_service, a real nats-server with Forge's permissions, and
the store on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from forge.cli import commands
from forge.lifecycle import states
from forge.quotas.limiter import active_slots
from forge.services.spawn.terminal import NODE_GONE
from forge.store.models import Scenario, ScenarioTransition

from ..services.conftest import SECRETS, prod_environ
from ..spawn.conftest import MakeSpawn, SpawnEnv, make_spawn  # noqa: F401  (fixture)
from ..spawn.test_spawn_api import key_for, receipt_for, spawn
from ..support.polling import until
from .conftest import MakeOrch

pytestmark = pytest.mark.root
# Heartbeats every 0.5 s (the fixture's setting); nodes of one test share a process and its
# GIL, so a beat may be late by seconds on a loaded machine without the node being lost.
GRACE = {"FORGE_NODE_GRACE_S": "5"}


def row(env: SpawnEnv, scenario_id: str) -> Scenario:
    with env.state.ctx.db.read() as sess:
        found = sess.get(Scenario, scenario_id)
        assert found is not None
        sess.expunge(found)
        return found


def start_lab(env: SpawnEnv, client: httpx.Client, learner: str) -> tuple[str, dict[str, str]]:
    """A learner (own tenant, so no quota interferes) buys and starts a lab; returns it and
    the learner's API key headers for what follows."""
    tenant = f"t-{learner}"
    resp = spawn(client, {"x-receipt-token": receipt_for(env, "PRO", tenant=tenant,
                                                         subject=learner)})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["scenario_id"]), key_for(env, tenant, learner)


def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`forge nodes ARGS` through the `forge` app as its entry point registers it."""
    root = typer.Typer()
    commands.register(root)
    result = CliRunner().invoke(root, ["nodes", *args], env=env)
    return result.exit_code, result.output


def test_nodes_place_route_drain_and_fail_over(
        make_spawn: MakeSpawn, make_orch: MakeOrch, tmp_path: Path,  # noqa: F811
        db_url: str) -> None:
    env = make_spawn()
    nodes = {"n1": make_orch(FORGE_NODE_ID="n1", FORGE_NODE_CAPACITY_LABS="1", **GRACE),
             "n2": make_orch(FORGE_NODE_ID="n2", FORGE_NODE_CAPACITY_LABS="2", **GRACE),
             "n3": make_orch(FORGE_NODE_ID="n3", FORGE_NODE_CAPACITY_LABS="2", **GRACE)}
    cli_env = prod_environ(tmp_path / "storage", **env.nats.client_env(),
                           FORGE_DB_URL=db_url, ORCHESTRATOR_URL=nodes["n3"].url)
    labs: dict[str, tuple[str, dict[str, str]]] = {}
    with env.client() as client:
        # Placement: five labs on capacities 1 + 2 + 2, so every node gets some and no node
        # more than it can hold; each row names its node and that node's own URL.
        for i in range(5):
            sid, headers = start_lab(env, client, f"learner-{i}")
            labs[sid] = ("", headers)
        until(lambda: all(row(env, s).state == states.RUNNING for s in labs), "five labs running")
        held: dict[str, list[str]] = {name: [] for name in nodes}
        for sid in labs:
            found = row(env, sid)
            assert found.node_id in nodes and found.node_url == nodes[found.node_id].url
            held[found.node_id].append(sid)
            labs[sid] = (found.node_id, labs[sid][1])
            assert sid in {i.lab_id for i in nodes[found.node_id].runtime.list()}
        assert {name: len(sids) for name, sids in held.items()} == {"n1": 1, "n2": 2, "n3": 2}
        # The full node (capacity 1) never fetched a second spawn: it gates its pulls.
        n1_spawn = nodes["n1"].state.consumers[0]
        assert n1_spawn.status()["delivered"] == 1 and n1_spawn.status()["retried"] == 0

        # Routing: submit reaches the holding node (graded there, on its own subject).
        graded = held["n2"][0]
        resp = client.post(f"/v1/scenarios/{graded}/submit", headers=labs[graded][1])
        assert resp.status_code == 202, resp.text
        until(lambda: row(env, graded).state == states.COMPLETED, "the submitted lab graded")
        n2_submit = nodes["n2"].state.consumers[1]
        assert n2_submit.durable == "orchestrator-submit-n2"
        until(lambda: n2_submit.status()["acked"] == 1, "n2's own submit consumer acked it")
        # Extend reaches the holding node: its own answer (too early), not "other node".
        on_n3 = held["n3"][0]
        resp = client.post(f"/v1/scenarios/{on_n3}/extend", headers=labs[on_n3][1],
                           json={"minutes": 5})
        assert resp.status_code == 409 and resp.json()["error"] == "too_early", resp.text
        # The terminal is relayed to the holding node's lab.
        ws_url = env.url.replace("http://", "ws://") + f"/v1/scenarios/{on_n3}/terminal"
        with connect(ws_url, additional_headers=labs[on_n3][1], open_timeout=20) as ws:
            ws.send(b"echo node-$((6*7))\n")
            seen = ""
            while "node-42" not in seen:
                data = ws.recv(timeout=20)
                seen += data.decode(errors="replace") if isinstance(data, bytes) else data

        # Operator actions sent to another node are refused there, naming the holder: the
        # lab is neither ended unseen (destroy) nor graded where it is not (regrade).
        operator = {"Authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}
        for action in ("destroy", "regrade", "fail"):
            resp = httpx.post(f"{nodes['n1'].url}/v1/admin/scenarios/{on_n3}/{action}",
                              headers=operator, json={"reason": "wrong node"}, timeout=30)
            assert resp.status_code == 409, resp.text
            assert resp.json()["error"] == "lab_on_other_node" and "n3" in resp.json()["message"]
        assert row(env, on_n3).state == states.RUNNING
        assert on_n3 in {i.lab_id for i in nodes["n3"].runtime.list()}

        # Drain n2 through the CLI: it has room (1 of 2) yet takes no new lab.
        code, out = cli(cli_env, "drain", "n2")
        assert code == 0, out
        until(lambda: nodes["n2"].state.node is not None
              and nodes["n2"].state.node.draining, "n2 drained")
        code, out = cli(cli_env, "list")
        assert code == 0, out
        line = next(x for x in out.splitlines() if x.startswith("n2"))
        assert "1/2" in line and " true " in line and line.endswith("alive"), out
        code, out = cli(cli_env, "list", "--json")  # the orchestrator's answer, for scripts
        assert code == 0, out
        listed = {item["node_id"]: item for item in json.loads(out)["items"]}
        assert listed["n2"]["draining"] is True and listed["n2"]["state"] == "alive", out
        queued, _ = start_lab(env, client, "learner-q")
        # Destroy reaches the holding node (n3), which frees a slot there: the queued spawn
        # goes to n3, although drained n2 had room all along.
        gone = held["n3"][1]
        resp = client.delete(f"/v1/scenarios/{gone}", headers=labs[gone][1])
        assert resp.status_code == 200 and resp.json()["state"] == states.DELETED, resp.text
        assert gone not in {i.lab_id for i in nodes["n3"].runtime.list()}
        until(lambda: row(env, queued).state == states.RUNNING, "the queued lab running")
        assert row(env, queued).node_id == "n3"
        # The drained node's existing lab still completes.
        kept = held["n2"][1]
        resp = client.post(f"/v1/scenarios/{kept}/submit", headers=labs[kept][1])
        assert resp.status_code == 202
        until(lambda: row(env, kept).state == "completed", "the drained node's lab graded")
        code, out = cli(cli_env, "undrain", "n2")
        assert code == 0, out
        until(lambda: nodes["n2"].state.node is not None
              and not nodes["n2"].state.node.draining, "n2 undrained")
        code, out = cli(cli_env, "drain", "no-such-node")
        assert code == 1 and "unknown_node" in out, out
        # The runbook's "restart NATS subscriber", asked of one node (n3, ORCHESTRATOR_URL),
        # restarts every live node's subscribers: each node consumes its own.
        root = typer.Typer()
        commands.register(root)
        result = CliRunner().invoke(root, ["nats", "restart-subscriber", "--service",
                                           "orchestrator"], env=cli_env)
        assert result.exit_code == 0, result.output
        assert "orchestrator n1: orchestrator-submit-n1 " in result.output, result.output
        assert "orchestrator n2: orchestrator-submit-n2 " in result.output, result.output
        assert "orchestrator: orchestrator-submit-n3 " in result.output, result.output
        assert "orchestrator n3:" not in result.output, result.output  # asked once, not twice
        for name, node in nodes.items():
            assert all(c.status()["restarts"] == 1 for c in node.state.consumers), name

        # Loss: n1 stops (no more heartbeats). After the grace period its lab fails with
        # the reason, by exactly one of the two survivors (one lease), and its slot is freed.
        lost = held["n1"][0]
        tenant = f"t-{row(env, lost).subject}"
        assert active_slots(env.state.ctx.db, tenant) == 1
        nodes["n1"].stop()
        # Its terminal says so in the learner's words, which the page shows as it retries.
        lost_ws = env.url.replace("http://", "ws://") + f"/v1/scenarios/{lost}/terminal"
        with connect(lost_ws, additional_headers=labs[lost][1], open_timeout=20) as ws, \
                pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4503, NODE_GONE)
        # A call for a lab on a node that is gone: a clear error naming it, not a hang.
        resp = client.post(f"/v1/scenarios/{lost}/extend", headers=labs[lost][1],
                           json={"minutes": 5})
        assert resp.status_code == 503 and resp.json()["error"] == "lab_node_unreachable"
        assert "lab node n1 is unreachable" in resp.json()["message"], resp.text
        until(lambda: row(env, lost).state == states.FAILED, "n1's lab failed", timeout_s=60)
        assert row(env, lost).state_reason == "lab node n1 lost"
        leaders = [name for name in ("n2", "n3")
                   if (node := nodes[name].state.node) is not None and node.leader]
        assert len(leaders) == 1, leaders
        with env.state.ctx.db.read() as sess:
            failed_moves = sess.scalar(select(func.count()).select_from(ScenarioTransition)
                                       .where(ScenarioTransition.scenario_id == lost,
                                              ScenarioTransition.to_state == states.FAILED))
        assert failed_moves == 1
        until(lambda: active_slots(env.state.ctx.db, tenant) == 0, "n1's slot released")
        resp = client.get(f"/v1/scenarios/{lost}", headers=labs[lost][1])
        assert resp.json()["state"] == states.FAILED
        # Deleting it now says it has ended, as its node would: not `503
        # lab_node_unreachable` ("the lab fails by itself") from the node that is gone.
        resp = client.delete(f"/v1/scenarios/{lost}", headers=labs[lost][1])
        assert resp.status_code == 200 and resp.json() == {
            "scenario_id": lost, "state": states.FAILED}, resp.text
        code, out = cli(cli_env, "list")
        assert code == 0, out
        # Its last record said it held that lab; the list says what it holds now (none),
        # not the record's stale count.
        listed = next(x for x in out.splitlines() if x.startswith("n1"))
        assert listed.endswith("lost") and " 0/" in listed, out
