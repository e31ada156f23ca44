"""FORGE_BUS_ACK_WAIT_S reaches the bus: the durable consumers a service creates carry it,
so an operator's shorter setting really shortens recovery after a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.bus.subjects import DURABLE_SPAWN_LIFECYCLE, STREAM
from forge.config import load_settings
from forge.content import content_path
from forge.services.spawn.app import build_app

from .conftest import prod_environ


async def _ack_wait(url: str, durable: str) -> float:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(STREAM, durable)
        assert info.config.ack_wait is not None
        return float(info.config.ack_wait)
    finally:
        await nc.close()


@pytest.mark.usefixtures("sqlite_only_store")
def test_the_spawn_service_consumer_takes_the_configured_ack_wait(
        tmp_path: Path, nats: NatsServer) -> None:
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_TEMPLATE_DIR=str(content_path("templates")),
                                          FORGE_BUS_ACK_WAIT_S="7"))
    with TestClient(build_app(settings)):
        deadline = 300  # tries 0.1 s apart: 30 s on a loaded machine
        while deadline:
            try:
                got = asyncio.run(_ack_wait(nats.admin_url, DURABLE_SPAWN_LIFECYCLE))
                break
            except Exception:  # not created yet: the consumer starts with the app
                deadline -= 1
                asyncio.run(asyncio.sleep(0.1))
        else:
            raise AssertionError("the lifecycle consumer was never created")
    assert got == 7.0
