"""Shared pytest fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.bus import NatsServer

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE_FIXTURES = FIXTURES / "templates"


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    """A real JetStream nats-server on a free loopback port, fresh for each test."""
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.close()
