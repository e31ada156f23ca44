"""spawn_service and orchestrator together (live servers, one DB, one nats-server, real runtime)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from forge.bus import NatsServer
from forge.config import Settings, load_settings
from forge.identity.apikeys import create_api_key
from forge.runtime.local import LocalRuntime
from forge.services.orchestrator.app import build_app as build_orchestrator
from forge.services.spawn.app import build_app as build_spawn
from forge.services.spawn.state import SpawnState

from ..live_server import live_server
from ..orchestrator.conftest import FAST
from ..services.conftest import prod_environ
from ..support.prefixes import runtime_prefix


@dataclass
class Platform:
    spawn_url: str
    orchestrator_url: str
    settings: Settings
    spawn: SpawnState
    runtime: LocalRuntime

    def learner(self, tenant: str = "acme", subject: str = "alice") -> dict[str, str]:
        from forge.entitlements.grants import grant

        grant(self.spawn.ctx.db, tenant, "PRO", subject)
        return {"x-api-key": create_api_key(self.spawn.ctx.db, tenant, subject).plaintext}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.spawn_url, timeout=60)


@pytest.fixture
def platform(tmp_path: Path, nats: NatsServer) -> Iterator[Platform]:
    storage = tmp_path / "storage"
    runtime = LocalRuntime(str(tmp_path / "runtime"), runtime_prefix("p"))
    orch_settings = load_settings(prod_environ(storage, **nats.client_env()))
    orch_app = build_orchestrator(orch_settings, runtime=runtime, reaper_interval_s=1.0,
                                  consumer_options=FAST)
    with live_server(orch_app) as orch_url:
        settings = load_settings(prod_environ(storage, **nats.client_env(),
                                              ORCHESTRATOR_URL=orch_url))
        spawn_app = build_spawn(settings)
        with live_server(spawn_app) as spawn_url:
            yield Platform(spawn_url, orch_url, settings, spawn_app.state.spawn, runtime)
    for info in runtime.list():
        runtime.destroy(info.lab_id)
    runtime.close()
