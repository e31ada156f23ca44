"""Operator drills: the three services as real `forge serve` processes, driven like an operator.

`forge up` starts every service with one environment; a drill needs to restart one service
with a new environment (a rotated secret, a fixed flag), so `Drill` starts and stops each
`python -m forge serve NAME` child itself, with the same child environment `forge up` gives
(NATS_URL, SPAWN_URL, ORCHESTRATOR_URL, SCOREBOARD_URL, STORAGE_ROOT), against a real
nats-server and a shared SQLite store.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from forge.bus import NatsServer
from forge.runtime.local import LocalRuntime
from forge.services.common.listener import ENV_FD, bind_listener

from ..conftest import SQLITE_ONLY, TEMPLATE_FIXTURES
from ..support.prefixes import runtime_prefix

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SERVICES = ("spawn", "orchestrator", "scoreboard")
URL_VARS = {"spawn": "SPAWN_URL", "orchestrator": "ORCHESTRATOR_URL",
            "scoreboard": "SCOREBOARD_URL"}
SECRET_NAMES = ("SAT_HMAC_SECRET", "ET_HMAC_SECRET", "RECEIPT_HMAC_SECRET", "OPERATOR_TOKEN")


def fresh_secrets() -> dict[str, str]:
    """What `forge secrets generate` gives an operator: four fresh 32+ byte secrets."""
    return {name: secrets.token_urlsafe(32) for name in SECRET_NAMES}


def clean_environ() -> dict[str, str]:
    """The test runner's environment without anything Forge would read."""
    drop = ("FORGE_", "NATS_", "OPA_", "STORAGE_", "DEV_", "ALLOW_", "BILLING_", *SECRET_NAMES)
    return {k: v for k, v in os.environ.items()
            if not k.startswith(drop) and not k.endswith("_URL")}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.2) -> Any:
    """Poll until `predicate()` is truthy; its value is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def readyz(url: str, operator_token: str | None = None) -> tuple[int, dict[str, Any]]:
    """(status, body) of GET /readyz; (0, {}) when nothing answers. With the operator token
    the body carries each check's detail (as the runbook's readiness command shows it)."""
    headers = {"Authorization": f"Bearer {operator_token}"} if operator_token else {}
    try:
        resp = httpx.get(f"{url}/readyz", timeout=5, headers=headers)
    except httpx.HTTPError:
        return 0, {}
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, {}


def failed_checks(body: dict[str, Any]) -> dict[str, str]:
    """name → detail of every failed check in a /readyz body."""
    checks = body.get("checks", {})
    return {name: str(c.get("detail", "")) for name, c in checks.items()
            if isinstance(c, dict) and not c.get("ok", False)}


@dataclass
class Service:
    """One `python -m forge serve NAME` child process with its own environment and log."""

    name: str
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    wrapper: list[str] = field(default_factory=list)  # e.g. an `unshare` prefix
    # Held across restarts (as `forge up` does): connections wait in its backlog while one
    # incarnation stops and the next starts, instead of being refused.
    listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start (or start again) with `env`, appending to the same log file."""
        if env is not None:
            self.env = env
        argv = [*self.wrapper, PYTHON, "-m", "forge", "serve", self.name, "--host", "127.0.0.1",
                "--port", str(self.port)]
        env, fds = dict(self.env), ()
        if self.listener is not None:
            env[ENV_FD] = str(self.listener.fileno())
            fds = (self.listener.fileno(),)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=REPO, pass_fds=fds)

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM (graceful shutdown: in-flight requests finish), SIGKILL after `grace`."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        return proc.returncode

    def restart(self, env: dict[str, str], timeout: float = 60) -> None:
        """What an operator's rollout does: stop, start with the new environment, wait ready."""
        self.stop()
        self.start(env)
        self.wait_ready(timeout)

    def readyz(self) -> tuple[int, dict[str, Any]]:
        return readyz(self.url, self.env.get("OPERATOR_TOKEN"))

    def wait_ready(self, timeout: float = 60) -> None:
        def ok() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n"
                                     + self.log()[-3000:])
            return self.readyz()[0] == 200
        try:
            wait_for(ok, timeout, f"{self.name} /readyz 200")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast /readyz: {self.readyz()}\n"
                                 f"log tail:\n{self.log()[-2000:]}") from None

    def wait_failed_check(self, check: str, timeout: float = 30) -> dict[str, Any]:
        """Wait until /readyz is 503 with `check` failed; returns the body."""
        def failing() -> dict[str, Any] | None:
            status, body = self.readyz()
            return body if status == 503 and check in failed_checks(body) else None
        found: dict[str, Any] = wait_for(failing, timeout, f"{self.name} /readyz naming {check}")
        return found

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") \
            if self.log_path.exists() else ""


@dataclass
class Drill:
    """A prod-mode installation: nats-server, shared store and storage root, three services."""

    root: Path
    secrets: dict[str, str]
    nats: NatsServer
    prefix: str
    services: dict[str, Service] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    # A PostgreSQL database's URL; None keeps the SQLite file beside the storage root.
    postgres_url: str | None = None

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def db_url(self) -> str:
        # The store lives beside the storage root, as a managed database would.
        return self.postgres_url or f"sqlite:///{self.root / 'db' / 'forge.db'}"

    def env(self, secret_values: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
        """The environment every child gets (what `forge up` passes), with these secrets."""
        env = clean_environ()
        env.update({"FORGE_ENV": "prod", "STORAGE_ROOT": str(self.storage),
                    "FORGE_DB_URL": self.db_url, "FORGE_TEMPLATE_DIR": str(TEMPLATE_FIXTURES),
                    "FORGE_RUNTIME_PREFIX": self.prefix, **self.nats.client_env(),
                    "PYTHONUNBUFFERED": "1",
                    # A message held by a killed service comes back after 8 s, not the
                    # default 30 s: the drills kill services on purpose and wait for it.
                    "FORGE_BUS_ACK_WAIT_S": "8",
                    # An orchestrator restarted after kill -9 takes over its node record
                    # once it stood still 3 heartbeats: 1.5 s here, not 6 s (the default 2 s).
                    "FORGE_NODE_HEARTBEAT_S": "0.5",
                    # A completion paused (no key, storage read-only) is retried each second
                    # once the operator fixed it, not every 5 s.
                    "FORGE_SCOREBOARD_PAUSE_RETRY_S": "1"})
        env.update(secret_values if secret_values is not None else self.secrets)
        for name, svc in self.services.items():
            env[URL_VARS[name]] = svc.url
        env.update(self.extra)
        env.update(extra)
        return env

    def url(self, name: str) -> str:
        return self.services[name].url

    def forge(self, *args: str, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run an operator's `forge …` command with the installation's environment."""
        return subprocess.run([PYTHON, "-m", "forge", *args], env=env or self.env(),
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def forge_ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        proc = self.forge(*args, env=env)
        assert proc.returncode == 0, f"forge {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    def start(self, names: tuple[str, ...] = SERVICES, env: dict[str, str] | None = None,
              wait: bool = True) -> None:
        for name in names:
            self.services[name].start(env or self.env())
        if wait:
            for name in names:
                self.services[name].wait_ready()

    def learner(self, tenant: str, subject: str, plan: str = "TEAM") -> dict[str, str]:
        """Grant a plan and issue an API key with the operator CLI; the learner's headers."""
        self.forge_ok("entitlements", "grant", "--tenant", tenant, "--subject", subject,
                      "--plan", plan)
        out = self.forge_ok("apikey", "create", "--tenant", tenant, "--subject", subject)
        match = re.search(r"^api_key\s+(\S+)$", out, re.MULTILINE)
        assert match, out
        return {"x-api-key": match.group(1)}

    def operator(self, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token or self.secrets['OPERATOR_TOKEN']}"}

    def results(self, scenario_id: str) -> Path:
        return self.storage / "scenarios" / scenario_id / "results"

    def warnings(self, last: int = 12) -> str:
        """The last `last` warnings and errors of each service's log, for a failed drill's
        report (a scenario a learner saw fail names its error only here)."""
        parts = []
        for name, svc in self.services.items():
            lines = []
            for line in svc.log().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("warning", "error",
                                                                      "critical"):
                    lines.append(f"{entry.get('ts', '')} {entry['level']} "
                                 f"{str(entry.get('msg', ''))[:400]}")
            parts += [f"{name}: {line}" for line in lines[-last:]]
        return "\n".join(parts) or "(none)"

    def close(self) -> None:
        # All three stop at once: each takes about a second to exit after its shutdown.
        with ThreadPoolExecutor(len(self.services) or 1) as pool:
            list(pool.map(Service.stop, self.services.values()))
        for svc in self.services.values():
            if svc.listener is not None:
                svc.listener.close()
        runtime = LocalRuntime(str(self.storage / "runtime"), self.prefix)
        try:
            for info in runtime.list():
                runtime.destroy(info.lab_id)
        finally:
            runtime.close()
        self.nats.close()


# Whole-system drills run on SQLite (their ids say `sqlite_only`); a representative few also
# run on PostgreSQL with `@pytest.mark.parametrize("drill", ENGINES, indirect=True)`.


@contextlib.contextmanager
def open_drill(root: Path, postgres_url: str | None = None) -> Iterator[Drill]:
    """A prod installation under `root` (nats-server started, services not), closed after."""
    (root / "db").mkdir()
    nats = NatsServer(store_dir=root / "nats")
    nats.start()
    made = Drill(root, fresh_secrets(), nats, runtime_prefix("r"),
                 postgres_url=postgres_url)
    (root / "logs").mkdir()
    for name in SERVICES:
        sock = bind_listener("127.0.0.1", 0)
        made.services[name] = Service(name, sock.getsockname()[1],
                                      root / "logs" / f"{name}.log", listener=sock)
    try:
        yield made
    finally:
        made.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                    pytest.TestReport]:
    """A failed drill's report ends with its services' last warnings and errors (of every
    installation among its fixtures)."""
    report = yield
    if report.failed:
        for made in getattr(item, "funcargs", {}).values():
            if isinstance(made, Drill):
                report.sections.append(("services' warnings and errors", made.warnings()))
    return report


@pytest.fixture(params=[SQLITE_ONLY])
def drill(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Drill]:
    """A prod installation with a signing key (`forge keys generate`); services not started.

    Its store is a SQLite file, or a fresh PostgreSQL database when parametrized `postgres`.
    """
    pg_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with open_drill(tmp_path, pg_url) as made:
        yield made


def spawn_lab(drill: Drill, learner: dict[str, str], track: str = "netplus",
              timeout: float = 90) -> str:
    """POST /v1/spawn, then wait until the lab runs; the scenario id."""
    resp = httpx.post(f"{drill.url('spawn')}/v1/spawn", json={"track": track}, headers=learner,
                      timeout=30)
    assert resp.status_code == 201, resp.text
    scenario_id: str = resp.json()["scenario_id"]
    wait_state(drill, learner, scenario_id, "running", timeout=timeout)
    return scenario_id


def wait_state(drill: Drill, learner: dict[str, str], scenario_id: str, state: str,
               timeout: float = 90) -> dict[str, Any]:
    def current() -> dict[str, Any] | None:
        body: dict[str, Any] = httpx.get(f"{drill.url('spawn')}/v1/scenarios/{scenario_id}",
                                         headers=learner, timeout=10).json()
        if body.get("state") in ("failed", "expired", "deleted") and body["state"] != state:
            raise AssertionError(f"{scenario_id} ended {body['state']}: {body.get('reason')}")
        return body if body.get("state") == state else None
    found: dict[str, Any] = wait_for(current, timeout, f"{scenario_id} {state}", 0.25)
    return found


def submit(drill: Drill, learner: dict[str, str], scenario_id: str) -> None:
    resp = httpx.post(f"{drill.url('spawn')}/v1/scenarios/{scenario_id}/submit",
                      headers=learner, timeout=30)
    assert resp.status_code == 202, resp.text


def wait_verdict(drill: Drill, learner: dict[str, str], scenario_id: str,
                 timeout: float = 90) -> dict[str, Any]:
    """Poll GET /v1/scores/{id} (404 until the verdict exists); the score body."""
    def score() -> dict[str, Any] | None:
        resp = httpx.get(f"{drill.url('scoreboard')}/v1/scores/{scenario_id}",
                         headers=learner, timeout=10)
        assert resp.status_code in (200, 404), resp.text
        return resp.json() if resp.status_code == 200 else None
    found: dict[str, Any] = wait_for(score, timeout, f"verdict of {scenario_id}", 0.25)
    return found


def verify_verdict(drill: Drill, scenario_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The runbook's offline command on the stored artifacts (cwd = the installation)."""
    results = f"storage/scenarios/{scenario_id}/results"
    bundle = next(drill.results(scenario_id).glob("evidence.tar.*")).name
    return subprocess.run(
        [PYTHON, str(REPO / "scripts" / "verify_verdict.py"), f"{results}/score.json",
         f"{results}/{bundle}", f"{results}/verdict.sig", f"{results}/verdict.pub", *extra],
        cwd=drill.root, capture_output=True, text=True, timeout=60)
