"""A live spawn_service (real uvicorn, real nats-server, SQLite or PostgreSQL) per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from forge.bus import NatsServer
from forge.config import Settings, load_settings
from forge.services.spawn.app import build_app
from forge.services.spawn.state import SpawnState

from ..live_server import live_server
from ..services.conftest import SECRETS, prod_environ


@dataclass
class SpawnEnv:
    url: str
    settings: Settings
    state: SpawnState
    nats: NatsServer

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=20, **kwargs)  # type: ignore[arg-type]


MakeSpawn = Callable[..., SpawnEnv]


@pytest.fixture
def make_spawn(tmp_path: Path, nats: NatsServer, db_url: str) -> Iterator[MakeSpawn]:
    stack: list[object] = []

    def make(env_name: str = "prod", **extra: str) -> SpawnEnv:
        environ = prod_environ(tmp_path / "storage", **nats.client_env(),
                               **{"FORGE_DB_URL": db_url, **extra})
        environ["FORGE_ENV"] = env_name
        if env_name == "dev":
            for name in SECRETS:
                environ.pop(name, None)
        settings = load_settings(environ)
        app = build_app(settings)
        ctx = live_server(app)
        url = ctx.__enter__()
        stack.append(ctx)
        return SpawnEnv(url, settings, app.state.spawn, nats)

    yield make
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture
def spawn_env(make_spawn: MakeSpawn) -> SpawnEnv:
    return make_spawn()
