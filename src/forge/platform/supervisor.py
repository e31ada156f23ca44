"""Run NATS and the three services as supervised child processes on one machine.

Each service is its own process (`python -m forge serve NAME`), started with the same
environment so they share secrets, the database and the storage root. A child that dies is
restarted with backoff and reported; stopping sends SIGTERM, then SIGKILL after a grace
period, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from forge.bus import NatsServer
from forge.bus.auth import BusAuth

SERVICES = ("orchestrator", "scoreboard", "spawn")
DEFAULT_PORTS = {"spawn": 8082, "orchestrator": 8083, "scoreboard": 8086}
URL_VARS = {"spawn": "SPAWN_URL", "orchestrator": "ORCHESTRATOR_URL",
            "scoreboard": "SCOREBOARD_URL"}
MAX_BACKOFF_S = 30.0


@dataclass
class Child:
    """One supervised service process."""

    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    ready: bool = False
    ever_ready: bool = False
    last_exit: int | None = None


@dataclass
class Supervisor:
    """Starts, watches and stops the platform."""

    env: dict[str, str]
    storage_root: Path
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    report: Callable[[str], None] = print
    nats: NatsServer | None = None
    bus_auth: BusAuth | None = None
    children: dict[str, Child] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.ports[name]}"

    def start(self) -> None:
        """Start NATS (unless NATS_URL is given) and every service.

        The embedded NATS accepts exactly the services' passwords in `bus_auth` (each with
        its own subject permissions); nothing connects anonymously.
        """
        self.storage_root.mkdir(parents=True, exist_ok=True)
        if not self.env.get("NATS_URL"):
            self.nats = NatsServer(store_dir=self.storage_root / "nats", auth=self.bus_auth)
            self.nats.start()
            self.env["NATS_URL"] = self.nats.url
        for name in SERVICES:
            self.env[URL_VARS[name]] = self.url(name)
        self.env["STORAGE_ROOT"] = str(self.storage_root)
        logs = self.storage_root / "logs"
        logs.mkdir(exist_ok=True)
        for name in SERVICES:
            child = Child(name, self.ports[name], logs / f"{name}.log")
            self.children[name] = child
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        argv = [sys.executable, "-m", "forge", "serve", child.name, "--host", self.host,
                "--port", str(child.port)]
        with open(child.log_path, "ab") as log:
            child.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        child.ready = False

    def poll(self) -> dict[str, bool]:
        """Restart dead children (with backoff) and refresh readiness; name → ready."""
        now = time.monotonic()
        for child in self.children.values():
            if child.proc is not None and child.proc.poll() is not None:
                child.last_exit = child.proc.returncode
                child.proc = None
                child.restarts += 1
                delay = min(MAX_BACKOFF_S, 2.0 ** min(child.restarts, 5) / 2)
                child.next_start = now + delay
                self.report(f"{child.name} exited with code {child.last_exit}; "
                            f"restarting in {delay:.0f}s (restart #{child.restarts}); "
                            f"log: {child.log_path}")
            if child.proc is None and now >= child.next_start:
                self._spawn(child)
            child.ready = child.proc is not None and self._ready(child)
            child.ever_ready = child.ever_ready or child.ready
        return {name: c.ready for name, c in self.children.items()}

    @property
    def came_up(self) -> bool:
        """Every service has been ready at least once (a later restart does not undo that)."""
        return bool(self.children) and all(c.ever_ready for c in self.children.values())

    def _ready(self, child: Child) -> bool:
        try:
            return httpx.get(f"{self.url(child.name)}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float = 90.0) -> bool:
        """Poll until every service answers /readyz 200, or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.poll().values()):
                return True
            time.sleep(0.25)
        return False

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every child, SIGKILL what is left after `grace_s`, then stop NATS."""
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
        if self.nats is not None:
            self.nats.stop()
            self.nats = None


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)

