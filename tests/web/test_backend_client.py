"""spawn_service calls the other services over one shared HTTP client per app: its calls
reuse one pooled connection instead of opening one each, and shutdown closes the client.

A real spawn_service app (real nats-server, real SQLite) talks to a real uvicorn server on
loopback standing in for the orchestrator and the scoreboard; that server records the
client port of every request, so each distinct port is one TCP connection opened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import load_settings
from forge.content import content_path
from forge.services.common.http_client import SharedHttpClient
from forge.services.spawn.app import build_app

from ..live_server import live_server
from ..services.conftest import SECRETS, prod_environ

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store

ORIGIN = "http://testserver"


def _peer_app(ports: list[int]) -> FastAPI:
    """Orchestrator and scoreboard stand-in: answers what the operator page asks."""
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next):  # type: ignore[no-untyped-def]
        assert request.client is not None
        ports.append(request.client.port)
        return await call_next(request)

    @app.get("/readyz")
    async def readyz() -> dict[str, object]:
        return {"status": "ready", "checks": {}}

    @app.get("/v1/scenarios")
    async def scenarios() -> dict[str, object]:
        return {"items": [FAILED]}

    @app.get("/v1/admin/failed-events")
    async def failed_events() -> dict[str, object]:
        return {"events": []}

    return app


# A failed lab as the orchestrator's operator view lists it: the learner's reason, and
# the node's own error, which only the operator's pages show (failure_reason).
FAILED = {"scenario_id": "scn-0123456789abcdef", "state": "failed", "track": "netplus",
          "reason": "lab could not be created: the error is recorded for the operator",
          "error": "RuntimeFault: host web: sandbox did not start: <bwrap> /var/lib/forge",
          "tenant_id": "acme", "subject": "lea", "plan": "PRO",
          "created_at": "2026-12-03T09:00:00+00:00", "expires_at": None}


@pytest.fixture
def peer() -> Iterator[tuple[str, list[int]]]:
    ports: list[int] = []
    with live_server(_peer_app(ports)) as url:
        yield url, ports


def test_calls_share_one_connection_and_shutdown_closes_the_client(
        tmp_path: Path, nats: NatsServer, peer: tuple[str, list[int]]) -> None:
    url, ports = peer
    settings = load_settings(prod_environ(tmp_path / "storage", **nats.client_env(),
                                          FORGE_TEMPLATE_DIR=str(content_path("templates")),
                                          ORCHESTRATOR_URL=url, SCOREBOARD_URL=url))
    app = build_app(settings)
    http: SharedHttpClient = app.state.http
    with TestClient(app, follow_redirects=False) as client:
        signed = client.post("/ops/signin", data={"token": SECRETS["OPERATOR_TOKEN"]},
                             headers={"origin": ORIGIN})
        assert signed.status_code == 303
        for _ in range(3):
            page = client.get("/ops")
            assert page.status_code == 200, page.text
        assert FAILED["reason"] in page.text  # type: ignore[operator]
        assert "sandbox did not start: &lt;bwrap&gt; /var/lib/forge" in page.text
        # The readiness detail also asks the orchestrator (peer key agreement).
        ready = client.get("/readyz", headers={"authorization": "Bearer "
                                               + SECRETS["OPERATOR_TOKEN"]})
        assert "peer_keys" in ready.json()["checks"]
        assert http.is_open
    # Each /ops page makes four calls (scenarios, failed events, two readiness pages).
    assert len(ports) >= 13
    assert len(set(ports)) == 1, f"{len(set(ports))} connections for {len(ports)} calls"
    assert not http.is_open


@pytest.mark.parametrize(("given", "passed_on"), [
    (None, "5"), ("", "5"), ("0", "1"), ("7", "7"), ("999", "60"), ("1000", "5"),
    ("²", "5"), ("Wed, 21 Oct 2015 07:28:00 GMT", "5"), (" 7", "5"),
])
def test_a_stopping_nodes_retry_after_is_passed_on_bounded(given: str | None,
                                                           passed_on: str) -> None:
    """What a learner is told to wait after a node's 503 `service_stopping`: its own
    Retry-After in whole seconds from 1 to 60, else 5 (a date, junk, a non-ASCII digit)."""
    from forge.services.spawn.web.backend import _seconds

    assert _seconds(given) == passed_on


def test_a_node_silent_after_the_request_reached_it_is_not_called_a_refusal(
        tmp_path: Path) -> None:
    """A learner's DELETE caught by the node's kill -9 was told the node was unreachable
    and the lab would fail by itself, but the node served the queued request once back
    (the lab was deleted). A node that took the request and did not answer now says the
    request may still be carried out; one that took no connection says what it said."""
    import asyncio
    import socket

    from forge.services.spawn.web.backend import Backend, BackendError

    settings = load_settings(prod_environ(tmp_path / "storage"))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:  # reads the request, closes without an answer
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    async def delete(url: str) -> BackendError:
        http = SharedHttpClient()
        try:
            with pytest.raises(BackendError) as caught:
                await Backend(settings, http).lab_node(
                    "n1", url, "DELETE", "/v1/scenarios/scn-0123456789abcdef")
            return caught.value
        finally:
            await http.close()

    async def both() -> tuple[BackendError, BackendError]:
        answered = asyncio.get_running_loop().run_in_executor(None, hang_up)
        silent = await delete(f"http://127.0.0.1:{port}")
        await answered
        listener.close()
        return silent, await delete(f"http://127.0.0.1:{port}")  # nobody listens now

    silent, refused = asyncio.run(both())
    assert (silent.status, silent.code) == (503, "lab_node_unreachable")
    assert "may still be carried out when the node is back" in silent.message
    assert (refused.status, refused.code) == (503, "lab_node_unreachable")
    assert "is unreachable; the lab fails by itself" in refused.message
