"""Run NATS and the three services as supervised child processes on one machine.

`start()` refuses before anything runs when another `forge up` holds the storage root or
any port (the services' and NATS's) is taken. The supervisor binds every service port
itself and hands each incarnation of a service that socket (FORGE_LISTEN_FD), so a restart
refuses no connection and no other process can answer on our ports. Each child (services
and nats-server) is exec'd through a parent-death guard, so it dies with the supervisor even
on `kill -9`. A child that dies is restarted with back-off and reported; the back-off resets
once it has been ready for STABLE_S. A service counts as ready only when the process that
answers `/healthz` is the one we started. One that has answered and then answers nothing at
all (no status, only time-outs) for HUNG_S is hung: it is killed and restarted like a crash
(a service that answers "not ready" is never killed: that is a dependency, not a hang).
Start and poll from one long-lived thread (the parent-death signal follows the thread that
spawned the child).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from forge.bus.permissions import BusAuth
from forge.config.storage_root import UnsafeStorage
from forge.services.common.listener import ENV_FD, PortUnavailable, bind_listener
from forge.stack.deathsig import exec_prefix
from forge.stack.embedded_nats import EmbeddedNats, Member, NatsStartError
from forge.stack.lock import StorageLock, StorageLocked
from forge.stack.service_log import last_words
from forge.stack.topology import DEFAULT_PORTS, SERVICES, ProcessSpec, Topology, plan

__all__ = ["DEFAULT_PORTS", "SERVICES", "Child", "StartRefused", "Supervisor"]

NATS = "nats"
URL_VARS = {"spawn": "SPAWN_URL", "orchestrator": "ORCHESTRATOR_URL",
            "scoreboard": "SCOREBOARD_URL"}
MAX_BACKOFF_S = 30.0
STABLE_S = 60.0
# A ready service is asked again over HTTP only this often (its process is watched on every
# poll): polling every service's /healthz and /readyz twice a second cost `forge up` 16 % of
# a core and every service a readiness run per poll while idle.
READY_RECHECK_S = 5.0
HUNG_S = 30.0


class StartRefused(Exception):
    """The platform was not started; the message says why (storage held, port taken…).
    ``port_taken``: a service's port is in use, which other ports would get past."""

    def __init__(self, message: str, *, port_taken: bool = False) -> None:
        super().__init__(message)
        self.port_taken = port_taken


def backoff_delay(failures: int) -> float:
    """Seconds before the next start after `failures` consecutive failures: 1, 2, 4 … 30."""
    return min(MAX_BACKOFF_S, 2.0 ** min(max(failures, 1), 6) / 2)


@dataclass
class Child:
    """One supervised process: its restart bookkeeping and readiness."""

    name: str
    port: int
    log_path: Path
    service: str = ""  # the `forge serve` service; the name when empty
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's environment
    node: str | None = None  # lab node id of an orchestrator
    proc: subprocess.Popen[bytes] | None = None
    sock: socket.socket | None = None
    restarts: int = 0
    failures: int = 0
    next_start: float = 0.0
    ready: bool = False
    ever_ready: bool = False
    ready_since: float | None = None
    last_exit: int | None = None
    checked_at: float | None = None  # when readiness was last asked over HTTP
    # The process whose /healthz gave its own pid: the listening socket is ours and handed
    # only to it, so until it is replaced its answers need no second proof.
    answering: subprocess.Popen[bytes] | None = None
    silent_since: float | None = None  # first of an unbroken run of unanswered checks
    log_from: int = 0  # the log's size when the running process was started

    def exited(self, code: int | None, now: float) -> float:
        """Record a death (or failed start); return the back-off before the next start."""
        self.last_exit = code
        self.restarts += 1
        self.failures += 1
        self.ready = False
        self.ready_since = None
        delay = backoff_delay(self.failures)
        self.next_start = now + delay
        return delay

    def observe(self, ready: bool, now: float) -> None:
        """Record readiness; a run ready for STABLE_S forgets earlier failures."""
        self.ready = ready
        self.ever_ready = self.ever_ready or ready
        if not ready:
            self.ready_since = None
            return
        if self.ready_since is None:
            self.ready_since = now
        if now - self.ready_since >= STABLE_S:
            self.failures = 0


@dataclass
class Supervisor:
    """Starts, watches and stops the platform."""

    env: dict[str, str]
    storage_root: Path
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    report: Callable[[str], None] = print
    bus_auth: BusAuth | None = None
    nats_port: int = 0
    clock: Callable[[], float] = time.monotonic
    children: dict[str, Child] = field(default_factory=dict)
    lock: StorageLock | None = None  # one given (`forge up`'s) is its giver's to release
    topology: Topology | None = None  # default: today's three services, one node
    nats: EmbeddedNats | None = None
    hung_after_s: float = HUNG_S
    probe_timeout_s: float = 5.0
    _http: httpx.Client | None = field(default=None, repr=False)
    _own_lock: bool = field(default=False, repr=False)  # taken by `start`, not given

    @property
    def http(self) -> httpx.Client:
        """One pooled client for every readiness poll (a new client per call builds a new
        SSL context and connection each time)."""
        if self._http is None:
            self._http = httpx.Client(trust_env=False, timeout=5)
        return self._http

    def url(self, name: str) -> str:
        child = self.children.get(name)
        return f"http://{self.host}:{child.port if child else self.ports[name]}"

    @property
    def nats_members(self) -> list[Member]:
        """The embedded nats-servers (none when NATS_URL names an external NATS)."""
        return self.nats.members if self.nats is not None else []

    def start(self) -> None:
        """Lock the storage root, bind every port, start NATS (unless NATS_URL is given) and
        every service; raise StartRefused, with nothing left running, when any step fails.

        The embedded NATS (one server or a cluster) accepts exactly the services' passwords
        in `bus_auth` (each with its own subject permissions); nothing connects anonymously.
        """
        try:
            if self.lock is None or not self.lock.held:  # `forge up` may hold it already
                self.lock = StorageLock.acquire(self.storage_root)
                self._own_lock = True
        except (StorageLocked, UnsafeStorage) as exc:
            raise StartRefused(str(exc)) from None
        except OSError as exc:
            raise StartRefused(f"cannot lock {self.storage_root}: {exc.strerror}") from None
        try:
            self._start_locked()
        except BaseException:
            self.stop()
            raise

    def _bind(self, spec: ProcessSpec, taken: set[int], after: int) -> socket.socket:
        """Bind the spec's port, or (port None) the first free port after `after` that no
        other process of the stack uses."""
        if spec.port is not None:
            return bind_listener(self.host, spec.port)
        for candidate in range(after + 1, min(after + 65, 65536)):
            if candidate in taken:
                continue
            with contextlib.suppress(PortUnavailable):
                return bind_listener(self.host, candidate)
        return bind_listener(self.host, 0)

    def _start_locked(self) -> None:
        topology = self.topology or plan(
            self.storage_root, self.ports,
            base_prefix=self.env.get("FORGE_RUNTIME_PREFIX") or "fg")
        topology.prepare_roots()
        logs = self.storage_root / "logs"
        logs.mkdir(mode=0o700, exist_ok=True)
        # The services' logs name learners, tenants and scenarios: for the operator only
        # (an older release left them 0755/0644, readable by every local user).
        logs.chmod(0o700)
        taken = {p.port for p in topology.processes if p.port is not None}
        last = self.ports.get("orchestrator", DEFAULT_PORTS["orchestrator"])
        for spec in topology.processes:
            try:
                sock = self._bind(spec, taken, last)
            except PortUnavailable as exc:
                raise StartRefused(f"{spec.name}: {exc}",
                                   port_taken=exc.errno == errno.EADDRINUSE) from None
            port = int(sock.getsockname()[1])
            taken.add(port)
            if spec.port is None:
                last = port
            self.children[spec.name] = Child(
                spec.name, port, logs / f"{spec.name}.log", service=spec.service,
                env=spec.environ(self.host, port), node=spec.node, sock=sock)
        if not self.env.get("NATS_URL"):
            self.nats = EmbeddedNats(self.storage_root, self.bus_auth,
                                     size=topology.nats_servers, port=self.nats_port)
            try:
                self.nats.start()
            except NatsStartError as exc:
                raise StartRefused(f"NATS: {exc}") from None
            self.nats_port = self.nats.members[0].server.port
            if self.nats.monitor_open:
                ports = ", ".join(str(m.server.monitor_port) for m in self.nats.members)
                self.report(f"NATS monitoring (port {ports}) is open to every local user: "
                            f"{self.nats.monitor_open}")
            self.env.update(self.nats.client_env())
            if self.lock is not None:  # operator commands on this root find it there
                self.lock.note_bus(self.nats.client_env())
        for name in SERVICES:
            self.env[URL_VARS[name]] = self.url(name)
        if self.lock is not None:  # operator commands on this root call them there
            self.lock.note_services({URL_VARS[name]: self.url(name) for name in SERVICES})
        self.env["STORAGE_ROOT"] = str(self.storage_root)
        for child in self.children.values():
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        assert child.sock is not None
        fd = child.sock.fileno()
        env = dict(self.env)
        env.update(child.env)
        env[ENV_FD] = str(fd)
        argv = [*exec_prefix(), sys.executable, "-m", "forge", "serve", child.service or child.name,
                "--host", self.host, "--port", str(child.port)]
        fd_log = os.open(child.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                         | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd_log, 0o600)
        with os.fdopen(fd_log, "ab") as log:
            child.log_from = os.fstat(fd_log).st_size
            child.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          pass_fds=(fd,))
        child.ready = False

    def poll(self) -> dict[str, bool]:
        """Restart dead children (with back-off) and refresh readiness; name → ready."""
        now = self.clock()
        if self.nats is not None:
            self.nats.poll(now, backoff_delay, self.report)
        for child in self.children.values():
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                child.proc = None
                delay = child.exited(code, now)
                said = last_words(child.log_path, child.log_from)
                self.report(f"{child.name} exited with code {code}"
                            + (f" ({said})" if said else "")
                            + f"; restarting in {delay:.0f}s (restart #{child.restarts}); "
                            f"log: {child.log_path}")
            if child.proc is None and now >= child.next_start:
                self._spawn(child)
            child.observe(self._still_ready(child, now), now)
            silent = child.silent_since
            if child.proc is not None and silent is not None \
                    and now - silent >= self.hung_after_s:
                self._kill_hung(child, now - silent, now)
        return {name: c.ready for name, c in self.children.items()}

    def _kill_hung(self, child: Child, silent_s: float, now: float) -> None:
        """Kill a service that has answered nothing for `silent_s` and schedule its restart
        (with the back-off a crash gets, so a service that hangs at once does not spin)."""
        proc = child.proc
        assert proc is not None
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        child.proc = None
        child.silent_since = None
        delay = child.exited(proc.returncode, now)
        self.report(f"{child.name} (pid {proc.pid}) answered nothing for {silent_s:.0f}s "
                    f"(hung); killed it; restarting in {delay:.0f}s (restart "
                    f"#{child.restarts}); log: {child.log_path}")

    def _still_ready(self, child: Child, now: float) -> bool:
        """Readiness, asked over HTTP unless the same process was found ready less than
        READY_RECHECK_S ago."""
        if child.proc is None:
            return False
        recent = child.checked_at is not None and now - child.checked_at < READY_RECHECK_S
        if child.ready and recent:
            return True
        child.checked_at = now
        return self._ready(child)

    @property
    def came_up(self) -> bool:
        """Every service has been ready at least once (a later restart does not undo that)."""
        return bool(self.children) and all(c.ever_ready for c in self.children.values())

    def _ready(self, child: Child) -> bool:
        """/readyz is 200 and /healthz is answered by the very process we started (asked
        once per process: it holds the socket we made and gave to it alone)."""
        if child.proc is None:
            return False
        base = self.url(child.name)
        try:
            if child.answering is not child.proc:
                child.silent_since = None  # a new process is not hung while it starts up
                health = self.http.get(f"{base}/healthz", timeout=2)
                if health.status_code != 200 or health.json().get("pid") != child.proc.pid:
                    return False
                child.answering = child.proc
            ready = self.http.get(f"{base}/readyz", timeout=self.probe_timeout_s)
        except httpx.TimeoutException:
            if child.answering is child.proc and child.silent_since is None:
                child.silent_since = self.clock()
            return False
        except (httpx.HTTPError, ValueError, AttributeError):
            return False
        child.silent_since = None
        return ready.status_code == 200

    def why_not_ready(self, name: str, operator_token: str) -> str:
        """Why service ``name`` is not ready, for the operator: its failed readiness checks
        with their detail (asked with the operator token), or that it is not running."""
        child = self.children[name]
        if child.proc is None:
            return f"not running (restart #{child.restarts}; log: {child.log_path})"
        try:
            resp = self.http.get(f"{self.url(name)}/readyz", timeout=5,
                                 headers={"Authorization": "Bearer " + operator_token})
            checks = resp.json().get("checks", {})
        except (httpx.HTTPError, ValueError, AttributeError):
            return f"not answering /readyz (log: {child.log_path})"
        failed = [f"{check} ({str(body.get('detail', ''))[:300]})"
                  for check, body in checks.items()
                  if isinstance(body, dict) and not body.get("ok")]
        if not failed:
            return f"not ready (log: {child.log_path})"
        return "failed checks: " + "; ".join(failed)

    def wait_ready(self, timeout_s: float = 90.0) -> bool:
        """Poll until every service answers /readyz 200, or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.poll().values()):
                return True
            time.sleep(0.25)
        return False

    def stop(self, grace_s: float = 15.0, *, keep_lock: bool = False) -> None:
        """SIGTERM every child, SIGKILL what is left after `grace_s`, stop NATS, close the
        sockets; release the storage lock only if `start` took it and not `keep_lock`
        (then `release_lock`): released while labs are destroyed, another start adopted them."""
        procs = [c.proc for c in self.children.values() if c.proc is not None]
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=5)
        for child in self.children.values():
            child.proc = None
            if child.sock is not None:
                child.sock.close()
                child.sock = None
        if self.nats is not None:
            self.nats.stop()
        if self._own_lock and not keep_lock:
            self.release_lock()
        if self._http is not None:
            self._http.close()
            self._http = None

    def release_lock(self) -> None:
        """Release the storage lock `start` took (after `stop(keep_lock=True)`)."""
        if self._own_lock and self.lock is not None:
            self.lock.release()
            self.lock = None
        self._own_lock = False


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
