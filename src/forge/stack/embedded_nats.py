"""The NATS `forge up` embeds: one nats-server, or a JetStream cluster of 3 or 5 on loopback.

Its servers speak TLS only, with a certificate `start` makes (`forge.bus.tls`), so a local
user who takes a dead server's port before its restart gets no password. Either way each
server is supervised like a service: a server that dies is reported and
started again on its own ports and store after a back-off. The single server keeps its store
in `<root>/nats`; cluster node i in `<root>/nats-cluster/n<i>`; both are kept on exit (the
JetStream streams survive a restart of `forge up`, as they always have). Their monitoring
ports, which `forge up` reads and which have no password, are closed to every other local
user while they run (`forge.stack.monitor_guard`).

A server whose JetStream stopped working while its process lives on is restarted too: a
write that failed for lack of room (ENOSPC) leaves nats-server's stream with a sticky write
error (every later publish to it goes unconfirmed, even once there is room again; the
server's full /healthz names it), and a server that ran out of resources may disable
JetStream altogether. Once that has lasted JS_TROUBLE_S over JS_TROUBLE_CHECKS checks in a
row with room on the store's disk (checks while it is full do not count: a restart then
would fail the same way), the server is restarted on its own ports and store, as after a
crash.
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
from forge.disk_room import free_bytes
from forge.services.common.listener import PortUnavailable, bind_listener
from forge.stack.deathsig import exec_prefix
from forge.stack.monitor_guard import GuardUnavailable, MonitorGuard

# A healthy server's monitor endpoint is asked only this often (its process is watched on
# every poll), over one pooled client: idle CPU of `forge up` and of nats-server.
HEALTH_RECHECK_S = 5.0
# JetStream unusable (a stream's write error, JetStream disabled) for this long, over this
# many checks in a row, with room on the store's disk: the server is restarted. A blip (one
# failed check, a slow answer) never is.
JS_TROUBLE_S = 15.0
JS_TROUBLE_CHECKS = 3
# Free space the store's disk needs before such a restart (below it: wait, and say so).
ROOM_BYTES = 16 * 1024 * 1024


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
    trouble: str | None = None  # why its JetStream is unusable (None: usable)
    trouble_since: float | None = None  # first of an unbroken run of such checks
    trouble_checks: int = 0
    waiting_for_room: bool = False  # reported that a restart waits for disk space


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
    js_trouble_s: float = JS_TROUBLE_S
    room_bytes: int = ROOM_BYTES
    monitor_open: str | None = None  # why the monitoring ports are open to every local user
    _guard: MonitorGuard | None = field(default=None, repr=False)
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
            self._guard_monitoring()
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
        self._guard_monitoring()

    def _guard_monitoring(self) -> None:
        """Close the servers' monitoring ports to other local users (`monitor_guard`), or
        note in `monitor_open` why they stay open."""
        ports = [member.server.monitor_port for member in self.members]
        try:
            self._guard = MonitorGuard.install(self.root, ports)
        except GuardUnavailable as exc:
            self.monitor_open = str(exc)

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
                member.ready, trouble = _health(self._http, server)
                self._watch_jetstream(member, trouble, now, backoff, report)

    def _watch_jetstream(self, member: Member, trouble: str | None, now: float,
                         backoff: Callable[[int], float],
                         report: Callable[[str], None]) -> None:
        """Restart a live server whose JetStream has been unusable for js_trouble_s over
        JS_TROUBLE_CHECKS checks in a row with room on its store's disk (the checks made
        while the disk is full do not count: a restart then would fail the same way)."""
        if trouble is None:
            if member.trouble is not None:
                report(f"{self._label(member)}: JetStream usable again")
            member.trouble = member.trouble_since = None
            member.trouble_checks = 0
            member.waiting_for_room = False
            return
        server = member.server
        if member.trouble is None:
            report(f"{self._label(member)}: JetStream not usable ({trouble}); restarting it "
                   f"if this lasts {self.js_trouble_s:.0f}s with room on its disk")
        member.trouble = trouble
        free = free_bytes(server.store_dir)
        if free is not None and free < self.room_bytes:
            member.trouble_since = None
            member.trouble_checks = 0
            if not member.waiting_for_room:
                member.waiting_for_room = True
                report(f"{self._label(member)}: JetStream not usable; its store "
                       f"{server.store_dir} has {free // 1024} KiB free: waiting for room "
                       f"({self.room_bytes // 1024} KiB) before restarting it")
            return
        if member.waiting_for_room:
            member.waiting_for_room = False
            report(f"{self._label(member)}: its store has room again; restarting it if "
                   f"JetStream stays unusable for {self.js_trouble_s:.0f}s")
        member.trouble_checks += 1
        if member.trouble_since is None:
            member.trouble_since = now
        # A restart that did not cure it waits longer each time (the crash back-off).
        wait = self.js_trouble_s + (backoff(member.failures) if member.failures else 0.0)
        if member.trouble_checks < JS_TROUBLE_CHECKS or now - member.trouble_since < wait:
            return
        member.restarts += 1
        member.failures += 1
        report(f"{self._label(member)}: JetStream not usable for "
               f"{now - member.trouble_since:.0f}s ({trouble}); restarting it on the same "
               f"store (restart #{member.restarts}); log: {server.log_path}")
        server.stop()
        member.started = member.ready = False
        member.trouble = member.trouble_since = None
        member.trouble_checks = 0
        member.next_start = now  # started again by the next poll, as after a crash

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
        if self._guard is not None:
            guard, self._guard = self._guard, None
            try:
                guard.remove()
            except GuardUnavailable as exc:  # the next start on this root replaces it
                self.monitor_open = f"its guard could not be removed: {exc}"


def _health(client: httpx.Client, server: NatsServer) -> tuple[bool, str | None]:
    """(ready, why JetStream is unusable or None). Ready is JetStream enabled, as at start.
    Unusable: JetStream disabled, or the full /healthz naming a stream's write error (a
    failed write, ENOSPC, sticks to the stream until the server restarts); the full health
    check's other failures (a cluster catching up) are not acted on."""
    try:
        enabled = client.get(f"{server.monitor_url}/healthz?js-enabled-only=true")
        if enabled.status_code != 200:
            return False, "JetStream disabled: " + _health_error(enabled)
        full = client.get(f"{server.monitor_url}/healthz")
    except httpx.HTTPError:
        return False, None  # not answering: a dead process is seen and restarted anyway
    if full.status_code != 200 and "write error" in (error := _health_error(full)):
        return False, error
    return True, None


def _health_error(resp: httpx.Response) -> str:
    try:
        error = resp.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return str(error or f"HTTP {resp.status_code}")[:300]
