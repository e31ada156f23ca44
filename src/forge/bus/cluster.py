"""A NATS JetStream cluster of N `nats-server` processes on loopback, for tests and rehearsals.

Each node is a `NatsServer` (its own client, monitoring and route ports, its own JetStream
store) with a `cluster { name, listen, routes }` block naming every other node, and the same
per-service users, so a client given `client_env()["NATS_URL"]` (every node, comma-separated)
can fail over to any survivor. Routes authenticate with a password of their own (generated
per cluster): a process on the same host cannot join the cluster by dialling a route port.

`start()` returns once every node is up, the JetStream meta group has a leader and counts all
N peers, and the Forge streams exist with `replicas` copies. `kill(i)` (SIGKILL) and
`restart(i)` drive outage drills; `stream_leader()` says which node leads a stream.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from forge.bus.client_env import admin_urls, service_env
from forge.bus.errors import NatsServerError
from forge.bus.permissions import ADMIN, BusAuth, BusCredentials
from forge.bus.ports import LOOPBACK, free_port
from forge.bus.replication import VALID_REPLICAS, forge_streams
from forge.bus.server import NatsServer
from forge.bus.tls import BusTls, trusting

_ROUTE_USER = "forge-route"
_POLL_S = 0.05


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports."""
    ports: set[int] = set()
    for _ in range(count * 20):
        ports.add(free_port())
        if len(ports) == count:
            return sorted(ports)
    raise NatsServerError(f"could not find {count} free ports on {LOOPBACK}")


class NatsCluster:
    """`size` clustered nats-servers with JetStream on 127.0.0.1 (1, 3 or 5 of them).

    `root` holds one directory per node (a temporary directory removed by `close()` when
    not given); `replicas` (default: 3 for 3+ nodes, else 1) is the copies each Forge
    stream gets; `auth` defaults to fresh random passwords for every service identity
    (a supervisor would pass `bus_auth(settings)`); `exec_prefix` goes before each node's argv
    as for `NatsServer` (a supervisor's parent-death guard).
    """

    def __init__(
        self,
        size: int = 3,
        root: str | Path | None = None,
        *,
        replicas: int | None = None,
        auth: BusAuth | None = None,
        name: str = "forge",
        startup_timeout: float = 30.0,
        binary: str | Path | None = None,
        exec_prefix: Sequence[str] = (),
        tls: BusTls | None = None,
        base_port: int | None = None,
    ) -> None:
        if size not in VALID_REPLICAS:
            raise ValueError(f"size: a cluster has 1, 3 or 5 nodes, got {size}")
        chosen = replicas if replicas is not None else min(size, 3)
        if chosen not in VALID_REPLICAS or chosen > size:
            raise ValueError(f"replicas: must be 1, 3 or 5 and at most size ({size}), "
                             f"got {chosen}")
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError("name: only letters, digits, '-' and '_' are allowed")
        self.size = size
        self.replicas = chosen
        self.name = name
        self._owns_root = root is None
        self._root = Path(root) if root is not None else None
        self._auth = (auth or BusAuth.generate()).with_admin()
        self._route_password = secrets.token_urlsafe(24)
        self._startup_timeout = startup_timeout
        self._binary = binary
        self._exec_prefix = tuple(exec_prefix)
        self._tls = tls
        self._base_port = base_port
        self.nodes: list[NatsServer] = []
        self._route_ports: list[int] = []

    # ----------------------------------------------------------------- addresses
    def node_name(self, index: int) -> str:
        """Server name of node `index` (what `stream_leader` reports)."""
        return f"{self.name}-n{index}"

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, in node order."""
        return [node.url for node in self._started()]

    @property
    def url(self) -> str:
        """`NATS_URL` for the whole cluster: every node, comma-separated."""
        return ",".join(self.urls)

    @property
    def auth(self) -> BusAuth:
        """The users every node accepts."""
        return self._auth

    def credentials(self, identity: str) -> BusCredentials:
        """Current credentials of one identity (`spawn`, `orchestrator`, `scoreboard`, `admin`),
        trusting the cluster's CA when it has TLS."""
        return trusting(self._auth.credentials(identity), self._tls)

    @property
    def admin_url(self) -> str:
        """Every node's URL carrying the admin user (tests and provisioning only); none for
        a cluster with TLS (see `NatsServer.admin_url`)."""
        if self._tls is not None:
            raise NatsServerError("a NATS cluster with TLS has no admin URL: connect with "
                                  "credentials(ADMIN), which carry its CA")
        return admin_urls(self._auth, [node.port for node in self._started()])

    def route_port(self, index: int) -> int:
        """The cluster (route) port of node `index`; only nodes with the route password join."""
        self._started()
        return self._route_ports[index]

    def routes(self, index: int) -> list[str]:
        """Server names node `index` has a route to now (from its `/routez`)."""
        _, routez = self._monitor(index, "/routez")
        return sorted({str(r.get("remote_name", r.get("remote_id", "?")))
                       for r in routez.get("routes") or []})

    def client_env(self) -> dict[str, str]:
        """`NATS_URL` (all nodes), `FORGE_NATS_REPLICAS`, each service's NATS password and,
        with TLS, `FORGE_NATS_CA`."""
        return {**service_env(self._auth, self.url, self._tls),
                "FORGE_NATS_REPLICAS": str(self.replicas)}

    def _started(self) -> list[NatsServer]:
        if not self.nodes:
            raise NatsServerError("the NATS cluster has not been started yet")
        return self.nodes

    # ----------------------------------------------------------------- lifecycle
    def _cluster_block(self, index: int, route_ports: list[int]) -> str:
        user, password = _ROUTE_USER, self._route_password
        routes = [f"nats-route://{user}:{password}@{LOOPBACK}:{port}"
                  for i, port in enumerate(route_ports) if i != index]
        block = {
            "name": self.name,
            "listen": f"{LOOPBACK}:{route_ports[index]}",
            "authorization": {"user": user, "password": password, "timeout": 2},
            "routes": routes,
            "connect_retries": 120,
        }
        if self._tls is not None:  # mutual TLS: a squatter on a route port gets no password
            block["tls"] = self._tls.route_tls()
        return "cluster " + json.dumps(block, indent=2) + "\n"

    def start(self) -> NatsCluster:
        """Start every node, wait for the meta leader and all peers, create the streams."""
        if self.nodes and all(node.running for node in self.nodes):
            return self
        if not self.nodes:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="forge-nats-cluster-"))
            ports = (list(range(self._base_port, self._base_port + 3 * self.size))
                     if self._base_port else _free_ports(3 * self.size))
            clients, monitors, routes = (ports[i::3] for i in range(3))
            self._route_ports = routes
            for i in range(self.size):
                self.nodes.append(NatsServer(
                    self._root / f"n{i}", port=clients[i], monitor_port=monitors[i],
                    binary=self._binary, server_name=self.node_name(i), auth=self._auth,
                    startup_timeout=self._startup_timeout, provision=False,
                    exec_prefix=self._exec_prefix, tls=self._tls,
                    extra_config=self._cluster_block(i, routes)))
        try:
            for node in self.nodes:
                node.start()
            self.wait_healthy()
            self._provision()
        except BaseException:
            self.stop()
            raise
        return self

    def _provision(self) -> None:
        from forge.bus.provision import provision_streams

        deadline = time.monotonic() + self._startup_timeout
        while True:  # a freshly elected meta leader may still refuse the first request
            try:
                provision_streams(self.url, self.credentials(ADMIN),
                                  forge_streams(self.replicas))
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise NatsServerError(f"cannot create the Forge streams: {exc}") from exc
                time.sleep(0.2)

    def _monitor(self, index: int, path: str) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of a monitoring endpoint of node `index`; (0, {}) if down."""
        node = self.nodes[index]
        if not node.running:
            return 0, {}
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(node.monitor_url + path, timeout=2.0) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except (urllib.error.URLError, OSError, ValueError):
            return 0, {}

    def _cluster_ready(self, running: list[int]) -> bool:
        """All running nodes agree on a meta leader that sees every running peer current
        (followers do not track each other, so only the leader's view counts), and each
        node's `/healthz` (JetStream current) answers 200."""
        leaders: set[str] = set()
        metas: dict[str, dict[str, Any]] = {}
        for i in running:
            status, jsz = self._monitor(i, "/jsz")
            meta = jsz.get("meta_cluster") or {}
            if status != 200 or not meta.get("leader") or meta.get("cluster_size") != self.size:
                return False
            leaders.add(str(meta["leader"]))
            metas[self.node_name(i)] = meta
        if len(leaders) != 1 or (leader := leaders.pop()) not in metas:
            return False
        current = {str(r.get("name")) for r in metas[leader].get("replicas") or []
                   if r.get("current") and not r.get("offline")}
        if not {self.node_name(i) for i in running} <= current | {leader}:
            return False
        return all(self._monitor(i, "/healthz")[0] == 200 for i in running)

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until the running nodes have one meta leader that sees all of them current."""
        limit = self._startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        running = [i for i, node in enumerate(self.nodes) if node.running]
        while not self._cluster_ready(running):
            if time.monotonic() > deadline:
                states = {self.node_name(i): self._monitor(i, "/jsz")[1].get("meta_cluster")
                          for i in running}
                raise NatsServerError(
                    f"NATS cluster not healthy within {limit:.0f}s: meta {states}")
            for i in running:
                if not self.nodes[i].running:
                    raise NatsServerError(f"node {self.node_name(i)} exited: "
                                          f"code {self.nodes[i].returncode}")
            time.sleep(_POLL_S)

    def kill(self, index: int) -> None:
        """SIGKILL node `index` (a crash); its store is kept for `restart`."""
        self._started()[index].kill()

    def restart(self, index: int) -> None:
        """Start node `index` again on its ports and store; wait until the cluster is whole."""
        self._started()[index].start()
        self.wait_healthy()

    def running(self, index: int) -> bool:
        """Whether node `index` is alive."""
        return self._started()[index].running

    # ------------------------------------------------------------------ leaders
    def stream_leader(self, stream: str = "FORGE") -> int | None:
        """Index of the node leading `stream`, as a live node reports it; None if none does."""
        names = {self.node_name(i): i for i in range(len(self.nodes))}
        for i in range(len(self.nodes)):
            _, jsz = self._monitor(i, "/jsz?accounts=true&streams=true")
            for account in jsz.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    leader = (detail.get("cluster") or {}).get("leader")
                    if detail.get("name") == stream and leader in names \
                            and self.nodes[names[leader]].running:
                        return names[leader]
        return None

    def wait_stream_leader(self, stream: str = "FORGE", *, not_on: int | None = None,
                           timeout: float = 30.0) -> int:
        """Wait until a live node (other than `not_on`) leads `stream`; its index."""
        deadline = time.monotonic() + timeout
        while True:
            leader = self.stream_leader(stream)
            if leader is not None and leader != not_on:
                return leader
            if time.monotonic() > deadline:
                raise NatsServerError(f"no new leader for stream {stream} within {timeout:.0f}s")
            time.sleep(_POLL_S)

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        """Stop every node (stores kept)."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop(timeout=5.0)

    def close(self) -> None:
        """Stop every node and remove the root directory if this object created it."""
        self.stop()
        for node in self.nodes:
            node.close()
        if self._owns_root and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        alive = sum(node.running for node in self.nodes)
        return f"NatsCluster(size={self.size}, replicas={self.replicas}, running={alive})"
