"""Attack: making spawn_service call a URL of the learner's choosing (server-side request
forgery through node routing).

spawn_service now calls the node holding a lab (terminal, extend, destroy) with the
operator token and a terminal token. If a learner could name that node's URL (a body
field, a query parameter, a header), spawn_service would send those credentials to the
learner's server. The URL comes only from the scenario row, written by the node itself
when it took the spawn: request input naming a node or URL is refused or ignored, and a
listener standing in for the learner's server never sees a connection.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from websockets.sync.client import connect

from forge.lifecycle import states
from forge.quotas.limiter import active_slots
from forge.store.models import Scenario

from ..orchestrator.conftest import MakeOrch, make_orch  # noqa: F401  (fixture)
from ..spawn.conftest import MakeSpawn, SpawnEnv, make_spawn  # noqa: F401  (fixture)
from ..spawn.test_spawn_api import key_for, receipt_for, spawn
from ..support.polling import until

pytestmark = pytest.mark.root


class Trap:
    """A TCP listener counting connections (the learner's server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.hits = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


def row_of(env: SpawnEnv, scenario_id: str) -> tuple[str, str | None]:
    """The lab's state and its reason, from the store."""
    with env.state.ctx.db.read() as sess:
        row = sess.get(Scenario, scenario_id)
        assert row is not None
        return row.state, row.state_reason


def test_learner_input_never_chooses_the_node_url(make_spawn: MakeSpawn,  # noqa: F811
                                                  make_orch: MakeOrch) -> None:  # noqa: F811
    env = make_spawn()
    node = make_orch(FORGE_NODE_ID="n1")
    trap = Trap()
    evil = {"node_url": trap.url, "node_id": "n9"}
    try:
        with env.client() as client:
            receipt = {"x-receipt-token": receipt_for(env, "PRO", tenant="t1", subject="eve")}
            # The spawn body cannot carry a node or a URL.
            resp = client.post("/v1/spawn", json={"track": "netplus", **evil}, headers=receipt)
            assert resp.status_code == 422, resp.text
            resp = spawn(client, receipt)
            assert resp.status_code == 201, resp.text
            sid = resp.json()["scenario_id"]
            headers = key_for(env, "t1", "eve")
            deadline = time.monotonic() + 60
            while True:
                with env.state.ctx.db.read() as sess:
                    row = sess.get(Scenario, sid)
                    assert row is not None
                    found = (row.state, row.node_id, row.node_url)
                if found[0] == states.RUNNING:
                    break
                assert time.monotonic() < deadline, "the lab never ran"
                time.sleep(0.05)
            assert found[1:] == ("n1", node.url)  # written by the node itself

            # Extend: a body or a query naming a URL is refused (422 naming it); headers are
            # ignored (the node's own answer comes back: too early).
            resp = client.post(f"/v1/scenarios/{sid}/extend", headers=headers,
                               json={"minutes": 5, **evil})
            assert resp.status_code == 422, resp.text
            resp = client.post(f"/v1/scenarios/{sid}/extend", params=evil, json={"minutes": 5},
                               headers=headers)
            assert resp.status_code == 422, resp.text
            assert resp.json()["details"][0]["field"] == "node_url", resp.text
            resp = client.post(f"/v1/scenarios/{sid}/extend", json={"minutes": 5},
                               headers={**headers, "x-forge-node-url": trap.url,
                                        "x-forwarded-host": f"127.0.0.1:{trap.port}"})
            assert resp.status_code == 409 and resp.json()["error"] == "too_early", resp.text
            # The node's refusal in the API's terms: no internal service name.
            assert resp.json()["message"] == ("a lab can be extended only in its last 10 "
                                              "minutes"), resp.text
            # ...and its details whole: when the lab ends (extend opens 10 minutes before).
            assert [d["field"] for d in resp.json()["details"]] == ["expires_at"], resp.text
            # Terminal: the query and headers do not move it off the lab's node.
            ws_url = (env.url.replace("http://", "ws://") + f"/v1/scenarios/{sid}/terminal"
                      f"?node_url={trap.url}&node_id=n9")
            with connect(ws_url, additional_headers={**headers, "x-forge-node-url": trap.url},
                         open_timeout=20) as ws:
                ws.send(b"echo real-$((6*7))\n")
                seen = ""
                while "real-42" not in seen:
                    data = ws.recv(timeout=20)
                    seen += data.decode(errors="replace") if isinstance(data, bytes) else data
            # The node gone: its 503 comes whole (when to retry, which node), unprefixed.
            node.stop()
            resp = client.post(f"/v1/scenarios/{sid}/extend", headers=headers)
            assert resp.status_code == 503, resp.text
            assert resp.headers.get("retry-after") == "10", resp.headers
            assert resp.json()["details"] == [{"field": "node_id", "value": "n1"}], resp.text
            assert resp.json()["message"].startswith("lab node n1 is unreachable"), resp.text
            # Destroy, with the same extras, goes to no other server: the node does not
            # answer, so the delete is kept on the lab's row, and said so.
            resp = client.delete(f"/v1/scenarios/{sid}", params=evil, headers=headers)
            assert resp.status_code == 422, resp.text  # a query naming one: refused
            assert active_slots(env.state.ctx.db, "t1") == 1
            resp = client.delete(f"/v1/scenarios/{sid}",
                                 headers={**headers, "x-forge-node-url": trap.url})
            assert resp.status_code == 503 and resp.json()["error"] == "lab_node_unreachable"
            assert "the delete is kept" in resp.json()["message"], resp.text
            assert active_slots(env.state.ctx.db, "t1") == 1
            # The node back (a restart adopts the lab, running): it carries the delete out,
            # without grading, and frees the slot. (It kept both until the lab's deadline,
            # then graded it as expired: a verdict for a lab its learner had deleted.)
            back = make_orch(FORGE_NODE_ID="n1")
            until(lambda: row_of(env, sid)[0] == states.DELETED, "the kept delete done")
            assert row_of(env, sid)[1] == "deleted on request"
            assert sid not in {i.lab_id for i in back.runtime.list()}
            until(lambda: active_slots(env.state.ctx.db, "t1") == 0, "the slot released")
        assert trap.hits == 0
    finally:
        trap.close()
