"""Fixtures for the bus tests: a real nats-server per test, and small async helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from forge.bus import NatsServer, Publisher


@pytest.fixture
def nats_server(nats: NatsServer) -> NatsServer:
    """The root `nats` fixture under the name the bus tests use (fresh per test)."""
    return nats


@pytest.fixture
async def publisher(nats_server: NatsServer) -> AsyncIterator[Publisher]:
    """A connected publisher (streams ensured)."""
    pub = Publisher(nats_server.admin_url, name="test-publisher", timeout=1.0)
    assert await pub.start(wait=5.0)
    try:
        yield pub
    finally:
        await pub.close()
