"""The NATS `forge up` embeds: one nats-server, or a JetStream cluster of 3 or 5 on loopback.

Its servers speak TLS only, with a certificate `start` makes (`forge.bus.tls`), so a local
user who takes a dead server's port before its restart gets no password. Either way each
server is supervised like a service: a server that dies is reported and
started again on its own ports and store after a back-off. The single server keeps its store
in `<root>/nats`; cluster node i in `<root>/nats-cluster/n<i>`; both are kept on exit (the
JetStream streams survive a restart of `forge up`, as they always have).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from forge.bus import NatsServer
from forge.bus.cluster import NatsCluster
from forge.bus.errors import NatsServerError
from forge.bus.permissions import BusAuth
from forge.bus.ports import LOOPBACK, free_port
from forge.bus.tls import TLS_DIR, BusTls
from forge.services.common.listener import PortUnavailable, bind_listener
from forge.stack.deathsig import exec_prefix

# A healthy server's monitor endpoint is asked only this often (its process is watched on
# every poll), over one pooled client: idle CPU of `forge up` and of nats-server.
HEALTH_RECHECK_S = 5.0


class NatsStartError(Exception):
    """The embedded NATS did not start; the message says why."""


@dataclass
class Member:
    """One supervised nats-server and its restart bookkeeping."""

    name: str
    server: NatsServer
    restarts: int = 0
    failures: int = 0
    next_start: float = 0.0
    ready: bool = True
    started: bool = True
    checked_at: float | None = None  # when its health endpoint was last asked


@dataclass
class EmbeddedNats:
    """`size` nats-servers under `root` accepting exactly `auth`'s users."""

    root: Path
    auth: BusAuth | None
    size: int = 1
    port: int = 0
    members: list[Member] = field(default_factory=list)
    cluster: NatsCluster | None = None
    tls: BusTls | None = None
    _http: httpx.Client | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the server(s) with new TLS files (``forge.bus.tls``: the CA's key is never
        kept, so each start makes its own); for a cluster, wait for a JetStream quorum and
        the streams."""
        try:
            self.tls = BusTls.generate(self.root / TLS_DIR)
        except OSError as exc:
            raise NatsStartError(f"cannot write the NATS TLS files under "
                                 f"{self.root / TLS_DIR}: {exc.strerror or exc}") from None
        if self.size == 1:
            port = self.port or free_port()
            try:  # nats-server binds by itself: check the port is free before anything runs
                bind_listener(LOOPBACK, port).close()
            except PortUnavailable as exc:
                raise NatsStartError(str(exc)) from None
            server = NatsServer(store_dir=self.root / "nats", port=port, auth=self.auth,
                                exec_prefix=exec_prefix(), tls=self.tls)
            try:
                server.start()
            except NatsServerError as exc:
                raise NatsStartError(str(exc)) from None
            self.port = port
            self.members = [Member("nats", server)]
            return
        self.cluster = NatsCluster(self.size, self.root / "nats-cluster", auth=self.auth,
                                   exec_prefix=exec_prefix(), tls=self.tls,
                                   base_port=self.port or None)
        try:
            self.cluster.start()
        except (NatsServerError, ValueError) as exc:
            raise NatsStartError(str(exc)) from None
        self.members = [Member(f"nats-{i + 1}", node) for i, node in
                        enumerate(self.cluster.nodes)]

    @property
    def url(self) -> str:
        """NATS_URL for the services: the server, or every cluster node comma-separated."""
        if self.cluster is not None:
            return self.cluster.url
        return self.members[0].server.url

    def client_env(self) -> dict[str, str]:
        """NATS_URL, FORGE_NATS_CA and, for a cluster, FORGE_NATS_REPLICAS (each service
        keeps its own password, which every server accepts)."""
        env = {"NATS_URL": self.url}
        if self.tls is not None:
            env["FORGE_NATS_CA"] = str(self.tls.ca_file)
        if self.cluster is not None:
            env["FORGE_NATS_REPLICAS"] = str(self.cluster.replicas)
        return env

    def poll(self, now: float, backoff: Callable[[int], float],
             report: Callable[[str], None]) -> None:
        """Report and restart (after the back-off) every server that died; refresh ready."""
        for member in self.members:
            server = member.server
            if member.started and not server.running:
                code = server.returncode
                server.kill()  # forget the dead process
                member.started = False
                member.ready = False
                member.restarts += 1
                member.failures += 1
                delay = backoff(member.failures)
                member.next_start = now + delay
                report(f"{self._label(member)} exited with code {code}; restarting in "
                       f"{delay:.0f}s (restart #{member.restarts}); log: {server.log_path}")
            if not member.started and now >= member.next_start:
                try:
                    server.start()
                except NatsServerError as exc:
                    member.failures += 1
                    delay = backoff(member.failures)
                    member.next_start = now + delay
                    report(f"{self._label(member)} failed to start: {exc}; retrying in "
                           f"{delay:.0f}s")
                    continue
                member.started = True
                report(f"{self._label(member)} restarted on port {server.port} "
                       f"(restart #{member.restarts})")
            if not server.running:
                member.ready = False
            elif not (member.ready and member.checked_at is not None
                      and now - member.checked_at < HEALTH_RECHECK_S):
                if self._http is None:
                    self._http = httpx.Client(trust_env=False, timeout=2)
                member.checked_at = now
                member.ready = _healthy(self._http, server)

    def _label(self, member: Member) -> str:
        return "nats-server" if self.cluster is None else f"nats-server {member.name}"

    def stop(self) -> None:
        """Stop every server; stores are kept."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.cluster is not None:
            self.cluster.stop()
        else:
            for member in self.members:
                member.server.stop()


def _healthy(client: httpx.Client, server: NatsServer) -> bool:
    try:
        resp = client.get(f"{server.monitor_url}/healthz?js-enabled-only=true")
    except httpx.HTTPError:
        return False
    return resp.status_code == 200
