"""Attack: a process on a cluster host starts its own nats-server and dials the Forge
cluster's route ports to join it (a route peer sees every subject and can take part in
JetStream's raft groups: read the lab answers, forge verdict events). The routes require
the cluster's own password, so the rogue server is refused and never becomes a peer."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from forge.bus.cluster import NatsCluster
from forge.bus.ports import free_port
from forge.bus.server import NatsServer

from ..drills.conftest import wait_for


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with NatsCluster(3) as made:
        yield made


def test_rogue_server_cannot_join_the_cluster_through_its_routes(cluster: NatsCluster) -> None:
    before = [cluster.routes(i) for i in range(cluster.size)]
    assert before == [sorted({cluster.node_name(j) for j in range(3)} - {cluster.node_name(i)})
                      for i in range(3)]
    routes = [f"nats-route://127.0.0.1:{cluster.route_port(0)}",  # no password
              f"nats-route://forge-route:guessed@127.0.0.1:{cluster.route_port(1)}"]
    block = {"name": cluster.name, "listen": f"127.0.0.1:{free_port()}", "routes": routes}
    rogue = NatsServer(server_name="rogue", provision=False,
                       extra_config="cluster " + json.dumps(block) + "\n")
    rogue.start()
    try:
        for i in (0, 1):
            wait_for(lambda i=i: "Router connection closed: Authentication Failure"
                     in cluster.nodes[i].log_path.read_text(), 30,
                     f"{cluster.node_name(i)} refusing the rogue route")
        assert [cluster.routes(i) for i in range(cluster.size)] == before
        assert "rogue" not in json.dumps([cluster.routes(i) for i in range(cluster.size)])
        # The rogue logs the refusal when it reads the node's -ERR, a moment after the node
        # logs closing the route.
        wait_for(lambda: "Authorization Violation" in rogue.log_path.read_text(), 30,
                 "the rogue told it is refused")
        # The rogue's own view: no route to any Forge node.
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                rogue.monitor_url + "/routez", timeout=5) as resp:
            assert json.loads(resp.read())["num_routes"] == 0
    finally:
        rogue.close()
