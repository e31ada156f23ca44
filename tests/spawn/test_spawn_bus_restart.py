"""A spawn right after the NATS server restarted is accepted, not a learner-visible 503.

The publisher was connected; the server stops and comes back on the same port and store.
The first spawn after that finds the client still reconnecting: the publish waits a short
bounded grace for it (and for JetStream) instead of answering 503 bus_unavailable, and the
event is stored exactly once. Before: 503 bus_unavailable, "retry".
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from forge.bus.dial import connect
from forge.entitlements.grants import grant

from .conftest import SpawnEnv
from .test_spawn_api import key_for, spawn


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the publish is under test, not the store."""
    return f"sqlite:///{tmp_path}/forge.db"


async def _spawn_events(url: str) -> int:
    nc = await connect(url, "probe")
    try:
        info = await nc.jetstream().stream_info("FORGE", subjects_filter="forge.spawn.requested")
        return int(info.state.messages)
    finally:
        await nc.close()


@pytest.mark.usefixtures("sqlite_only_store")
def test_spawn_right_after_nats_restart_is_accepted(spawn_env: SpawnEnv) -> None:
    grant(spawn_env.state.ctx.db, "acme", "TEAM")
    headers = key_for(spawn_env)
    with spawn_env.client() as client:
        assert spawn(client, headers, request_id="before-restart-1").status_code == 201
        spawn_env.nats.restart()
        resp = spawn(client, headers, request_id="after-restart-01")
        assert resp.status_code == 201, resp.text
        again = spawn(client, headers, request_id="after-restart-01")
    assert again.status_code == 200 and again.json() == resp.json()
    assert asyncio.run(_spawn_events(spawn_env.nats.admin_url)) == 2
