"""A live orchestrator (real uvicorn, nats-server, Rego engine, local runtime, SQLite or
PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats as nats_client
import pytest

from forge.bus import NatsServer, Publisher
from forge.bus.contracts import SpawnRequestedV1, parse, payload
from forge.config import Settings, load_settings
from forge.lifecycle import states
from forge.lifecycle.store import load
from forge.runtime.local import LocalRuntime
from forge.runtime.local.restarts import StartCutShort
from forge.services.orchestrator.app import build_app
from forge.services.orchestrator.state import OrchestratorState
from forge.store.models import Scenario
from forge.tokens import ET, SAT, mint_token

from ..live_server import live_server, reserve_port
from ..services.conftest import SECRETS, prod_environ
from ..support.prefixes import digit_prefix

OPERATOR = {"authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}
FAST = {"backoff": (0.2, 0.5, 1.0), "max_deliver": 4}


@dataclass
class Orch:
    url: str
    settings: Settings
    state: OrchestratorState
    nats: NatsServer
    runtime: LocalRuntime
    sent: list[str] = field(default_factory=list)
    server: Any = None

    def stop(self) -> None:
        """Stop this orchestrator process (its labs stay, as after a crash or a restart)."""
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.server = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def row(self, scenario_id: str) -> Scenario:
        return load(self.state.ctx.db, scenario_id)

    def wait_state(self, scenario_id: str, *wanted: str, timeout: float = 30) -> Scenario:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.row(scenario_id)
                if last.state in wanted:
                    return last
            except LookupError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{scenario_id} never reached {wanted}; last {last and last.state}")

    def publish(self, subject: str, body: dict[str, Any], msg_id: str | None = None) -> None:
        async def go() -> None:
            async with Publisher(self.nats.admin_url) as pub:
                await pub.connection.wait_ready(5)
                await pub.publish(subject, body, msg_id=msg_id or secrets.token_hex(8))

        asyncio.run(go())


def spawn_event(settings: Settings, *, template: str = "lab-netplus", track: str = "netplus",
                plan: str = "PRO", tracks: list[str] | None = None, subject: str = "alice",
                tenant: str = "acme", scenario_id: str | None = None,
                sat_over: dict[str, Any] | None = None, et_over: dict[str, Any] | None = None,
                sat_ttl: int | None = None, sat_now: float | None = None,
                sat_ring: Any = None) -> dict[str, Any]:
    """A forge.spawn.requested body exactly as spawn_service would publish it."""
    scenario_id = scenario_id or "scn-" + secrets.token_hex(8)
    et_claims = {"sub": subject, "tenant_id": tenant, "plan": plan,
                 "tracks": tracks or ["netplus", "ccna"], "retention_days": 30,
                 "source": "store", **(et_over or {})}
    et = mint_token(settings.et, ET, et_claims)
    et_jti = json.loads(__import__("base64").urlsafe_b64decode(et.split(".")[1] + "=="))["jti"]
    sat_claims = {"scenario_id": scenario_id, "track": track, "template_id": template,
                  "sub": subject, "tenant_id": tenant, "plan": plan, "et_jti": et_jti,
                  **(sat_over or {})}
    sat = mint_token(sat_ring or settings.sat, SAT, sat_claims, ttl_s=sat_ttl, now=sat_now)
    requested = datetime.fromtimestamp(sat_now or time.time(), UTC)
    # Through the contract, as spawn_service publishes it; tests that forge claims still do
    # so with well-typed values (the tokens are what is refused).
    return payload(parse(SpawnRequestedV1, {
        "scenario_id": scenario_id, "request_id": "req-" + secrets.token_hex(6),
        "track": track, "template_id": template, "tenant_id": tenant, "subject": subject,
        "plan": plan, "retention_days": 30, "sat": sat, "et": et,
        "requested_at": requested.strftime("%Y-%m-%dT%H:%M:%SZ")}))


MakeOrch = Callable[..., Orch]


@pytest.fixture
def make_orch(tmp_path: Path, nats: NatsServer, db_url: str) -> Iterator[MakeOrch]:
    made: list[Orch] = []
    prefix = digit_prefix("o")  # + one digit per node: 4 characters
    node_prefixes: dict[str, str] = {}
    runtimes: dict[str, LocalRuntime] = {}

    def make(**extra: Any) -> Orch:
        reaper = float(extra.pop("reaper_interval_s", 0.5))
        # Each lab node has its own runtime prefix; the same node id (a restart) the same.
        node_id = str(extra.get("FORGE_NODE_ID", "node-1"))
        node_prefix = node_prefixes.setdefault(node_id, f"{prefix}{len(node_prefixes)}")
        sock = reserve_port()  # held from now on: the node's URL names it
        try:
            port = sock.getsockname()[1]
            # `extra` may name another bus (a cluster's `client_env`) too.
            environ = prod_environ(tmp_path / "storage", **{
                **nats.client_env(), "FORGE_DB_URL": db_url, "FORGE_NODE_HEARTBEAT_S": "0.5",
                "FORGE_NODE_URL": f"http://127.0.0.1:{port}", **extra})
            settings = load_settings(environ)
            runtime = LocalRuntime(str(tmp_path / f"runtime-{node_prefix}"), node_prefix)
            runtimes[node_prefix] = runtime
            app = build_app(settings, runtime=runtime, reaper_interval_s=reaper,
                            consumer_options=FAST)
            server = live_server(app, sock=sock)
            url = server.__enter__()
        except BaseException:
            sock.close()
            raise
        made.append(Orch(url, settings, app.state.orchestrator, nats, runtime, server=server))
        return made[-1]

    yield make
    for orch in reversed(made):
        orch.stop()
    for runtime in runtimes.values():
        for info in runtime.list():
            if info.state != "foreign":  # never another runtime's lab
                runtime.destroy(info.lab_id)
        runtime.close()


def running_lab(orch: Orch, timeout: float = 30) -> str:
    """A scenario spawned through the bus and running on `orch`; its id."""
    event = spawn_event(orch.settings)
    orch.publish("forge.spawn.requested", event)
    orch.wait_state(event["scenario_id"], states.RUNNING, timeout=timeout)
    return str(event["scenario_id"])


@pytest.fixture
def orch(make_orch: MakeOrch) -> Orch:
    return make_orch()


def stop_after_seal(monkeypatch: pytest.MonkeyPatch, orch: Orch) -> list[str]:
    """Make every grading check after a seal raise as a stop caught at each start would
    (``StoppedMidway``); returns the labs sealed, in order."""
    real_seal, real_check = orch.runtime.seal, orch.runtime.run_check
    sealed: list[str] = []

    def seal(lab_id: str) -> int:
        sealed.append(lab_id)
        return real_seal(lab_id)

    def stopped(*args: Any, **kwargs: Any) -> Any:
        if sealed:
            raise StartCutShort("a grading check", signal.SIGTERM, 5)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(orch.runtime, "seal", seal)
    monkeypatch.setattr(orch.runtime, "run_check", stopped)
    return sealed


async def collect(url: str, subject: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """Read `count` events of a subject from the FORGE stream (from the start)."""
    nc = await nats_client.connect(url)
    js = nc.jetstream()
    sub = await js.subscribe(subject, ordered_consumer=True)
    found: list[dict[str, Any]] = []
    try:
        while len(found) < count:
            msg = await sub.next_msg(timeout=timeout)
            found.append(json.loads(msg.data))
    finally:
        await nc.close()
    return found
